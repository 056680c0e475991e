"""``auto`` (the default rule of hmmclf 0.5-0.7): chooses between two rules on the inner folds.

``auto`` chooses between ``peak-detectors`` and ``tuned-length`` on the
inner folds: each is tuned on one inner fold's held-out clips and scored on
the other's (cross-fitted, so the rule with more freedom does not win by
fitting noise); a later candidate must beat the one chosen so far by
``select_margin``. The choice and every inner Score go to its report; the
chosen rule, tuned on all held-out clips, gives the scores.

``boosted`` (the default since hmmclf 0.8) is not a candidate: offered as a
third one in hmmclf 0.5, it never won the cross-fitted inner comparison on
the design half of either shared database.
"""

from __future__ import annotations

import numpy as np

from ...task.metrics import icbhi_score_from_indices
from ...utils.files import checked_array
from .base import DecisionRule, StatisticRule
from .detectors import PeakDetectorsRule
from .offsets import TunedLengthRule

AUTO_CANDIDATES: tuple[type[StatisticRule], ...] = (PeakDetectorsRule, TunedLengthRule)
"""The rules "auto" chooses among, simplest first; a later one must beat the one chosen so far by
``select_margin``."""


class AutoRule(DecisionRule):
    """Chooses "peak-detectors" or "tuned-length" on the inner folds, then decides as the chosen one.

    Parameters
    ----------
    peak_frames : int
        Passed to "peak-detectors".
    select_margin : float
        ICBHI Score (0.03 = 3 points) by which a later candidate must beat
        the one chosen so far on the cross-fitted inner folds to be chosen.
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

    @property
    def needs_clip_statistics(self) -> bool:  # type: ignore[override]
        """Before fitting, what any candidate needs; after, what the chosen rule needs."""
        if self.chosen is None:
            return any(rule.needs_clip_statistics for rule in AUTO_CANDIDATES)
        return self.chosen.needs_clip_statistics

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
