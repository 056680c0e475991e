"""The "auto" decision rule, its two candidates, and the registry of every rule.

``peak-detectors``
    the four HMMs read as a crackle and a wheeze detector per frame
    (log(p_crackle + p_both) - log(p_normal + p_wheeze), from the per-frame
    forward increments, and likewise for wheeze); a clip's evidence is the
    maximum over the clip of the ``peak_frames``-frame moving average of that
    ratio (the whole clip's mean when it is shorter), so a short event inside
    a long breathing cycle is not diluted by the breath around it. Two
    thresholds tuned on held-out clips; "both" when both fire. On ICBHI 2017
    it is the only rule that predicts "both".
``tuned-length``
    the tuned offsets plus ``w`` times a per-class log-normal
    log-likelihood of the clip's length in frames, ``w`` tuned with the
    offsets. Event-cut clips (SPRSound) carry their class in their length,
    which the per-frame HMM scores throw away.
``auto`` (the default)
    chooses between the two on the inner folds: each is tuned on one inner
    fold's held-out clips and scored on the other's (cross-fitted, so the
    rule with more freedom does not win by fitting noise); "tuned-length"
    must win by ``select_margin``. The choice and both inner Scores go to its
    report; the chosen rule, tuned on all held-out clips, gives the scores.

They are rules like those of :mod:`hmmclf.decision` (same face), kept apart
only for the length of that module. :data:`DECISION_RULES` registers every rule.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ._atomic import checked_array
from .decision import (
    ArgmaxRule,
    ClipLikelihoods,
    DecisionRule,
    DetectorsRule,
    StackedRule,
    TunedOffsetsRule,
    compose_detectors,
    detector_evidence,
    search_offsets,
)
from .labels import CLASSES
from .metrics import icbhi_score_from_indices

LENGTH_WEIGHTS = (0.0, 0.03, 0.1, 0.3, 1.0)
"""Candidate weights of the clip-length term of "tuned-length" (0 = the plain tuned rule)."""
LENGTH_SD_FLOOR = 0.05
"""Smallest standard deviation of a class's log clip length (a class whose clips all have one length)."""


class StatisticRule(DecisionRule):
    """A rule tuned on per-clip statistics of held-out clips, in three steps.

    :meth:`held_out_statistics` (honest statistics of the held-out clips),
    :meth:`tune` (parameters and Score on some rows) and :meth:`decide`
    (decision scores of rows under given parameters). Split so that the
    "auto" rule can tune a candidate on one inner fold and score it on another.
    """

    def held_out_statistics(self, held_out: ClipLikelihoods, y: np.ndarray, folds: list) -> np.ndarray:
        """(n_clips, d) statistics of the held-out clips."""
        raise NotImplementedError

    def tune(self, statistics: np.ndarray, y: np.ndarray) -> tuple[Any, float]:
        """Parameters maximising the ICBHI Score on these rows, and that Score."""
        raise NotImplementedError

    def decide(self, statistics: np.ndarray, parameters: Any) -> np.ndarray:
        """(n, 4) decision scores of these rows under ``parameters``."""
        raise NotImplementedError

    def adopt(self, parameters: Any, held_out: ClipLikelihoods, y: np.ndarray) -> None:
        """Keep ``parameters`` (and what else the rule learns from all held-out clips)."""
        raise NotImplementedError

    def fit(self, held_out, y, folds):
        return self.fit_statistics(self.held_out_statistics(held_out, y, folds), held_out, y)

    def fit_statistics(self, statistics: np.ndarray, held_out: ClipLikelihoods, y: np.ndarray) -> StatisticRule:
        """:meth:`fit` from statistics already computed by :meth:`held_out_statistics`."""
        parameters, score = self.tune(statistics, y)
        self.adopt(parameters, held_out, y)
        self.report["inner_score"] = round(float(score), 6)
        return self


class PeakDetectorsRule(StatisticRule):
    """Crackle and wheeze detectors on the peak of a moving average of their per-frame evidence.

    Parameters
    ----------
    peak_frames : int
        Window of the moving average, in frames (50 = 1 s at a 20 ms hop).
    thresholds : (2,) array, optional
        Crackle and wheeze thresholds (fitted by :meth:`fit`).
    """

    name = "peak-detectors"
    needs_frame_increments = True
    options = ("peak_frames",)

    def __init__(self, peak_frames: int = 50, thresholds: np.ndarray | None = None) -> None:
        super().__init__()
        self.peak_frames = int(peak_frames)
        self.thresholds = np.zeros(2) if thresholds is None else np.asarray(thresholds, dtype=np.float64)

    def held_out_statistics(self, held_out, y, folds):
        return peak_evidence(held_out, self.peak_frames)

    def tune(self, statistics, y):
        return search_evidence_thresholds(statistics, y)

    def decide(self, statistics, parameters):
        return compose_detectors(statistics, parameters)

    def adopt(self, parameters, held_out, y):
        self.thresholds = np.asarray(parameters, dtype=np.float64)
        self.report.update({"thresholds": _rounded(self.thresholds), "peak_frames": self.peak_frames})

    def scores(self, clips):
        return compose_detectors(peak_evidence(clips, self.peak_frames), self.thresholds)

    def to_arrays(self):
        return {"thresholds": self.thresholds}

    @classmethod
    def from_arrays(cls, arrays, **options):
        return cls(options.get("peak_frames", 50), checked_array(arrays, "thresholds", (2,)))


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
                "offsets": _rounded(self.offsets),
                "length_weight": self.weight,
                "length_median_frames": _rounded(np.exp(self.length_model[0])),
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


AUTO_CANDIDATES: tuple[type[StatisticRule], ...] = (PeakDetectorsRule, TunedLengthRule)
"""The rules "auto" chooses between; a later one must beat the first by ``select_margin``."""


class AutoRule(DecisionRule):
    """Chooses "peak-detectors" or "tuned-length" on the inner folds, then decides as the chosen one.

    Parameters
    ----------
    peak_frames : int
        Passed to "peak-detectors".
    select_margin : float
        ICBHI Score (0.03 = 3 points) by which "tuned-length" must beat
        "peak-detectors" on the cross-fitted inner folds to be chosen.
    chosen : StatisticRule, optional
        The fitted chosen rule (set by :meth:`fit` or :meth:`from_arrays`).
    """

    name = "auto"
    options = ("peak_frames", "select_margin")

    def __init__(self, peak_frames: int = 50, select_margin: float = 0.03, chosen: StatisticRule | None = None):
        super().__init__()
        self.peak_frames = int(peak_frames)
        self.select_margin = float(select_margin)
        self.chosen = chosen

    @property
    def needs_frame_increments(self) -> bool:  # type: ignore[override]
        """Before fitting, what any candidate needs; after, what the chosen rule needs."""
        if self.chosen is None:
            return any(rule.needs_frame_increments for rule in AUTO_CANDIDATES)
        return self.chosen.needs_frame_increments

    def _candidates(self) -> list[StatisticRule]:
        options = {"peak_frames": self.peak_frames}
        return [rule(**{k: options[k] for k in rule.options}) for rule in AUTO_CANDIDATES]

    def fit(self, held_out, y, folds):
        candidates = self._candidates()
        statistics = [rule.held_out_statistics(held_out, y, folds) for rule in candidates]
        cross = []
        for rule, stats in zip(candidates, statistics):
            predicted = np.zeros(len(y), dtype=np.int64)
            for k, (_, test) in enumerate(folds):
                other = np.concatenate([t for j, (_, t) in enumerate(folds) if j != k])
                parameters, _ = rule.tune(stats[other], y[other])
                predicted[test] = np.argmax(rule.decide(stats[test], parameters), axis=1)
            cross.append(icbhi_score_from_indices(y, predicted))
        pick = 0
        for k in range(1, len(candidates)):
            if cross[k] >= cross[pick] + self.select_margin:
                pick = k
        self.chosen = candidates[pick].fit_statistics(statistics[pick], held_out, y)
        self.report.update(
            {
                "chosen": self.chosen.name,
                "cross_fitted_inner_scores": {r.name: round(float(v), 6) for r, v in zip(candidates, cross)},
                "select_margin": self.select_margin,
                **{k: v for k, v in self.chosen.report.items() if k != "rule"},
            }
        )
        return self

    def scores(self, clips):
        if self.chosen is None:
            raise ValueError("the auto rule is not fitted")
        return self.chosen.scores(clips)

    def to_arrays(self):
        index = [rule.name for rule in AUTO_CANDIDATES].index(self.chosen.name)
        arrays = {f"{self.chosen.name}.{k}": v for k, v in self.chosen.to_arrays().items()}
        return {"chosen": np.array([float(index)]), **arrays}

    @classmethod
    def from_arrays(cls, arrays, **options):
        index = checked_array(arrays, "chosen", (1,))[0]
        if index != round(index) or not 0 <= index < len(AUTO_CANDIDATES):
            raise ValueError(f"chosen must index one of {[r.name for r in AUTO_CANDIDATES]}, got {index}")
        rule = AUTO_CANDIDATES[int(index)]
        prefix = rule.name + "."
        chosen = rule.from_arrays({k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}, **options)
        return cls(options.get("peak_frames", 50), options.get("select_margin", 0.03), chosen)


DECISION_RULES: dict[str, type[DecisionRule]] = {
    rule.name: rule
    for rule in (AutoRule, TunedOffsetsRule, ArgmaxRule, StackedRule, DetectorsRule, PeakDetectorsRule, TunedLengthRule)
}
"""Every decision rule by name (the classifier's ``decision`` parameter); the default first."""


def make_decision_rule(name: str, **options: Any) -> DecisionRule:
    """A new, unfitted rule; of ``options`` (the classifier's settings) it gets those it names."""
    if name not in DECISION_RULES:
        raise ValueError(f"decision must be one of {tuple(DECISION_RULES)}, got {name!r}")
    rule = DECISION_RULES[name]
    return rule(**{k: options[k] for k in rule.options if k in options})


def rule_from_arrays(name: str, arrays: Mapping[str, np.ndarray], **options: Any) -> DecisionRule:
    """A fitted rule read from its arrays; ValueError for an unknown name or a stray array."""
    if name not in DECISION_RULES:
        raise ValueError(f"unknown decision rule {name!r}")
    rule = DECISION_RULES[name].from_arrays(arrays, **options)
    stray = sorted(set(arrays) - set(rule.to_arrays()))
    if stray:
        raise ValueError(f"decision rule {name!r} has unexpected arrays {stray}")
    return rule


def moving_average_max(values: np.ndarray, width: int) -> np.ndarray:
    """Column-wise maximum of the ``width``-frame moving average of (n, d) ``values``.

    A clip shorter than ``width`` gets its plain mean. A column holding -inf
    (a detector whose classes have no HMM) stays -inf in the windows that
    contain it, never NaN.
    """
    width = max(1, min(int(width), len(values)))
    if np.isfinite(values).all():
        cumulative = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0)])
        return ((cumulative[width:] - cumulative[:-width]) / width).max(axis=0)
    windows = np.lib.stride_tricks.sliding_window_view(values, width, axis=0)
    return windows.mean(axis=-1).max(axis=0)


def peak_evidence(clips: ClipLikelihoods, peak_frames: int) -> np.ndarray:
    """(n_clips, 2) crackle and wheeze evidence: the maximum of the ``peak_frames``-frame moving average
    of the per-frame detector log-likelihood ratios (see :func:`~hmmclf.decision.detector_evidence`)."""
    if clips.frame_increments is None:
        raise ValueError("peak_evidence needs the per-frame increments")
    evidence = detector_evidence(clips.frame_increments)
    bounds = clips.bounds
    out = np.empty((len(clips.n_frames), 2))
    for i in range(len(clips.n_frames)):
        out[i] = moving_average_max(evidence[bounds[i] : bounds[i + 1]], peak_frames)
    return out


def search_evidence_thresholds(evidence: np.ndarray, y: np.ndarray, n_candidates: int = 40) -> tuple[np.ndarray, float]:
    """Crackle and wheeze thresholds on (n, 2) evidence maximising the ICBHI Score.

    Candidates are quantiles of each column's finite values; on ties the
    lower threshold (the first found) is kept. A column with no finite value
    (its detector has no HMM) keeps threshold 0 and never fires.
    """
    grid = []
    for j in range(2):
        finite = evidence[:, j][np.isfinite(evidence[:, j])]
        grid.append(np.quantile(finite, np.linspace(0, 1, n_candidates)) if len(finite) else np.zeros(1))
    best, best_t = -1.0, np.zeros(2)
    for tc in grid[0]:
        crackle = (evidence[:, 0] > tc).astype(np.int64)
        for tw in grid[1]:
            value = icbhi_score_from_indices(y, crackle + 2 * (evidence[:, 1] > tw).astype(np.int64))
            if value > best + 1e-12:
                best, best_t = value, np.array([tc, tw])
    return best_t, best


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


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in values]
