"""Choices made on inner folds of the training clips: the feature columns and the decision rule.

:meth:`HMMClassifier.fit <hmmclf.model.classifier.HMMClassifier.fit>` splits
its training clips into grouped inner folds; HMMs fitted on each inner
training part score the held-out part, and those held-out scores are all a
choice ever sees (the outer test fold never reaches them). ``model`` is the
:class:`~hmmclf.model.classifier.HMMClassifier` being fitted.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from sklearn.base import BaseEstimator, clone

from ..task.metrics import class_indices
from .config import ModelConfig
from .decision import make_decision_rule
from .decision.base import ClipLikelihoods, DecisionRule
from .label_hmm import RawHMM, raw_parameters


class ColumnChoice(NamedTuple):
    """What :func:`choose_columns` decided."""

    columns: np.ndarray
    """The columns the HMMs are fitted on."""
    view: np.ndarray | None
    """The positions among ``columns`` they are scored on (None: all)."""
    rule: DecisionRule | None
    """The decision rule already tuned for that choice (None if not yet)."""
    report: dict[str, Any]
    inner_models: list[BaseEstimator]
    """The inner folds' fitted models (on ``columns``), when the choice fitted them."""


class InnerRule(NamedTuple):
    """What :func:`fit_rule_on_inner_folds` made."""

    rule: DecisionRule
    inner_models: list[BaseEstimator]
    """The inner folds' fitted models (none without inner folds)."""


def choose_columns(
    model: BaseEstimator,
    candidates: list[tuple[str, np.ndarray]],
    sequences: list[np.ndarray],
    y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]] | None,
    grouped: bool,
    config: ModelConfig,
) -> ColumnChoice:
    """The columns the HMMs are fitted on and scored on, the rule tuned for them, and a report.

    With several candidates (each a subset of the widest), the inner-fold
    HMMs are fitted once, on the widest set, and every candidate is scored
    through their exact marginal over its columns (a diagonal Gaussian
    factorises, so leaving out a column's mean and variance is its
    marginal); a decision rule is tuned on each candidate's held-out
    scores, exactly as the final rule is, and the candidate whose rule
    scores best there wins (a later one by ``feature_margin``); its rule is
    kept, not tuned again. The final HMMs are then likewise fitted on the
    widest set and scored on the winner's columns.
    """
    if len(candidates) == 1 or folds is None:
        name, columns = candidates[0]
        note = {"chosen": name, "columns": len(columns), "note": "no inner folds: the simplest set"}
        return ColumnChoice(columns, None, None, note if len(candidates) > 1 else {}, [])
    widest = candidates[-1][1]
    if not all(np.isin(columns, widest).all() for _, columns in candidates):
        raise ValueError("every feature set must be a subset of the widest ('all')")
    views = [np.searchsorted(widest, columns) for _, columns in candidates]
    rules = [make_decision_rule(config.decision, **config.rule_options()) for _ in candidates]
    held_outs, inner_models = inner_held_out(model, cut_to(sequences, widest), y, folds, views, rules[0])
    truth = class_indices(y)
    scores = []
    for rule, held_out in zip(rules, held_outs):
        _fit_rule(model, rule, held_out, truth, folds, grouped)
        # Scored on the held-out clips it was tuned on: both candidates give the rule the same
        # freedom. (Cross-fitted Scores, tuned on one inner fold and scored on the other, halve
        # the clips behind each number; on the design half of SPRSound they chose worse.)
        scores.append(rule.inner_score(held_out, truth))
    pick = 0
    for k in range(1, len(candidates)):
        if scores[k] >= scores[pick] + model.feature_margin:
            pick = k
    report = {
        "chosen": candidates[pick][0],
        "columns": len(candidates[pick][1]),
        "inner_scores": {name: round(float(v), 6) for (name, _), v in zip(candidates, scores)},
        "feature_margin": model.feature_margin,
    }
    view = None if len(views[pick]) == len(widest) else views[pick]
    return ColumnChoice(widest, view, rules[pick], report, inner_models)


def inner_held_out(
    model: BaseEstimator,
    sequences: list[np.ndarray],
    y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    views: list[np.ndarray],
    rule: DecisionRule,
) -> tuple[list[ClipLikelihoods], list[BaseEstimator]]:
    """Held-out scores of the training clips, one set per view (positions of the columns scored),
    and the models that made them: HMMs fitted on each inner training part score its held-out part."""
    parts: list[list[tuple[np.ndarray, ClipLikelihoods]]] = [[] for _ in views]
    models = []
    for train, test in folds:
        inner = clone(model).set_params(decision="argmax", features="all", feature_sets=None, n_jobs=1)
        inner.fit([sequences[i] for i in train], y[train])
        models.append(inner)
        held_out_clips = [sequences[i] for i in test]
        for k, view in enumerate(views):
            scorer = inner if len(view) == inner.n_features_in_ else inner._marginal(view)
            held_out = scorer._likelihoods(held_out_clips, rule.needs_frame_increments, rule.needs_clip_statistics)
            parts[k].append((test, held_out))
    return [ClipLikelihoods.gather(p, len(y)) for p in parts], models


def fit_rule_on_inner_folds(
    model: BaseEstimator,
    rule: DecisionRule,
    sequences: list[np.ndarray],
    y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]] | None,
    grouped: bool,
) -> InnerRule:
    """``rule`` fitted on inner-fold held-out scores of the training data only (HMMs
    fitted on each inner training part score its held-out part), and those inner models."""
    if folds is None:
        return InnerRule(rule, [])
    everything = np.arange(sequences[0].shape[1])
    (held_out,), inner_models = inner_held_out(model, sequences, y, folds, [everything], rule)
    return InnerRule(_fit_rule(model, rule, held_out, class_indices(y), folds, grouped), inner_models)


def _fit_rule(
    model: BaseEstimator,
    rule: DecisionRule,
    held_out: ClipLikelihoods,
    truth: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    grouped: bool,
) -> DecisionRule:
    """``rule`` tuned on held-out scores, its report saying how the inner folds were made."""
    rule.fit(held_out, truth, folds)
    rule.report.update({"inner_folds": model.inner_folds, "grouped": grouped})
    return rule


def warm_start(inner_models: list[BaseEstimator], class_index: int) -> RawHMM | None:
    """Where the final fit of class ``class_index``'s HMM starts: the HMM of that class of the inner
    model that was fitted on most of its frames (None: no inner model has one; k-means then).

    The inner folds' HMMs are fitted anyway, to score the held-out clips the rule is tuned on; the
    final HMM, fitted on all the training clips, starts from one of them and needs a few EM
    iterations instead of k-means and a full run.
    """
    best, frames = None, 0
    for inner in inner_models:
        hmm = inner.hmms_[class_index]
        seen = inner.fit_report_[inner.classes_[class_index]]["frames"]
        if hmm is not None and seen > frames:
            best, frames = inner, seen
    if best is None:
        return None
    return raw_parameters(best.hmms_[class_index], best.feature_mean_, best.feature_scale_)


def cut_to(sequences: list[np.ndarray], columns: np.ndarray) -> list[np.ndarray]:
    """The clips with only ``columns`` (the clips themselves when those are all their columns)."""
    if len(columns) == sequences[0].shape[1]:
        return sequences
    return [np.ascontiguousarray(s[:, columns]) for s in sequences]
