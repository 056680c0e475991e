"""Evaluation: the ICBHI 2017 metric, patient-grouped folds, cross-validation and baselines.

ICBHI 2017 definitions, over the four label states:

- Specificity (Sp): recall of ``normal``.
- Sensitivity (Se): abnormal clips (crackle, wheeze, both pooled) whose
  predicted state is exactly their true state, over all abnormal clips
  (``both`` predicted as ``crackle`` is a miss).
- Score: (Se + Sp) / 2. Always answering ``normal`` scores 0.5, so Se and Sp
  are always reported beside it.
"""

from __future__ import annotations

import inspect
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from .cache import FeatureSet
from .labels import LABEL_STATES

ABNORMAL_STATES = ("crackle", "wheeze", "both")


def icbhi_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """ICBHI Score, Se, Sp, accuracy, per-class precision/recall/F1 and the confusion matrix.

    The confusion matrix has rows = true state, columns = predicted state, in
    the order of :data:`hmmclf.labels.LABEL_STATES`. A rate with no clip to
    count (e.g. Se on a set without abnormal clips) is NaN.
    """
    y_true = np.asarray(y_true, dtype=str)
    y_pred = np.asarray(y_pred, dtype=str)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.shape} entries, y_pred {y_pred.shape}")
    index = {state: i for i, state in enumerate(LABEL_STATES)}
    for name, arr in (("y_true", y_true), ("y_pred", y_pred)):
        unknown = set(arr.tolist()) - set(index)
        if unknown:
            raise ValueError(f"{name} holds unknown states {sorted(unknown)}")
    n = len(LABEL_STATES)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, ([index[s] for s in y_true], [index[s] for s in y_pred]), 1)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    hits = np.diag(confusion)

    def ratio(a: float, b: float) -> float:
        return float(a / b) if b else float("nan")

    per_class = {}
    for i, state in enumerate(LABEL_STATES):
        precision, recall = ratio(hits[i], predicted[i]), ratio(hits[i], support[i])
        if np.isnan(precision) or np.isnan(recall) or precision + recall == 0:
            f1 = 0.0 if support[i] or predicted[i] else float("nan")
        else:
            f1 = 2 * precision * recall / (precision + recall)
        per_class[state] = {"precision": precision, "recall": recall, "f1": f1, "support": int(support[i])}
    abnormal = [index[s] for s in ABNORMAL_STATES]
    specificity = ratio(hits[0], support[0])
    sensitivity = ratio(hits[abnormal].sum(), support[abnormal].sum())
    return {
        "score": float(np.nanmean([sensitivity, specificity])) if not (np.isnan(sensitivity) and np.isnan(specificity)) else float("nan"),
        "sensitivity": sensitivity,
        "specificity": specificity,
        "accuracy": ratio(hits.sum(), confusion.sum()),
        "n": int(confusion.sum()),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }


def icbhi_score_from_indices(true_index: np.ndarray, predicted_index: np.ndarray) -> float:
    """The ICBHI Score of :func:`icbhi_metrics` for state indices (0 = normal), without the rest.

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


def make_folds(
    states: np.ndarray, groups: np.ndarray | None, n_folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds, grouped when ``groups`` is given; verified disjoint.

    Raises
    ------
    ValueError
        When there are fewer groups (or clips of a state) than folds.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    states = np.asarray(states, dtype=str)
    if n_folds < 2:
        raise ValueError(f"need at least 2 folds, got {n_folds}")
    if groups is not None:
        n_groups = len(set(np.asarray(groups).tolist()))
        if n_groups < n_folds:
            raise ValueError(f"only {n_groups} groups: cannot make {n_folds} grouped folds")
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        split = splitter.split(np.zeros(len(states)), states, groups)
    else:
        smallest = min(int(np.sum(states == s)) for s in set(states.tolist()))
        if smallest < n_folds:
            raise ValueError(f"a label state has only {smallest} clips: cannot make {n_folds} stratified folds")
        split = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(np.zeros(len(states)), states)
    with warnings.catch_warnings():
        # sklearn warns when a state has fewer groups than folds; the report shows per-fold support instead.
        warnings.simplefilter("ignore", UserWarning)
        folds = [(np.sort(train), np.sort(test)) for train, test in split]
    if groups is not None:
        groups = np.asarray(groups)
        for k, (train, test) in enumerate(folds):
            shared = set(groups[train].tolist()) & set(groups[test].tolist())
            if shared:  # pragma: no cover - would be a scikit-learn bug
                raise RuntimeError(f"fold {k}: groups {sorted(shared)[:5]} are on both sides of the split")
    return folds


def clip_statistics(sequences: list[np.ndarray]) -> np.ndarray:
    """Per-clip mean and standard deviation of every frame feature (the GBM baseline's input)."""
    return np.stack([np.concatenate([s.mean(axis=0), s.std(axis=0)]) for s in sequences])


def baseline_predictions(
    train_seqs: list[np.ndarray], train_y: np.ndarray, test_seqs: list[np.ndarray], seed: int
) -> dict[str, np.ndarray]:
    """Predictions of the reference baselines for one fold.

    ``always_normal``; ``prior_random`` (states drawn with the training
    frequencies); ``gbm_clip_stats`` (histogram gradient boosting on per-clip
    feature means and standard deviations, classes balanced by resampling each
    state to the size of the largest with a seeded draw; up to 60 rounds of
    15-leaf trees at learning rate 0.25 on 64 histogram bins, early stopping
    on a 10 % validation split of the training part). Resampling rather than
    ``class_weight``: scikit-learn's weighted path made this baseline cost
    more than the HMMs themselves. On the ICBHI dev set (5 folds, seed 0),
    scikit-learn's defaults (200 rounds at rate 0.1, 255 bins) took 3.5 times
    as long for the same Score (49.9 against 50.3 with these settings).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(seed)
    freqs = np.array([np.mean(train_y == s) for s in LABEL_STATES])
    largest = max(int(np.sum(train_y == s)) for s in LABEL_STATES)
    balanced = np.concatenate(
        [rng.choice(np.flatnonzero(train_y == s), largest, replace=True) for s in LABEL_STATES if np.any(train_y == s)]
    )
    # A validation split for early stopping needs a few clips of every state.
    gbm = HistGradientBoostingClassifier(
        random_state=seed,
        max_iter=60,
        learning_rate=0.25,
        max_leaf_nodes=15,
        max_bins=64,
        early_stopping=len(balanced) >= 400,
    )
    stats = clip_statistics(train_seqs)
    gbm.fit(stats[balanced], train_y[balanced])
    return {
        "always_normal": np.full(len(test_seqs), "normal"),
        "prior_random": rng.choice(np.array(LABEL_STATES), size=len(test_seqs), p=freqs),
        "gbm_clip_stats": np.asarray(gbm.predict(clip_statistics(test_seqs)), dtype=str),
    }


def _run_fold_task(task: tuple) -> dict[str, Any]:
    """Worker: one fold's model (fit on its training part, predict its test part) or its baselines."""
    kind, estimator, train_seqs, train_y, train_groups, test_seqs, seed, parallel = task
    if parallel:
        # Tasks already run one per core: BLAS or OpenMP threads inside each would oversubscribe them.
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return _run_fold_task(task[:-1] + (False,))
    if kind == "baselines":
        return {"baselines": baseline_predictions(train_seqs, train_y, test_seqs, seed)}
    from sklearn.base import clone

    from .model import softmax

    started = time.perf_counter()
    model = clone(estimator)
    if train_groups is not None and "groups" in inspect.signature(model.fit).parameters:
        # Inner tuning folds must be grouped like the outer ones.
        model.fit(train_seqs, train_y, groups=train_groups)
    else:
        model.fit(train_seqs, train_y)
    fit_seconds = time.perf_counter() - started
    log_likelihood = model.log_likelihood(test_seqs)
    scores = model.decision_scores(test_seqs, log_likelihood=log_likelihood)
    return {
        "predicted": model.classes_[np.argmax(scores, axis=1)],
        "posterior": softmax(scores),
        "log_likelihood": log_likelihood,
        "fit_seconds": fit_seconds,
        "seconds": time.perf_counter() - started,
        "fit_report": getattr(model, "fit_report_", {}),
    }


@dataclass
class CVResult:
    """Everything a cross-validation run measured."""

    metrics: dict[str, Any]
    folds: list[dict[str, Any]]
    predictions: pd.DataFrame
    baselines: dict[str, dict[str, Any]]
    grouped: bool
    group_column: str | None
    config: dict[str, Any]
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def fold_summary(self, key: str) -> tuple[float, float]:
        """Mean and standard deviation over folds of one metric."""
        values = np.array([f["metrics"][key] for f in self.folds], dtype=float)
        return float(np.nanmean(values)), float(np.nanstd(values))


def cross_validate(
    features: FeatureSet,
    estimator: Any,
    n_folds: int = 5,
    seed: int = 0,
    n_jobs: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    baselines: bool = True,
) -> CVResult:
    """Stratified, patient-grouped K-fold cross-validation of ``estimator`` on ``features``.

    Each fold fits ``sklearn.base.clone(estimator)`` on its training part only
    (feature standardisation included), so nothing of a test fold leaks into
    its model. Folds are grouped by ``features.groups`` when present.

    Returns
    -------
    CVResult
        Pooled out-of-fold metrics, per-fold metrics, every clip's prediction
        and the baselines' metrics on the same folds.
    """
    from .parallel import parallel_map, resolve_jobs

    started = time.perf_counter()
    notes = []
    groups = features.groups
    if groups is None:
        notes.append(
            "NO GROUP COLUMN: folds are not grouped by patient, so clips of one patient may sit "
            "in both train and test and the scores are optimistic"
        )
    folds = make_folds(features.states, groups, n_folds, seed)
    parallel = resolve_jobs(n_jobs) > 1
    # The folds' models first, then their baselines: the cheaper baseline
    # tasks fill the cores that the last models leave idle.
    kinds = ["model"] + (["baselines"] if baselines else [])
    tasks = []
    for kind in kinds:
        for k, (train, test) in enumerate(folds):
            tasks.append(
                (
                    kind,
                    estimator,
                    [features.sequences[i] for i in train],
                    features.states[train],
                    groups[train] if groups is not None else None,
                    [features.sequences[i] for i in test],
                    seed * 1000 + k,
                    parallel,
                )
            )
    finished = 0

    def on_task(index: int, result: dict) -> None:
        nonlocal finished
        finished += 1
        if progress:
            progress("cv tasks", finished, len(tasks))

    if progress:
        progress("cv tasks", 0, len(tasks))
    outputs = parallel_map(_run_fold_task, tasks, n_jobs=min(len(tasks), resolve_jobs(n_jobs)), on_result=on_task)
    results = outputs[: len(folds)]
    baseline_results = outputs[len(folds) :] if baselines else [{"baselines": {}} for _ in folds]
    for result, extra in zip(results, baseline_results):
        result["baselines"] = extra["baselines"]

    n = len(features)
    predicted = np.empty(n, dtype=object)
    fold_of = np.empty(n, dtype=np.int64)
    posterior = np.zeros((n, len(LABEL_STATES)))
    log_likelihood = np.zeros((n, len(LABEL_STATES)))
    baseline_pred: dict[str, np.ndarray] = {}
    fold_records = []
    for k, ((train, test), result) in enumerate(zip(folds, results)):
        predicted[test] = result["predicted"]
        fold_of[test] = k
        posterior[test] = result["posterior"]
        log_likelihood[test] = result["log_likelihood"]
        for name, pred in result["baselines"].items():
            baseline_pred.setdefault(name, np.empty(n, dtype=object))[test] = pred
        fold_records.append(
            {
                "fold": k,
                "train_size": int(len(train)),
                "test_size": int(len(test)),
                "test_groups": sorted(set(groups[test].tolist())) if groups is not None else [],
                "metrics": icbhi_metrics(features.states[test], result["predicted"]),
                "baselines": {
                    name: icbhi_metrics(features.states[test], pred) for name, pred in result["baselines"].items()
                },
                "fit_seconds": round(result["fit_seconds"], 3),
                "fit_report": result["fit_report"],
            }
        )
    predicted = predicted.astype(str)
    table = pd.DataFrame(
        {
            "file": features.files,
            "group": groups if groups is not None else "",
            "fold": fold_of,
            "true": features.states,
            "predicted": predicted,
        }
    )
    for i, state in enumerate(LABEL_STATES):
        table[f"posterior_{state}"] = np.round(posterior[:, i], 6)
    for i, state in enumerate(LABEL_STATES):
        table[f"log_likelihood_{state}"] = np.round(log_likelihood[:, i], 4)
    params = estimator.get_params() if hasattr(estimator, "get_params") else {}
    config = {
        "folds": n_folds,
        "seed": seed,
        "grouped": groups is not None,
        "group_column": features.group_column,
        "n_clips": n,
        "counts": features.counts(),
        "feature_config": features.config.to_dict(),
        "model": type(estimator).__name__,
        "model_params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()},
    }
    return CVResult(
        metrics=icbhi_metrics(features.states, predicted),
        folds=fold_records,
        predictions=table,
        baselines={name: icbhi_metrics(features.states, pred.astype(str)) for name, pred in baseline_pred.items()},
        grouped=groups is not None,
        group_column=features.group_column,
        config=config,
        seconds=time.perf_counter() - started,
        warnings=notes,
    )


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
