"""The ICBHI 2017 metric and its bootstrap interval over patients (or groups).

ICBHI 2017 definitions, over the four label classes:

- Specificity (Sp): recall of ``normal``.
- Sensitivity (Se): abnormal clips (crackle, wheeze, both pooled) whose
  predicted class is exactly their true class, over all abnormal clips
  (``both`` predicted as ``crackle`` is a miss).
- Score: (Se + Sp) / 2. Always answering ``normal`` scores 0.5, so Se and Sp
  are always reported beside it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .classes import CLASSES

ABNORMAL_CLASSES = ("crackle", "wheeze", "both")


def class_indices(y: Sequence[str]) -> np.ndarray:
    """Index of each label class in :data:`~hmmclf.data.labels.CLASSES` (ValueError for an unknown one)."""
    index = {name: i for i, name in enumerate(CLASSES)}
    try:
        return np.array([index[s] for s in np.asarray(y, dtype=str).tolist()], dtype=np.int64)
    except KeyError as exc:
        raise ValueError(f"unknown label class {exc.args[0]!r}") from None


def sprsound_score(sensitivity: float, specificity: float) -> float:
    """The SPRSound challenge score: (AS + HS) / 2, AS = (Se + Sp) / 2, HS = 2 Se Sp / (Se + Sp).

    The harmonic term punishes a lopsided operating point more than the ICBHI Score does
    (Se 0, Sp 1 gives 0.25, not 0.5). NaN when either rate is.
    """
    if np.isnan(sensitivity) or np.isnan(specificity):
        return float("nan")
    average = (sensitivity + specificity) / 2
    harmonic = 2 * sensitivity * specificity / (sensitivity + specificity) if sensitivity + specificity else 0.0
    return float((average + harmonic) / 2)


def icbhi_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """ICBHI Score, Se, Sp, accuracy, per-class precision/recall/F1 and the confusion matrix.

    The confusion matrix has rows = true class, columns = predicted class, in
    the order of :data:`hmmclf.data.labels.CLASSES`. A rate with no clip to
    count (e.g. Se on a set without abnormal clips) is NaN.
    """
    y_true = np.asarray(y_true, dtype=str)
    y_pred = np.asarray(y_pred, dtype=str)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.shape} entries, y_pred {y_pred.shape}")
    index = {state: i for i, state in enumerate(CLASSES)}
    for name, arr in (("y_true", y_true), ("y_pred", y_pred)):
        unknown = set(arr.tolist()) - set(index)
        if unknown:
            raise ValueError(f"{name} holds unknown classes {sorted(unknown)}")
    n = len(CLASSES)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, ([index[s] for s in y_true], [index[s] for s in y_pred]), 1)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    hits = np.diag(confusion)

    def ratio(a: float, b: float) -> float:
        return float(a / b) if b else float("nan")

    per_class = {}
    for i, state in enumerate(CLASSES):
        precision, recall = ratio(hits[i], predicted[i]), ratio(hits[i], support[i])
        if np.isnan(precision) or np.isnan(recall) or precision + recall == 0:
            f1 = 0.0 if support[i] or predicted[i] else float("nan")
        else:
            f1 = 2 * precision * recall / (precision + recall)
        per_class[state] = {"precision": precision, "recall": recall, "f1": f1, "support": int(support[i])}
    abnormal = [index[s] for s in ABNORMAL_CLASSES]
    specificity = ratio(hits[0], support[0])
    sensitivity = ratio(hits[abnormal].sum(), support[abnormal].sum())
    return {
        "score": float(np.nanmean([sensitivity, specificity]))
        if not (np.isnan(sensitivity) and np.isnan(specificity))
        else float("nan"),
        "sensitivity": sensitivity,
        "specificity": specificity,
        "sprsound_score": sprsound_score(sensitivity, specificity),
        "accuracy": ratio(hits.sum(), confusion.sum()),
        "n": int(confusion.sum()),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }


def icbhi_score_from_indices(true_index: np.ndarray, predicted_index: np.ndarray) -> float:
    """The ICBHI Score of :func:`icbhi_metrics` for class indices (0 = normal), without the rest.

    The offset and threshold searches evaluate the Score hundreds of times
    per fit; this skips the label validation and per-class table.
    """
    hits = true_index == predicted_index
    normal = true_index == 0
    n_normal, n_abnormal = int(normal.sum()), int(len(true_index) - normal.sum())
    specificity = hits[normal].sum() / n_normal if n_normal else np.nan
    sensitivity = hits[~normal].sum() / n_abnormal if n_abnormal else np.nan
    if n_normal and n_abnormal:
        return float((sensitivity + specificity) / 2)
    return float(specificity if n_normal else sensitivity) if (n_normal or n_abnormal) else float("nan")


def bootstrap_score_interval(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: np.ndarray | None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """Percentile bootstrap interval of the ICBHI Score, resampling whole groups (patients).

    Resampling patients rather than clips respects that one patient's clips
    are not independent. Without groups, clips are resampled.
    """
    y_true = np.asarray(y_true, dtype=str)
    y_pred = np.asarray(y_pred, dtype=str)
    units = np.asarray(groups) if groups is not None else np.arange(len(y_true)).astype(str)
    unique, inverse = np.unique(units, return_inverse=True)
    # A resample's Score depends only on how often each group is drawn, so
    # per-group counts of normal and abnormal clips and hits are all it needs.
    normal = y_true == "normal"
    hit = y_true == y_pred
    per_group = np.stack(
        [np.bincount(inverse, weights=w, minlength=len(unique)) for w in (normal, normal & hit, ~normal, ~normal & hit)]
    )
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(unique), len(unique))
        n_normal, normal_hits, n_abnormal, abnormal_hits = per_group @ np.bincount(pick, minlength=len(unique))
        rates = [normal_hits / n_normal if n_normal else np.nan, abnormal_hits / n_abnormal if n_abnormal else np.nan]
        scores.append(float(np.nanmean(rates)) if n_normal or n_abnormal else np.nan)
    scores = np.array(scores)
    alpha = (1 - level) / 2
    return {
        "level": level,
        "low": float(np.nanquantile(scores, alpha)),
        "high": float(np.nanquantile(scores, 1 - alpha)),
        "n_boot": n_boot,
        "resampled": "groups" if groups is not None else "clips",
    }
