"""The face every decision rule shares, and the plain argmax rule.

The classifier scores a clip under each label class's HMM; a decision rule
turns those numbers (:class:`ClipLikelihoods`) into one score per class, and
the clip gets the class of the highest score. Every rule is a small class with
the face of :class:`DecisionRule`:

``fit(held_out, y, folds)``
    learn the rule's parameters from clips that the HMMs did not see
    (held-out parts of inner folds of the training data);
``scores(clips)``
    (n_clips, 4) decision scores, columns in :data:`~hmmclf.task.classes.CLASSES` order;
``to_arrays()`` / ``from_arrays(arrays)``
    the parameters as float64 arrays for a pickle-free model file;
``report``
    a JSON-able summary of what was learnt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from ...task.classes import CLASSES


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
    clip_statistics : (n_clips, 4 * n_features) array or None
        Mean, standard deviation, minimum and maximum of each modelled frame
        feature over the clip, when the rule asked for them.
    """

    log_likelihood: np.ndarray
    n_frames: np.ndarray
    base_scores: np.ndarray
    frame_increments: np.ndarray | None = None
    clip_statistics: np.ndarray | None = None

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
        statistics = None
        if parts and all(part.clip_statistics is not None for _, part in parts):
            statistics = np.full((n_clips, parts[0][1].clip_statistics.shape[1]), np.nan)
            for index, part in parts:
                statistics[index] = part.clip_statistics
        return cls(log_likelihood, n_frames, base, increments, statistics)


class DecisionRule:
    """Base class: a rule's name, what it needs, and its (empty) parameters."""

    name: ClassVar[str] = ""
    tuned_on_inner_folds: ClassVar[bool] = True
    needs_frame_increments: ClassVar[bool] = False
    needs_clip_statistics: ClassVar[bool] = False
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

    def inner_score(self, held_out: ClipLikelihoods, y: np.ndarray) -> float:
        """ICBHI Score of the fitted rule on the held-out clips it was fitted on (``y``: class indices):
        what the classifier compares feature sets by."""
        from ...task.metrics import icbhi_score_from_indices

        return icbhi_score_from_indices(y, np.argmax(self.scores(held_out), axis=1))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Parameters as float64 arrays (names without the model file's ``decision.`` prefix)."""
        return {}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], **options: Any) -> DecisionRule:
        """The rule with parameters read (and validated) from :meth:`to_arrays`' output.

        ``options`` are the classifier's settings; a rule takes those named in :attr:`options`.
        """
        return cls()


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


def rounded(values: np.ndarray) -> list[float]:
    """Values as a JSON-able list, rounded to 6 decimals (for rule reports)."""
    return [round(float(v), 6) for v in values]
