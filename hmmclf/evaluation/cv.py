"""Cross-validation: grouped folds, a fresh model per fold, and the baselines on the same folds."""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..data.feature_store import FeatureSet
from ..task.classes import CLASSES
from ..task.metrics import icbhi_metrics
from ..task.splits import make_folds


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
    more than the HMMs themselves; and scikit-learn's defaults (200 rounds at
    rate 0.1, 255 bins) cost several times as long for no better Score.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(seed)
    freqs = np.array([np.mean(train_y == s) for s in CLASSES])
    largest = max(int(np.sum(train_y == s)) for s in CLASSES)
    balanced = np.concatenate(
        [rng.choice(np.flatnonzero(train_y == s), largest, replace=True) for s in CLASSES if np.any(train_y == s)]
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
        "prior_random": rng.choice(np.array(CLASSES), size=len(test_seqs), p=freqs),
        "gbm_clip_stats": np.asarray(gbm.predict(clip_statistics(test_seqs)), dtype=str),
    }


@dataclass
class FoldTask:
    """One unit of cross-validation work: a fold's model, or the fold's baselines."""

    kind: str  # "model" or "baselines"
    estimator: Any
    train_sequences: list[np.ndarray]
    train_classes: np.ndarray
    train_groups: np.ndarray | None
    test_sequences: list[np.ndarray]
    seed: int
    single_thread: bool


def run_fold_task(task: FoldTask) -> dict[str, Any]:
    """Worker: one fold's model (fit on its training part, score its test part) or its baselines."""
    if task.single_thread:
        # Tasks already run one per core: BLAS or OpenMP threads inside each would oversubscribe them.
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return _run_fold_task(task)
    return _run_fold_task(task)


def _run_fold_task(task: FoldTask) -> dict[str, Any]:
    if task.kind == "baselines":
        return {
            "baselines": baseline_predictions(task.train_sequences, task.train_classes, task.test_sequences, task.seed)
        }
    from sklearn.base import clone

    started = time.perf_counter()
    model = clone(task.estimator)
    if task.train_groups is not None and "groups" in inspect.signature(model.fit).parameters:
        # Inner tuning folds must be grouped like the outer ones.
        model.fit(task.train_sequences, task.train_classes, groups=task.train_groups)
    else:
        model.fit(task.train_sequences, task.train_classes)
    fit_seconds = time.perf_counter() - started
    scored = model.score_clips(task.test_sequences)
    return {
        "predicted": scored.predicted,
        "posterior": scored.posterior,
        "log_likelihood": scored.log_likelihood,
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
    groups: dict[str, Any] = field(default_factory=dict)
    leakage: dict[str, Any] | None = None

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
    leakage: bool = True,
) -> CVResult:
    """Stratified, patient-grouped K-fold cross-validation of ``estimator`` on ``features``.

    Each fold fits ``sklearn.base.clone(estimator)`` on its training part only
    (feature standardisation included), so nothing of a test fold leaks into
    its model. Folds are grouped by ``features.groups`` when present.

    Returns
    -------
    CVResult
        Pooled out-of-fold metrics, per-fold metrics, every clip's prediction,
        the baselines' metrics on the same folds and (with ``leakage``) the
        :func:`leakage_audit`.
    """
    from ..utils.parallel import parallel_map, resolve_jobs

    started = time.perf_counter()
    notes = []
    groups = features.groups
    if groups is None:
        notes.append(
            "FOLDS NOT GROUPED: clips of one recording or patient may sit in both train and test, "
            "so the scores are optimistic"
        )
    elif features.group_source == "inferred":
        notes.append(
            f"groups inferred from the audio ({features.n_groups} groups): the labels file names no patient; "
            "give a patient column or --groups regex:PATTERN when the patients are known"
        )
    folds = make_folds(features.classes, groups, n_folds, seed)
    parallel = resolve_jobs(n_jobs) > 1
    # The folds' models first, then their baselines: the cheaper baseline
    # tasks fill the cores that the last models leave idle.
    kinds = ["model"] + (["baselines"] if baselines else [])
    tasks = []
    for kind in kinds:
        for k, (train, test) in enumerate(folds):
            tasks.append(
                FoldTask(
                    kind,
                    estimator,
                    [features.sequences[i] for i in train],
                    features.classes[train],
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
    outputs = parallel_map(run_fold_task, tasks, n_jobs=min(len(tasks), resolve_jobs(n_jobs)), on_result=on_task)
    results = outputs[: len(folds)]
    baseline_results = outputs[len(folds) :] if baselines else [{"baselines": {}} for _ in folds]
    for result, extra in zip(results, baseline_results):
        result["baselines"] = extra["baselines"]

    n = len(features)
    predicted = np.empty(n, dtype=object)
    fold_of = np.empty(n, dtype=np.int64)
    posterior = np.zeros((n, len(CLASSES)))
    log_likelihood = np.zeros((n, len(CLASSES)))
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
                "metrics": icbhi_metrics(features.classes[test], result["predicted"]),
                "baselines": {
                    name: icbhi_metrics(features.classes[test], pred) for name, pred in result["baselines"].items()
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
            "group_source": features.group_source,
            "fold": fold_of,
            "true": features.classes,
            "predicted": predicted,
        }
    )
    for i, name in enumerate(CLASSES):
        table[f"posterior_{name}"] = np.round(posterior[:, i], 6)
    for i, name in enumerate(CLASSES):
        table[f"log_likelihood_{name}"] = np.round(log_likelihood[:, i], 4)
    params = estimator.get_params() if hasattr(estimator, "get_params") else {}
    config = {
        "folds": n_folds,
        "seed": seed,
        "grouped": groups is not None,
        "group_column": features.group_column,
        "group_source": features.group_source,
        "n_clips": n,
        "counts": features.counts(),
        "feature_config": features.config.to_dict(),
        "model": type(estimator).__name__,
        "model_params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()},
    }
    group_info = {
        "source": features.group_source,
        "note": features.group_note,
        "column": features.group_column,
        "n_groups": features.n_groups,
    }
    audit = leakage_audit(features, folds, seed) if leakage else None
    if audit and audit["warning"]:
        notes.append(audit["warning"])
    return CVResult(
        metrics=icbhi_metrics(features.classes, predicted),
        folds=fold_records,
        predictions=table,
        baselines={name: icbhi_metrics(features.classes, pred.astype(str)) for name, pred in baseline_pred.items()},
        grouped=groups is not None,
        group_column=features.group_column,
        config=config,
        seconds=time.perf_counter() - started,
        warnings=notes,
        groups=group_info,
        leakage=audit,
    )


LEAKAGE_PROBE = "1-nearest-neighbour on per-clip MFCC mean/std and recording signature"
# A grouping that moves a memorising probe by less than this (Score points)
# while plain folds let it score this far above 50 has probably not separated recordings.
LEAKAGE_SMALL_GAP, LEAKAGE_MEMORISER_ADVANTAGE = 3.0, 10.0


def nearest_neighbour_score(
    statistics: np.ndarray, classes: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]
) -> float:
    """Pooled out-of-fold ICBHI Score of a 1-nearest-neighbour classifier (a pure memoriser).

    Features are standardised with each fold's training statistics. A clip
    whose near copy (a cycle of the same recording) sits in the training part
    is recognised; a clip without one is not: the probe's Score measures how
    much the folds let a model remember instead of generalise.
    """
    from sklearn.neighbors import KNeighborsClassifier

    predicted = np.empty(len(classes), dtype=object)
    for train, test in folds:
        mean = statistics[train].mean(axis=0)
        scale = np.maximum(statistics[train].std(axis=0), 1e-9)
        probe = KNeighborsClassifier(n_neighbors=1).fit((statistics[train] - mean) / scale, classes[train])
        predicted[test] = probe.predict((statistics[test] - mean) / scale)
    return float(icbhi_metrics(classes, predicted.astype(str))["score"])


def leakage_audit(features: FeatureSet, folds: list[tuple[np.ndarray, np.ndarray]], seed: int) -> dict[str, Any]:
    """How much the folds used let a memorising model gain, against plain stratified folds.

    The probe (:func:`nearest_neighbour_score` on per-clip feature means and
    standard deviations plus the recording signature of :mod:`hmmclf.data.groups`)
    is scored under ``folds`` and
    under plain stratified folds of the same size and seed. ``gap`` (plain
    minus used, in Score points) is the optimism that plain folds would carry
    on these data and that the folds used remove.

    Returns
    -------
    dict
        ``probe``, ``score_folds_used``, ``score_plain_folds``, ``gap`` (Score
        points), ``grouped`` and ``warning`` (a sentence, or None).
    """
    statistics = clip_statistics(features.sequences)
    if features.signatures is not None:
        # The channel signature is what cycles of one recording share most
        # (cepstral mean normalisation removes it from the features).
        statistics = np.hstack([statistics, features.signatures])
    used = 100 * nearest_neighbour_score(statistics, features.classes, folds)
    plain_folds = make_folds(features.classes, None, len(folds), seed) if features.groups is not None else folds
    plain = 100 * nearest_neighbour_score(statistics, features.classes, plain_folds)
    gap = plain - used
    warning = None
    if features.groups is None:
        warning = (
            f"LEAKAGE: folds are not grouped; a memorising 1-nearest-neighbour probe scores {plain:.1f} on them. "
            "Cycles of one recording are near copies: give a patient column, --groups regex:PATTERN, "
            "or --groups infer"
        )
    elif gap < LEAKAGE_SMALL_GAP and plain - 50 > LEAKAGE_MEMORISER_ADVANTAGE:
        warning = (
            f"LEAKAGE: the groups barely hold back a memorising 1-nearest-neighbour probe ({used:.1f} under these "
            f"folds, {plain:.1f} under plain folds): clips of one recording may still sit on both sides of a split"
        )
    return {
        "probe": LEAKAGE_PROBE,
        "score_folds_used": round(used, 2),
        "score_plain_folds": round(plain, 2),
        "gap": round(gap, 2),
        "grouped": features.groups is not None,
        "warning": warning,
    }
