"""Rules that add tuned per-class offsets to the HMM scores.

``tuned``
    argmax after additive per-class offsets that maximise the ICBHI Score on
    held-out inner-fold clips. Per-frame likelihood differences between the
    HMMs are small next to the log-priors, so without such a calibration the
    argmax rule answers "normal" almost always.
``tuned-length``
    the tuned offsets plus ``w`` times a per-class log-normal
    log-likelihood of the clip's length in frames, ``w`` tuned with the
    offsets. Event-cut clips (SPRSound) carry their class in their length,
    which the per-frame HMM scores throw away.
"""

from __future__ import annotations

import numba
import numpy as np

from ...task.classes import CLASSES
from ...utils.files import checked_array
from .base import DecisionRule, StatisticRule, rounded

LENGTH_WEIGHTS = (0.0, 0.03, 0.1, 0.3, 1.0)
"""Candidate weights of the clip-length term of "tuned-length" (0 = the plain tuned rule)."""
LENGTH_SD_FLOOR = 0.05
"""Smallest standard deviation of a class's log clip length (a class whose clips all have one length)."""


class TunedOffsetsRule(DecisionRule):
    """Argmax after per-class offsets that maximise the ICBHI Score on held-out clips."""

    name = "tuned"

    def __init__(self, offsets: np.ndarray | None = None) -> None:
        super().__init__()
        self.offsets = np.zeros(len(CLASSES)) if offsets is None else np.asarray(offsets, dtype=np.float64)

    def fit(self, held_out, y, folds):
        self.offsets, score = search_offsets(held_out.base_scores, y)
        self.report.update({"offsets": rounded(self.offsets), "inner_score": round(float(score), 6)})
        return self

    def scores(self, clips):
        return clips.base_scores + self.offsets

    def to_arrays(self):
        return {"offsets": self.offsets}

    @classmethod
    def from_arrays(cls, arrays, **options):
        return cls(checked_array(arrays, "offsets", (len(CLASSES),)))


class TunedLengthRule(StatisticRule):
    """Tuned offsets plus a weighted per-class log-normal log-likelihood of the clip's length.

    Scores = per-frame log-likelihood + log-prior + ``weight`` x length
    log-likelihood + offsets. ``weight`` (from :data:`LENGTH_WEIGHTS`) and the
    offsets are tuned together on held-out clips, whose length log-likelihoods
    come from the length model of their inner training part; the kept length
    model is fitted on every training clip.

    Parameters
    ----------
    offsets : (4,) array, optional
    weight : float
    length_model : (2, 4) array, optional
        Mean and standard deviation of log(n_frames) per class.
    """

    name = "tuned-length"

    def __init__(
        self, offsets: np.ndarray | None = None, weight: float = 0.0, length_model: np.ndarray | None = None
    ) -> None:
        super().__init__()
        self.offsets = np.zeros(len(CLASSES)) if offsets is None else np.asarray(offsets, dtype=np.float64)
        self.weight = float(weight)
        self.length_model = (
            np.vstack([np.zeros(len(CLASSES)), np.ones(len(CLASSES))])
            if length_model is None
            else np.asarray(length_model, dtype=np.float64)
        )

    def held_out_statistics(self, held_out, y, folds):
        log_length = np.log(held_out.n_frames.astype(float))
        length = np.empty((len(y), len(CLASSES)))
        for train, test in folds:
            length[test] = length_log_likelihood(log_length[test], length_model(log_length[train], y[train]))
        return np.hstack([held_out.base_scores, length])

    def tune(self, statistics, y):
        base, length = statistics[:, : len(CLASSES)], statistics[:, len(CLASSES) :]
        best = (-1.0, 0.0, np.zeros(len(CLASSES)))
        for weight in LENGTH_WEIGHTS:
            offsets, value = search_offsets(base + weight * length, y)
            if value > best[0] + 1e-12:
                best = (value, weight, offsets)
        return (best[1], best[2]), best[0]

    def decide(self, statistics, parameters):
        weight, offsets = parameters
        return statistics[:, : len(CLASSES)] + weight * statistics[:, len(CLASSES) :] + offsets

    def adopt(self, parameters, held_out, y):
        self.weight, self.offsets = float(parameters[0]), np.asarray(parameters[1], dtype=np.float64)
        self.length_model = length_model(np.log(held_out.n_frames.astype(float)), y)
        self.report.update(
            {
                "offsets": rounded(self.offsets),
                "length_weight": self.weight,
                "length_median_frames": rounded(np.exp(self.length_model[0])),
            }
        )

    def scores(self, clips):
        length = length_log_likelihood(np.log(clips.n_frames.astype(float)), self.length_model)
        return clips.base_scores + self.weight * length + self.offsets

    def to_arrays(self):
        return {"offsets": self.offsets, "weight": np.array([self.weight]), "length_model": self.length_model}

    @classmethod
    def from_arrays(cls, arrays, **options):
        k = len(CLASSES)
        weight = checked_array(arrays, "weight", (1,))
        model = checked_array(arrays, "length_model", (2, k))
        if weight[0] < 0:
            raise ValueError("weight must be >= 0")
        if (model[1] <= 0).any():
            raise ValueError("length_model standard deviations must be positive")
        return cls(checked_array(arrays, "offsets", (k,)), float(weight[0]), model)


def search_offsets(
    scores: np.ndarray, y: np.ndarray, rounds: int = 4, n_candidates: int = 48
) -> tuple[np.ndarray, float]:
    """Per-class additive offsets maximising the ICBHI Score of ``argmax(scores + offsets)``.

    Coordinate ascent, deterministic: first one common offset for the three
    abnormal classes (the sensitivity/specificity trade-off), then each
    abnormal class's own, over candidate values at quantiles of the margin
    that class must overcome. Normal's offset stays 0. Ties keep the offset
    nearest 0, so a flat objective does not drift.

    Parameters
    ----------
    scores : (n_clips, 4) array
    y : (n_clips,) array of class indices (0 = normal)

    Returns
    -------
    (offsets, best Score)
    """
    offsets = np.zeros(len(CLASSES))
    scores_c = np.ascontiguousarray(scores, dtype=np.float64)
    y_c = np.ascontiguousarray(y, dtype=np.int64)

    def objective(candidate: np.ndarray) -> float:
        # Compiled: the search evaluates the Score thousands of times per fit.
        return float(_offset_score(scores_c, np.asarray(candidate, dtype=np.float64), y_c))

    def candidates(columns: list[int], current: np.ndarray) -> np.ndarray:
        shifted = scores + current
        others = np.delete(shifted, columns, axis=1).max(axis=1)
        margin = others - shifted[:, columns].max(axis=1)
        values = np.quantile(margin, np.linspace(0.0, 1.0, n_candidates)) + 1e-9
        return np.concatenate([[0.0], values])

    best = objective(offsets)
    # A class never seen in training scores -inf everywhere: no offset can or should move it.
    abnormal = [k for k in range(1, len(CLASSES)) if np.isfinite(scores[:, k]).any()]
    if not abnormal:
        return offsets, best
    moves = [abnormal] + [[k] for k in abnormal] * rounds
    for columns in moves:
        for step in candidates(columns, offsets):
            trial = offsets.copy()
            trial[columns] += step
            value = objective(trial)
            if value > best + 1e-12 or (abs(value - best) <= 1e-12 and np.abs(trial).sum() < np.abs(offsets).sum()):
                best, offsets = value, trial
    return offsets, best


def length_model(log_length: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(2, 4) mean and standard deviation of log clip length per class (``y``: class indices).

    A class without clips gets the pooled statistics (its HMM is absent, so
    its score is -inf whatever its length term).
    """
    out = np.empty((2, len(CLASSES)))
    for k in range(len(CLASSES)):
        values = log_length[y == k] if np.any(y == k) else log_length
        out[0, k] = values.mean()
        out[1, k] = max(float(values.std()), LENGTH_SD_FLOOR)
    return out


def length_log_likelihood(log_length: np.ndarray, model: np.ndarray) -> np.ndarray:
    """(n, 4) log-normal log-likelihood of each clip's length under each class (constant dropped)."""
    z = (np.asarray(log_length, dtype=float)[:, None] - model[0]) / model[1]
    return -0.5 * z**2 - np.log(model[1])


@numba.njit(cache=True, nogil=True)
def _offset_score(scores, offsets, y):  # pragma: no cover - compiled
    """``icbhi_score_from_indices(y, argmax(scores + offsets, axis=1))`` in one pass, same arithmetic
    (the first of equal maxima wins, as with numpy's argmax)."""
    n_normal, normal_hits, n_abnormal, abnormal_hits = 0, 0, 0, 0
    for i in range(scores.shape[0]):
        best, pick = scores[i, 0] + offsets[0], 0
        for k in range(1, scores.shape[1]):
            value = scores[i, k] + offsets[k]
            if value > best:
                best, pick = value, k
        if y[i] == 0:
            n_normal += 1
            normal_hits += pick == 0
        else:
            n_abnormal += 1
            abnormal_hits += pick == y[i]
    if n_normal and n_abnormal:
        return (abnormal_hits / n_abnormal + normal_hits / n_normal) / 2
    if n_normal:
        return normal_hits / n_normal
    if n_abnormal:
        return abnormal_hits / n_abnormal
    return np.nan
