"""The ``stacked`` rule: a logistic regression on statistics of the HMM likelihoods.

A class-balanced multinomial logistic regression on
:func:`likelihood_statistics`, then tuned offsets.
"""

from __future__ import annotations

import numpy as np

from ...task.classes import CLASSES
from ...utils.files import checked_array
from .base import ClipLikelihoods, DecisionRule, rounded
from .offsets import search_offsets

N_STACK_FEATURES = 10
SCALE_FLOOR = 1e-6


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
        self.report.update({"offsets": rounded(self.offsets), "inner_score": round(float(score), 6)})
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
