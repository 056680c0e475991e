"""Rules that read the four HMMs as two detectors, crackle present and wheeze present.

``detectors``
    crackle evidence = log(p_crackle + p_both) - log(p_normal + p_wheeze) over
    the whole clip, wheeze evidence likewise; each compared with a threshold
    tuned on held-out clips; "both" when both fire.
``peak-detectors``
    the same evidence per frame (from the per-frame forward increments); a
    clip's evidence is the maximum over the clip of the ``peak_frames``-frame
    moving average (the whole clip's mean when it is shorter), so a short
    event inside a long breathing cycle is not diluted by the breath around
    it. On ICBHI 2017 it is the only rule that predicts "both".
"""

from __future__ import annotations

import numpy as np

from ...utils.files import checked_array
from .base import ClipLikelihoods, DecisionRule, StatisticRule, rounded


class ThresholdParameters:
    """The parameters of a two-detector rule, (2,) crackle and wheeze thresholds, and their model-file arrays."""

    thresholds: np.ndarray

    def _set_thresholds(self, thresholds: np.ndarray | None) -> None:
        self.thresholds = np.zeros(2) if thresholds is None else np.asarray(thresholds, dtype=np.float64)

    def to_arrays(self):
        return {"thresholds": self.thresholds}

    @staticmethod
    def read_thresholds(arrays) -> np.ndarray:
        """The validated (2,) thresholds of a model file's arrays."""
        return checked_array(arrays, "thresholds", (2,))


class DetectorsRule(ThresholdParameters, DecisionRule):
    """Crackle and wheeze detectors read off the four HMMs, composed into the label set.

    Crackle evidence = log(p_crackle + p_both) - log(p_normal + p_wheeze) per
    frame, wheeze evidence likewise; each is compared with a threshold tuned
    on held-out clips (two parameters instead of three offsets, each decided
    on twice the clips).
    """

    name = "detectors"

    def __init__(self, thresholds: np.ndarray | None = None) -> None:
        super().__init__()
        self._set_thresholds(thresholds)

    def fit(self, held_out, y, folds):
        evidence = detector_evidence(held_out.base_scores)
        self.thresholds, score = search_thresholds(evidence, y, include_zero=True, prefer_near_zero=True)
        self.report.update({"thresholds": rounded(self.thresholds), "inner_score": round(float(score), 6)})
        return self

    def scores(self, clips):
        return detector_scores(clips.base_scores, self.thresholds)

    @classmethod
    def from_arrays(cls, arrays, **options):
        return cls(cls.read_thresholds(arrays))


class PeakDetectorsRule(ThresholdParameters, StatisticRule):
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
        self._set_thresholds(thresholds)

    def held_out_statistics(self, held_out, y, folds):
        return peak_evidence(held_out, self.peak_frames)

    def tune(self, statistics, y):
        return search_thresholds(statistics, y)

    def decide(self, statistics, parameters):
        return compose_detectors(statistics, parameters)

    def adopt(self, parameters, held_out, y):
        self.thresholds = np.asarray(parameters, dtype=np.float64)
        self.report.update({"thresholds": rounded(self.thresholds), "peak_frames": self.peak_frames})

    def scores(self, clips):
        return compose_detectors(peak_evidence(clips, self.peak_frames), self.thresholds)

    @classmethod
    def from_arrays(cls, arrays, **options):
        return cls(options.get("peak_frames", 50), cls.read_thresholds(arrays))


DETECTOR_NAMES = ("crackle", "wheeze")
"""What the columns of :func:`detector_evidence` detect, in order."""


def detector_evidence(scores: np.ndarray) -> np.ndarray:
    """(n, 2) crackle and wheeze evidence from per-class scores (normal, crackle, wheeze, both)."""
    pair = lambda a, b: np.logaddexp(scores[:, a], scores[:, b])  # noqa: E731
    return np.stack([pair(1, 3) - pair(0, 2), pair(2, 3) - pair(0, 1)], axis=1)


def detector_scores(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per-class log-scores whose argmax is the composed two-detector decision.

    With p = sigmoid(evidence - threshold) for crackle and wheeze, taken as
    independent, the classes get log((1-pc)(1-pw)), log(pc(1-pw)),
    log((1-pc)pw) and log(pc pw); each factor exceeds 1/2 exactly when its
    evidence passes its threshold.
    """
    return compose_detectors(detector_evidence(scores), thresholds)


def compose_detectors(evidence: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(n, 4) per-class log-scores of two thresholded detectors, from (n, 2) crackle and wheeze evidence.

    The argmax is "both" when both evidences exceed their thresholds, "normal"
    when neither does. Evidence of -inf (a detector whose classes have no HMM)
    never fires; nothing here produces NaN.
    """
    margin = np.asarray(evidence, dtype=float) - np.asarray(thresholds, dtype=float)[None, :]
    log_yes = -np.logaddexp(0.0, -margin)
    log_no = -np.logaddexp(0.0, margin)
    return np.stack(
        [
            log_no[:, 0] + log_no[:, 1],
            log_yes[:, 0] + log_no[:, 1],
            log_no[:, 0] + log_yes[:, 1],
            log_yes[:, 0] + log_yes[:, 1],
        ],
        axis=1,
    )


def moving_average(values: np.ndarray, width: int) -> np.ndarray:
    """The ``width``-frame moving average of (n, d) ``values``, shape (n - width + 1, d): row i averages
    rows i .. i + width - 1.

    A clip shorter than ``width`` gets one row, its plain mean. A column
    holding -inf (a detector whose classes have no HMM) stays -inf in the
    windows that contain it, never NaN.
    """
    width = max(1, min(int(width), len(values)))
    if np.isfinite(values).all():
        cumulative = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0)])
        return (cumulative[width:] - cumulative[:-width]) / width
    windows = np.lib.stride_tricks.sliding_window_view(values, width, axis=0)
    return windows.mean(axis=-1)


def moving_average_max(values: np.ndarray, width: int) -> np.ndarray:
    """Column-wise maximum of :func:`moving_average`: a detector's evidence for the clip."""
    return moving_average(values, width).max(axis=0)


def peak_evidence(clips: ClipLikelihoods, peak_frames: int) -> np.ndarray:
    """(n_clips, 2) crackle and wheeze evidence: the maximum of the ``peak_frames``-frame moving average
    of the per-frame detector log-likelihood ratios (see :func:`detector_evidence`)."""
    if clips.frame_increments is None:
        raise ValueError("peak_evidence needs the per-frame increments")
    evidence = detector_evidence(clips.frame_increments)
    bounds = clips.bounds
    out = np.empty((len(clips.n_frames), 2))
    for i in range(len(clips.n_frames)):
        out[i] = moving_average_max(evidence[bounds[i] : bounds[i + 1]], peak_frames)
    return out


def search_thresholds(
    evidence: np.ndarray,
    y: np.ndarray,
    n_candidates: int = 40,
    *,
    include_zero: bool = False,
    prefer_near_zero: bool = False,
) -> tuple[np.ndarray, float]:
    """Crackle and wheeze thresholds on (n, 2) evidence maximising the ICBHI Score.

    Candidates are quantiles of each column's finite values (and 0 with
    ``include_zero``). On ties the first threshold pair found is kept, or, with
    ``prefer_near_zero``, the pair nearest 0. A column with no finite value
    (its detector has no HMM) keeps threshold 0 and never fires. ``y`` holds
    class indices (0 = normal).

    Returns
    -------
    (thresholds, best Score)
    """
    grid = []
    for j in range(2):
        finite = evidence[:, j][np.isfinite(evidence[:, j])]
        quantiles = np.quantile(finite, np.linspace(0, 1, n_candidates)) if len(finite) else np.zeros(1)
        grid.append(np.concatenate([[0.0], quantiles]) if include_zero and len(finite) else quantiles)
    scores = _grid_scores(evidence, y, grid[0], grid[1])
    best, best_t = -1.0, np.zeros(2)
    # The same visit order and tie rules as a loop over (crackle, wheeze) thresholds computing each Score.
    for i, tc in enumerate(grid[0]):
        for j, tw in enumerate(grid[1]):
            value = scores[i, j]
            tie = abs(value - best) <= 1e-12
            if value > best + 1e-12 or (prefer_near_zero and tie and abs(tc) + abs(tw) < np.abs(best_t).sum()):
                best, best_t = value, np.array([tc, tw])
    return best_t, best


def _grid_scores(evidence: np.ndarray, y: np.ndarray, crackle_grid: np.ndarray, wheeze_grid: np.ndarray) -> np.ndarray:
    """ICBHI Score of every (crackle, wheeze) threshold pair, as :func:`icbhi_score_from_indices` computes it.

    A clip is predicted normal when neither detector fires, crackle or wheeze when one does, both
    when both do; the hits of each true class are counted for all pairs at once with one product
    of fire/no-fire indicator matrices. The counts are integers and the Score is formed from them
    as the metric forms it, so the values are the same to the last bit.
    """
    crackle = evidence[:, :1] > crackle_grid[None, :]  # (n, n_crackle)
    wheeze = evidence[:, 1:2] > wheeze_grid[None, :]  # (n, n_wheeze)
    wanted = {0: (~crackle, ~wheeze), 1: (crackle, ~wheeze), 2: (~crackle, wheeze), 3: (crackle, wheeze)}
    hits = {k: c[y == k].T.astype(np.int64) @ w[y == k].astype(np.int64) for k, (c, w) in wanted.items()}
    n_normal, n_abnormal = int(np.sum(y == 0)), int(np.sum(y != 0))
    specificity = hits[0] / n_normal if n_normal else None
    sensitivity = (hits[1] + hits[2] + hits[3]) / n_abnormal if n_abnormal else None
    if specificity is not None and sensitivity is not None:
        return (sensitivity + specificity) / 2
    if specificity is None and sensitivity is None:
        return np.full((len(crackle_grid), len(wheeze_grid)), np.nan)
    return specificity if specificity is not None else sensitivity
