"""The feature-set file: frame sequences of a labelled corpus in one pickle-free npz.

Layout of ``features.npz``, written atomically: ``frames`` (all clips' frames
concatenated, float32), ``lengths`` (frames per clip), per-clip ``files``,
``classes``, ``groups``, ``original_rates``, ``durations``, ``hashes`` (SHA-1
of the file's bytes) and ``meta`` (a JSON string with the feature config, its
fingerprint and whether the extraction completed). Loading reads it with
``allow_pickle=False`` and validates every shape, dtype and value.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from ._atomic import load_npz, save_npz
from .errors import CacheError
from .features import FeatureConfig
from .labels import CLASSES

CACHE_FILE = "features.npz"
CACHE_FORMAT = "hmmclf-features"
# Version 2 (hmmclf 0.3): per-clip "classes" (was "states").
CACHE_FORMAT_VERSION = 2


@dataclass
class FeatureSet:
    """Frame sequences of a labelled corpus, one per usable clip.

    Attributes
    ----------
    files : list of str
        Paths relative to the data directory.
    classes : numpy.ndarray of str
        Label class of each clip (see :data:`hmmclf.labels.CLASSES`).
    groups : numpy.ndarray of str or None
        Group (patient or recording) of each clip, or None without a group column.
    sequences : list of numpy.ndarray
        (n_frames, n_features) float32 arrays.
    original_rates : numpy.ndarray of int
    durations : numpy.ndarray of float
        Seconds.
    hashes : list of str
        SHA-1 of each file's bytes.
    config : FeatureConfig
    group_column : str or None
    complete : bool
        False for a checkpoint of an interrupted extraction.
    """

    files: list[str]
    classes: np.ndarray
    groups: np.ndarray | None
    sequences: list[np.ndarray]
    original_rates: np.ndarray
    durations: np.ndarray
    hashes: list[str]
    config: FeatureConfig
    group_column: str | None = None
    complete: bool = True
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def lengths(self) -> np.ndarray:
        """Frames per clip."""
        return np.array([len(s) for s in self.sequences], dtype=np.int64)

    def counts(self) -> dict[str, int]:
        """Clips per label class."""
        return {name: int(np.sum(self.classes == name)) for name in CLASSES}


def save_feature_set(features: FeatureSet, path: str | os.PathLike[str]) -> None:
    """Write ``features`` atomically as a pickle-free npz file."""
    meta = dict(features.meta)
    meta.update(
        {
            "format": CACHE_FORMAT,
            "format_version": CACHE_FORMAT_VERSION,
            "hmmclf_version": __version__,
            "config": features.config.to_dict(),
            "config_fingerprint": features.config.fingerprint(),
            "group_column": features.group_column,
            "complete": bool(features.complete),
        }
    )
    n_features = features.config.n_features
    frames = (
        np.concatenate(features.sequences).astype(np.float32, copy=False)
        if features.sequences
        else np.zeros((0, n_features), dtype=np.float32)
    )
    groups = features.groups if features.groups is not None else np.full(len(features), "", dtype=str)
    save_npz(
        path,
        {
            "frames": frames,
            "lengths": features.lengths,
            "files": np.array(features.files, dtype=str),
            "classes": np.asarray(features.classes, dtype=str),
            "groups": np.asarray(groups, dtype=str),
            "original_rates": np.asarray(features.original_rates, dtype=np.int64),
            "durations": np.asarray(features.durations, dtype=np.float64),
            "hashes": np.array(features.hashes, dtype=str),
            "meta": np.array(json.dumps(meta)),
        },
    )


def load_feature_set(path: str | os.PathLike[str]) -> FeatureSet:
    """Load and validate a cache written by :func:`save_feature_set`.

    Nothing in the file is unpickled or executed: arrays are read with
    ``allow_pickle=False`` and every shape, dtype and value range is checked.

    Raises
    ------
    CacheError
        When the file is missing, damaged, foreign or inconsistent.
    """
    path = Path(path)
    arrays = load_npz(path, CacheError, "feature cache", "run 'hmmclf extract'")
    required = {"frames", "lengths", "files", "classes", "groups", "original_rates", "durations", "hashes", "meta"}
    missing = required - set(arrays)
    if missing:
        raise CacheError(f"{path}: not an hmmclf feature cache (missing {', '.join(sorted(missing))})")
    try:
        meta = json.loads(str(arrays["meta"]))
        if meta.get("format") != CACHE_FORMAT:
            raise ValueError(f"format {meta.get('format')!r}")
        if meta.get("format_version") != CACHE_FORMAT_VERSION:
            raise ValueError(
                f"format version {meta.get('format_version')!r} (this hmmclf reads {CACHE_FORMAT_VERSION})"
            )
        config = FeatureConfig.from_dict(meta["config"])
        if config.fingerprint() != meta.get("config_fingerprint"):
            raise ValueError("config fingerprint does not match its config")
    except (ValueError, TypeError, KeyError) as exc:
        raise CacheError(f"{path}: invalid cache metadata ({exc})") from None

    frames, lengths = arrays["frames"], arrays["lengths"]
    n = len(lengths)
    problems = []
    if frames.dtype != np.float32 or frames.ndim != 2 or frames.shape[1] != config.n_features:
        problems.append(
            f"frames have dtype {frames.dtype} shape {frames.shape}, expected float32 (*, {config.n_features})"
        )
    if lengths.dtype.kind not in "iu" or lengths.ndim != 1 or (n and lengths.min() < 1):
        problems.append("lengths must be positive integers")
    elif int(lengths.sum()) != frames.shape[0]:
        problems.append(f"lengths sum to {int(lengths.sum())} but there are {frames.shape[0]} frames")
    for key in ("files", "classes", "groups", "hashes", "original_rates", "durations"):
        if arrays[key].shape != (n,):
            problems.append(f"{key} has shape {arrays[key].shape}, expected ({n},)")
    for key in ("files", "classes", "groups", "hashes"):
        if arrays[key].dtype.kind != "U":
            problems.append(f"{key} must be strings, got {arrays[key].dtype}")
    if not problems:
        unknown = set(arrays["classes"].tolist()) - set(CLASSES)
        if unknown:
            problems.append(f"unknown classes {sorted(unknown)}")
        if not np.isfinite(frames).all():
            problems.append("non-finite frames")
    if problems:
        raise CacheError(f"{path}: invalid feature cache: {'; '.join(problems)}")

    bounds = np.concatenate([[0], np.cumsum(lengths)])
    sequences = [frames[bounds[i] : bounds[i + 1]] for i in range(n)]
    group_column = meta.get("group_column")
    return FeatureSet(
        files=arrays["files"].tolist(),
        classes=arrays["classes"],
        groups=arrays["groups"] if group_column else None,
        sequences=sequences,
        original_rates=arrays["original_rates"],
        durations=arrays["durations"],
        hashes=arrays["hashes"].tolist(),
        config=config,
        group_column=group_column,
        complete=bool(meta.get("complete", False)),
        meta={k: meta[k] for k in ("labels", "data_dir", "layout") if k in meta},
    )
