"""Saving and loading fitted classifiers without pickle.

A model file is an uncompressed npz of float64 arrays (standardisation,
log-priors, every class's HMM, the decision rule's parameters) plus a JSON
string ``meta`` (format, versions, parameters, feature config and its
fingerprint, the fit report). Loading reads it with ``allow_pickle=False``
and validates every array, so a damaged, foreign or tampered file is refused
with one line and nothing in it is executed.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..task.classes import CLASSES
from ..utils.errors import ModelFileError
from ..utils.files import atomic_write_text, checked_array, load_npz, save_npz
from .classifier import HMMClassifier
from .config import ModelConfig
from .decision import DECISION_RULES, rule_from_arrays
from .label_hmm import hmm_from_arrays, hmm_to_arrays

MODEL_FORMAT = "hmmclf-model"
# Version 2 (hmmclf 0.3): decision rules stored under "decision.*" with their name in meta.
# Version 3: the "auto", "peak-detectors" and "tuned-length" rules and their parameters (peak_frames,
# select_margin); version 2 files still load (their rules and parameters are a subset).
# Version 4 (hmmclf 0.5): "feature_columns", the frame columns the HMMs model (earlier files model all).
# Version 5 (hmmclf 0.8): the "boosted" rule keeps its two cross-fitted sets of trees ("trees0.*",
# "trees1.*"); a version 4 file's single set ("trees.*") still loads.
# Version 6 (hmmclf 0.10): the "boosted" trees may read the clip's feature minima and maxima, which
# a reader of version 5 does not compute; a version 5 file's trees never read them and still load.
MODEL_FORMAT_VERSION = 6
READABLE_FORMAT_VERSIONS = (2, 3, 4, 5, 6)
DECISION_PREFIX = "decision."


def save_model(model: HMMClassifier, path: str | os.PathLike[str], feature_config: Any) -> Path:
    """Save a fitted model as a pickle-free npz file (arrays + embedded JSON metadata).

    A human-readable copy of the metadata is written beside it as ``.json``.
    Both writes are atomic.
    """
    model._check_fitted()
    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "feature_columns": np.asarray(model.feature_columns_, dtype=np.int64),
        "feature_mean": np.asarray(model.feature_mean_, dtype=np.float64),
        "feature_scale": np.asarray(model.feature_scale_, dtype=np.float64),
        # -inf (a class without training clips) is stored as 0 and restored from meta["absent_classes"].
        "class_log_prior": np.where(np.isfinite(model.class_log_prior_), model.class_log_prior_, 0.0),
    }
    absent = [name for name, hmm in zip(model.classes_, model.hmms_) if hmm is None]
    for name, value in model.decision_rule_.to_arrays().items():
        arrays[DECISION_PREFIX + name] = np.asarray(value, dtype=np.float64)
    for name, hmm in zip(model.classes_, model.hmms_):
        if hmm is not None:
            arrays.update(hmm_to_arrays(hmm, name))
    params = model.get_params()
    # The column sets belong to the feature config (stored below); the chosen columns are an array.
    params.pop("feature_sets", None)
    if params.get("class_offsets") is not None:
        params["class_offsets"] = [float(v) for v in params["class_offsets"]]
    meta = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "hmmclf_version": __version__,
        "classes": list(model.classes_),
        "absent_classes": absent,
        "n_features": int(model.n_features_in_),
        "params": params,
        "decision_rule": model.decision_rule_.name,
        "feature_config": feature_config.to_dict(),
        "feature_config_fingerprint": feature_config.fingerprint(),
        "fit_report": model.fit_report_,
    }
    arrays["meta"] = np.array(json.dumps(meta))
    save_npz(path, arrays)
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2))
    return path


def load_model(path: str | os.PathLike[str]) -> tuple[HMMClassifier, Any]:
    """Load and validate a model saved by :func:`save_model`.

    Returns
    -------
    (HMMClassifier, FeatureConfig)

    Raises
    ------
    ModelFileError
        For a missing, damaged, foreign or inconsistent file. Nothing in the
        file is unpickled or executed (``allow_pickle=False``).
    """
    from ..data.features import FeatureConfig

    path = Path(path)
    arrays = load_npz(path, ModelFileError, "model file", "run 'hmmclf train'")
    try:
        if "meta" not in arrays or arrays["meta"].dtype.kind != "U" or arrays["meta"].ndim != 0:
            raise ValueError("no hmmclf metadata")
        meta = json.loads(str(arrays["meta"]))
        if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
            raise ValueError("not an hmmclf model")
        if meta.get("format_version") not in READABLE_FORMAT_VERSIONS:
            raise ValueError(
                f"model format version {meta.get('format_version')!r}; this hmmclf reads"
                f" {' and '.join(map(str, READABLE_FORMAT_VERSIONS))} (run 'hmmclf train' again)"
            )
        if list(meta.get("classes", [])) != list(CLASSES):
            raise ValueError(f"label classes {meta.get('classes')!r} differ from {list(CLASSES)}")
        config = FeatureConfig.from_dict(meta["feature_config"])
        if config.fingerprint() != meta.get("feature_config_fingerprint"):
            raise ValueError("feature config does not match its fingerprint")
        n_features = int(meta["n_features"])
        if n_features != config.n_features:
            raise ValueError(f"model has {n_features} features, its feature config gives {config.n_features}")
        params = dict(meta["params"])
        n_jobs = params.pop("n_jobs", 1)
        model = HMMClassifier.from_config(
            ModelConfig.from_dict(params), n_jobs=n_jobs, feature_sets=config.column_sets()
        )
        rule_name = meta.get("decision_rule")
        if rule_name not in DECISION_RULES:
            raise ValueError(f"unknown decision rule {rule_name!r}")
        model.feature_columns_ = _feature_columns(arrays, n_features)
        n_modelled = len(model.feature_columns_)
        model.feature_mean_ = checked_array(arrays, "feature_mean", (n_modelled,))
        model.feature_scale_ = checked_array(arrays, "feature_scale", (n_modelled,))
        if (model.feature_scale_ <= 0).any():
            raise ValueError("feature_scale must be positive")
        absent = list(meta.get("absent_classes", []))
        if not set(absent) < set(CLASSES):
            raise ValueError(f"absent_classes {absent!r} must be some, not all, of {list(CLASSES)}")
        model.class_log_prior_ = checked_array(arrays, "class_log_prior", (len(CLASSES),)).copy()
        model.class_log_prior_[[CLASSES.index(name) for name in absent]] = -np.inf
        rule_arrays = {k[len(DECISION_PREFIX) :]: v for k, v in arrays.items() if k.startswith(DECISION_PREFIX)}
        if meta["format_version"] < 5 and rule_name == "boosted":
            # Format 4 kept the boosted rule's single set of trees under "trees.": it is set 0 now.
            rule_arrays = {re.sub(r"^trees\.", "trees0.", k): v for k, v in rule_arrays.items()}
        rule = rule_from_arrays(rule_name, rule_arrays, **model.config.rule_options())
        fit_report = meta.get("fit_report", {})
        if not isinstance(fit_report, dict) or not isinstance(fit_report.get("decision") or {}, dict):
            raise ValueError("fit_report must be a JSON object")
        rule.report = dict(fit_report.get("decision") or rule.report)
        model.decision_rule_ = rule
        model.hmms_ = [None if name in absent else hmm_from_arrays(arrays, name, n_modelled) for name in CLASSES]
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelFileError(f"{path}: invalid model file ({exc})") from None
    model.classes_ = np.array(CLASSES)
    model.n_features_in_ = n_features
    model.fit_report_ = meta.get("fit_report", {})
    return model, config


def _feature_columns(arrays: Any, n_features: int) -> np.ndarray:
    """The modelled columns: increasing, distinct, within the frame vector (all of them in format-3 files)."""
    if "feature_columns" not in arrays:
        return np.arange(n_features)
    columns = np.asarray(arrays["feature_columns"])
    if columns.dtype.kind not in "iu" or columns.ndim != 1 or len(columns) == 0:
        raise ValueError("feature_columns must be a non-empty 1-D integer array")
    if columns[0] < 0 or columns[-1] >= n_features or np.any(np.diff(columns) <= 0):
        raise ValueError(f"feature_columns must increase strictly within 0..{n_features - 1}")
    return columns.astype(np.int64)
