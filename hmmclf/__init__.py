"""hmmclf: Hidden Markov Model classifier for respiratory-cycle lung sounds.

A clip is labelled normal, crackle, wheeze or both (crackle and wheeze) by one
Gaussian HMM per label class over frame-level MFCC + delta features and a
decision rule learnt on held-out data.

The package is layered; each subpackage imports only those above it here:

``utils``       one-line user errors, atomic files, worker processes
``task``        the label classes, the ICBHI 2017 metric, patient-grouped folds
``data``        labels files, audio, frame features, groups, the feature store
``model``       Baum-Welch, the per-class HMMs, decision rules, the classifier
``evaluation``  cross-validation, baselines, leakage audit, reports
``app``         the jobs behind the commands, experiments, the command line

The names below are the public face (``from hmmclf import HMMClassifier``).
They are imported on first use, so that ``hmmclf predict`` on one clip does not
pay for importing everything at start-up.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.11.0"

_PUBLIC = {
    "HMMClassifier": "hmmclf.model.classifier",
    "ModelConfig": "hmmclf.model.config",
    "save_model": "hmmclf.model.model_io",
    "load_model": "hmmclf.model.model_io",
    "FeatureConfig": "hmmclf.data.features",
    "FeatureSet": "hmmclf.data.feature_store",
    "load_feature_set": "hmmclf.data.feature_store",
    "extract_corpus": "hmmclf.data.extraction",
    "read_labels": "hmmclf.data.labels",
    "GroupSpec": "hmmclf.data.grouping",
    "CLASSES": "hmmclf.task.classes",
    "icbhi_metrics": "hmmclf.task.metrics",
    "make_folds": "hmmclf.task.splits",
    "cross_validate": "hmmclf.evaluation.cv",
    "CVResult": "hmmclf.evaluation.cv",
    "HmmclfError": "hmmclf.utils.errors",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562)."""
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hmmclf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
