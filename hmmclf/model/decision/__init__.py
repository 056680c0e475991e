"""Decision rules: from the per-class HMM log-likelihoods of a clip to its label class.

One module per family of rules, all with the face of
:class:`~hmmclf.model.decision.base.DecisionRule`:

==================  ==========================================================
module              rules
==================  ==========================================================
``base``            the shared face; ``argmax``
``offsets``         ``tuned`` offsets; ``tuned-length`` (offsets + clip length)
``stacked``         ``stacked`` (logistic regression on likelihood statistics)
``detectors``       ``detectors``; ``peak-detectors`` (best second of the clip)
``boosted``         ``boosted`` (the default: boosted trees on HMM scores and clip statistics)
``auto``            ``auto`` (the default of hmmclf 0.5-0.7): picks a rule on inner folds
==================  ==========================================================

A new rule is one class with that face in one of these modules (or a new
one), added to :data:`DECISION_RULES` below.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .auto import AutoRule
from .base import ArgmaxRule, ClipLikelihoods, DecisionRule
from .boosted import BoostedRule
from .detectors import DetectorsRule, PeakDetectorsRule
from .offsets import TunedLengthRule, TunedOffsetsRule
from .stacked import StackedRule

__all__ = ["ClipLikelihoods", "DecisionRule", "DECISION_RULES", "make_decision_rule", "rule_from_arrays"]

DECISION_RULES: dict[str, type[DecisionRule]] = {
    rule.name: rule
    for rule in (
        AutoRule,
        TunedOffsetsRule,
        ArgmaxRule,
        StackedRule,
        DetectorsRule,
        PeakDetectorsRule,
        TunedLengthRule,
        BoostedRule,
    )
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
