"""Decision rules: from the per-class HMM log-likelihoods of a clip to its label class.

The classifier scores a clip under each label class's HMM; a decision rule
turns those numbers into one score per class, and the clip gets the class of
the highest score. Every rule is a small class with the same face:

``fit(held_out, y, folds)``
    learn the rule's parameters from clips that the HMMs did not see
    (held-out parts of inner folds of the training data);
``scores(clips)``
    (n_clips, 4) decision scores, columns in :data:`~hmmclf.labels.CLASSES` order;
``to_arrays()`` / ``from_arrays(arrays)``
    the parameters as float64 arrays for a pickle-free model file;
``report``
    a JSON-able summary of what was learnt.

The rules:

``argmax``
    per-frame log-likelihood + class log-prior (+ the user's ``class_offsets``).
``tuned``
    argmax after additive per-class offsets that maximise the ICBHI Score on
    held-out inner-fold clips. Per-frame likelihood differences between the
    HMMs are small next to the log-priors, so without such a calibration the
    argmax rule answers "normal" almost always.
``stacked``
    a class-balanced multinomial logistic regression on
    :func:`likelihood_statistics`, then tuned offsets.
``detectors``
    the four HMMs read as two detectors, crackle present and wheeze present,
    each with a threshold tuned on held-out clips; "both" is when both fire.

More rules (``peak-detectors``, ``tuned-length`` and the default ``auto``,
which chooses between those two) live in :mod:`hmmclf.auto_decision`, with
:data:`~hmmclf.auto_decision.DECISION_RULES`, the registry of every rule: a
new rule is one more class with this face, registered there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from ._atomic import checked_array
from .labels import CLASSES
from .metrics import icbhi_score_from_indices

N_STACK_FEATURES = 10
SCALE_FLOOR = 1e-6


@dataclass
class ClipLikelihoods:
    """What the HMMs say about a set of clips: the input of every decision rule.

    Attributes
    ----------
    log_likelihood : (n_clips, 4) array
        Total forward log-likelihood of each clip under each class's HMM.
    n_frames : (n_clips,) array
    base_scores : (n_clips, 4) array
        Per-frame log-likelihood + class log-prior + the user's class offsets:
        the scores of the plain argmax rule.
    frame_increments : (sum(n_frames), 4) array or None
        Per-frame increments of the forward log-likelihood, clips concatenated,
        when the rule (or the caller) asked for them.
    """

    log_likelihood: np.ndarray
    n_frames: np.ndarray
    base_scores: np.ndarray
    frame_increments: np.ndarray | None = None

    @property
    def bounds(self) -> np.ndarray:
        """(n_clips + 1,) start of each clip's rows in ``frame_increments``, then the total."""
        return np.concatenate([[0], np.cumsum(self.n_frames)])

    @classmethod
    def gather(cls, parts: Sequence[tuple[np.ndarray, ClipLikelihoods]], n_clips: int) -> ClipLikelihoods:
        """One set from parts scored separately; ``parts`` holds (clip indices, their likelihoods)."""
        width = len(CLASSES)
        log_likelihood, base = np.full((n_clips, width), np.nan), np.full((n_clips, width), np.nan)
        n_frames = np.zeros(n_clips, dtype=np.int64)
        per_clip: list[np.ndarray | None] = [None] * n_clips
        with_increments = all(part.frame_increments is not None for _, part in parts)
        for index, part in parts:
            log_likelihood[index], base[index], n_frames[index] = part.log_likelihood, part.base_scores, part.n_frames
            if with_increments:
                bounds = part.bounds
                for row, i in enumerate(index):
                    per_clip[i] = part.frame_increments[bounds[row] : bounds[row + 1]]
        increments = np.concatenate(per_clip) if with_increments else None
        return cls(log_likelihood, n_frames, base, increments)


def likelihood_statistics(clips: ClipLikelihoods) -> np.ndarray:
    """Clip descriptors built from the HMM likelihoods, shape (n_clips, 10).

    Per class, the per-frame log-likelihood (4 columns); per abnormal class,
    the 90th percentile and the maximum of its 100 ms moving-average per-frame
    log-likelihood ratio against ``normal`` (6 columns). The percentiles see a
    short wheeze or a burst of crackles that the clip average dilutes.
    """
    if clips.frame_increments is None:
        raise ValueError("likelihood_statistics needs the per-frame increments")
    bounds = clips.bounds
    out = np.empty((len(clips.n_frames), N_STACK_FEATURES))
    out[:, :4] = clips.log_likelihood / clips.n_frames[:, None]
    ratio = clips.frame_increments[:, 1:] - clips.frame_increments[:, :1]
    for i in range(len(clips.n_frames)):
        clip = ratio[bounds[i] : bounds[i + 1]]
        width = min(5, len(clip))
        smooth = np.apply_along_axis(lambda c: np.convolve(c, np.ones(width) / width, mode="valid"), 0, clip)
        out[i, 4:7] = np.percentile(clip, 90, axis=0)
        out[i, 7:10] = smooth.max(axis=0)
    return out


class DecisionRule:
    """Base class: a rule's name, what it needs, and its (empty) parameters."""

    name: ClassVar[str] = ""
    tuned_on_inner_folds: ClassVar[bool] = True
    needs_frame_increments: ClassVar[bool] = False
    options: ClassVar[tuple[str, ...]] = ()
    """The classifier settings the rule takes (``stack_c``, ``peak_frames``, ...), as keywords."""

    def __init__(self) -> None:
        self.report: dict[str, Any] = {"rule": self.name}

    def fit(self, held_out: ClipLikelihoods, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]) -> DecisionRule:
        """Learn the parameters from held-out clips; ``y`` holds class indices."""
        return self

    def scores(self, clips: ClipLikelihoods) -> np.ndarray:
        """(n_clips, 4) decision scores; the predicted class is the argmax."""
        raise NotImplementedError

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Parameters as float64 arrays (names without the model file's ``decision.`` prefix)."""
        return {}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], **options: Any) -> DecisionRule:
        """The rule with parameters read (and validated) from :meth:`to_arrays`' output.

        ``options`` are the classifier's settings; a rule takes those named in :attr:`options`.
        """
        return cls()


class ArgmaxRule(DecisionRule):
    """Highest per-frame log-likelihood + log-prior (+ class offsets); nothing to learn."""

    name = "argmax"
    tuned_on_inner_folds = False

    def __init__(self, note: str | None = None) -> None:
        super().__init__()
        if note:
            self.report["note"] = note

    def scores(self, clips: ClipLikelihoods) -> np.ndarray:
        return clips.base_scores


class TunedOffsetsRule(DecisionRule):
    """Argmax after per-class offsets that maximise the ICBHI Score on held-out clips."""

    name = "tuned"

    def __init__(self, offsets: np.ndarray | None = None) -> None:
        super().__init__()
        self.offsets = np.zeros(len(CLASSES)) if offsets is None else np.asarray(offsets, dtype=np.float64)

    def fit(self, held_out, y, folds):
        self.offsets, score = search_offsets(held_out.base_scores, y)
        self.report.update({"offsets": _rounded(self.offsets), "inner_score": round(float(score), 6)})
        return self

    def scores(self, clips):
        return clips.base_scores + self.offsets

    def to_arrays(self):
        return {"offsets": self.offsets}

    @classmethod
    def from_arrays(cls, arrays, **options):
        return cls(checked_array(arrays, "offsets", (len(CLASSES),)))


class StackedRule(DecisionRule):
    """Balanced logistic regression on :func:`likelihood_statistics`, then tuned offsets.

    Parameters
    ----------
    stack_c : float
        Inverse L2 regularisation of the logistic regression.
    """

    name = "stacked"
    needs_frame_increments = True
    options = ("stack_c",)

    def __init__(self, stack_c: float = 1.0, stacker: Stacker | None = None, offsets: np.ndarray | None = None) -> None:
        super().__init__()
        self.stack_c = stack_c
        self.stacker = stacker
        self.offsets = np.zeros(len(CLASSES)) if offsets is None else np.asarray(offsets, dtype=np.float64)

    def fit(self, held_out, y, folds):
        statistics = likelihood_statistics(held_out)
        # The regression's own held-out scores, over the same inner folds, tune the offsets.
        stacked_scores = np.empty((len(y), len(CLASSES)))
        for train, test in folds:
            stacked_scores[test] = Stacker.fit(statistics[train], y[train], self.stack_c).scores(statistics[test])
        self.stacker = Stacker.fit(statistics, y, self.stack_c)
        self.offsets, score = search_offsets(stacked_scores, y)
        self.report.update({"offsets": _rounded(self.offsets), "inner_score": round(float(score), 6)})
        return self

    def scores(self, clips):
        return self.stacker.scores(likelihood_statistics(clips)) + self.offsets

    def to_arrays(self):
        return {
            "offsets": self.offsets,
            **{f"stacker.{name}": np.asarray(getattr(self.stacker, name), dtype=np.float64) for name in Stacker.FIELDS},
        }

    @classmethod
    def from_arrays(cls, arrays, **options):
        n, k = N_STACK_FEATURES, len(CLASSES)
        shapes = {"mean": (n,), "scale": (n,), "coef": (k, n), "intercept": (k,)}
        stacker = Stacker(*(checked_array(arrays, f"stacker.{name}", shapes[name]) for name in Stacker.FIELDS))
        if (stacker.scale <= 0).any():
            raise ValueError("stacker.scale must be positive")
        return cls(options.get("stack_c", 1.0), stacker, checked_array(arrays, "offsets", (k,)))


class DetectorsRule(DecisionRule):
    """Crackle and wheeze detectors read off the four HMMs, composed into the label set.

    Crackle evidence = log(p_crackle + p_both) - log(p_normal + p_wheeze) per
    frame, wheeze evidence likewise; each is compared with a threshold tuned
    on held-out clips (two parameters instead of three offsets, each decided
    on twice the clips).
    """

    name = "detectors"

    def __init__(self, thresholds: np.ndarray | None = None) -> None:
        super().__init__()
        self.thresholds = np.zeros(2) if thresholds is None else np.asarray(thresholds, dtype=np.float64)

    def fit(self, held_out, y, folds):
        self.thresholds, score = search_thresholds(held_out.base_scores, y)
        self.report.update({"thresholds": _rounded(self.thresholds), "inner_score": round(float(score), 6)})
        return self

    def scores(self, clips):
        return detector_scores(clips.base_scores, self.thresholds)

    def to_arrays(self):
        return {"thresholds": self.thresholds}

    @classmethod
    def from_arrays(cls, arrays, **options):
        return cls(checked_array(arrays, "thresholds", (2,)))


class Stacker:
    """A fitted standardise + multinomial logistic regression, kept as plain arrays.

    Plain arrays (not a scikit-learn object) so that a model file stores it
    without pickle.
    """

    FIELDS = ("mean", "scale", "coef", "intercept")

    def __init__(self, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> None:
        self.mean, self.scale, self.coef, self.intercept = mean, scale, coef, intercept

    @classmethod
    def fit(cls, features: np.ndarray, y: np.ndarray, c: float) -> Stacker:
        """Fit on ``features`` with class indices ``y`` (classes balanced)."""
        from sklearn.linear_model import LogisticRegression

        mean = features.mean(axis=0)
        scale = np.maximum(features.std(axis=0), SCALE_FLOOR)
        lr = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
        lr.fit((features - mean) / scale, np.asarray(CLASSES)[y])
        order = [list(lr.classes_).index(name) for name in CLASSES]
        return cls(mean, scale, lr.coef_[order].astype(float), lr.intercept_[order].astype(float))

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Log-odds of each class (columns in ``CLASSES`` order)."""
        return ((features - self.mean) / self.scale) @ self.coef.T + self.intercept


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in values]


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


def search_thresholds(scores: np.ndarray, y: np.ndarray, n_candidates: int = 40) -> tuple[np.ndarray, float]:
    """Crackle and wheeze thresholds maximising the ICBHI Score (grid over evidence quantiles).

    ``y`` holds class indices (0 = normal).
    """
    evidence = detector_evidence(scores)
    grid = [np.concatenate([[0.0], np.quantile(evidence[:, j], np.linspace(0, 1, n_candidates))]) for j in range(2)]
    best, best_t = -1.0, np.zeros(2)
    for tc in grid[0]:
        crackle = evidence[:, 0] > tc
        for tw in grid[1]:
            wheeze = evidence[:, 1] > tw
            value = icbhi_score_from_indices(y, crackle.astype(int) + 2 * wheeze.astype(int))
            if value > best + 1e-12 or (abs(value - best) <= 1e-12 and abs(tc) + abs(tw) < np.abs(best_t).sum()):
                best, best_t = value, np.array([tc, tw])
    return best_t, best


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

    def objective(candidate: np.ndarray) -> float:
        return icbhi_score_from_indices(y, np.argmax(scores + candidate, axis=1))

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
