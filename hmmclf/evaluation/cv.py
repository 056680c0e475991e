"""Cross-validation: grouped folds, a fresh model per fold, and the baselines on the same folds."""

from __future__ import annotations

import inspect
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..data.feature_store import FeatureSet
from ..data.features import clip_statistics
from ..data.grouping import Grouping
from ..task.classes import CLASSES
from ..task.metrics import icbhi_metrics
from ..task.splits import make_folds
from .baselines import baseline_predictions
from .dead_zone import dead_zone
from .leakage import leakage_audit
from .mistakes import confidence, select_clips


@dataclass
class FoldTask:
    """One unit of cross-validation work: a fold's model, the fold's baselines, or the leakage audit."""

    kind: str  # "model", "baselines" or "audit"
    estimator: Any
    train_sequences: list[np.ndarray]
    train_classes: np.ndarray
    train_groups: np.ndarray | None
    test_sequences: list[np.ndarray]
    seed: int
    single_thread: bool
    test_classes: np.ndarray | None = None
    errors: int = 0  # mistakes per confusion cell whose per-frame evidence the report shows (0: none)
    audit: dict[str, Any] | None = None  # leakage_audit's arguments, for the "audit" task
    # The baselines read per-clip feature statistics only: computed once per run, not per fold, and
    # sent to a worker instead of the frames.
    train_statistics: np.ndarray | None = None
    test_statistics: np.ndarray | None = None


def run_fold_task(task: FoldTask) -> dict[str, Any]:
    """Worker: one fold's model (fit on its training part, score its test part), its baselines, or the audit."""
    if task.single_thread:
        # Tasks already run one per core: BLAS or OpenMP threads inside each would oversubscribe them.
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return _run_fold_task(task)
    return _run_fold_task(task)


def _run_fold_task(task: FoldTask) -> dict[str, Any]:
    if task.kind == "audit":
        return {"audit": leakage_audit(**task.audit)}
    if task.kind == "baselines":
        predictions = baseline_predictions(task.train_statistics, task.train_classes, task.test_statistics, task.seed)
        return {"baselines": predictions}
    from sklearn.base import clone

    started = time.perf_counter()
    model = clone(task.estimator)
    if task.train_groups is not None and "groups" in inspect.signature(model.fit).parameters:
        # Inner tuning folds must be grouped like the outer ones.
        model.fit(task.train_sequences, task.train_classes, groups=task.train_groups)
    else:
        model.fit(task.train_sequences, task.train_classes)
    fit_seconds = time.perf_counter() - started
    want_evidence = task.errors > 0 and task.test_classes is not None
    scored = model.score_clips(task.test_sequences, frame_increments=want_evidence)
    return {
        "predicted": scored.predicted,
        "posterior": scored.posterior,
        "log_likelihood": scored.log_likelihood,
        "fit_seconds": fit_seconds,
        "seconds": time.perf_counter() - started,
        "fit_report": getattr(model, "fit_report_", {}),
        "evidence": _fold_evidence(task, scored) if want_evidence else {},
    }


def _fold_evidence(task: FoldTask, scored: Any) -> dict[int, np.ndarray]:
    """Per-frame evidence of the test clips the report may show: {test position: (n_frames, 3) float32}.

    Column k is the frame's log-likelihood increment under abnormal class k+1's HMM minus normal's.
    Only this fold's candidates are kept (its ``errors`` most confident mistakes per confusion cell and
    correct clips per class): the report's pooled selection, made with the same ranking, is a subset
    of their union, so no model is refitted and the workers send back a few hundred clips at most.
    """
    predicted = scored.predicted
    chosen = select_clips(task.test_classes, predicted, confidence(scored.posterior, predicted), task.errors)
    bounds = scored.likelihoods.bounds
    increments = scored.likelihoods.frame_increments
    out = {}
    for row, _ in chosen:
        frames = increments[bounds[row] : bounds[row + 1]]
        ratio = frames[:, 1:] - frames[:, :1]
        # A class without training clips has no HMM (increments -inf): no evidence either way.
        out[row] = np.where(np.isfinite(ratio), ratio, np.nan).astype(np.float32)
    return out


@dataclass
class FoldResult:
    """One outer fold: its sizes, test groups, metrics, the baselines' metrics and how its model was fitted."""

    fold: int
    train_size: int
    test_size: int
    test_groups: list[str]
    metrics: dict[str, Any]
    baselines: dict[str, dict[str, Any]]
    fit_seconds: float
    fit_report: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CVResult:
    """Everything a cross-validation run measured.

    Attributes
    ----------
    metrics : dict
        Pooled out-of-fold ICBHI metrics (:func:`~hmmclf.task.metrics.icbhi_metrics`).
    folds : list of FoldResult
    predictions : pandas.DataFrame
        One row per clip: file, group, group_source, fold, true and predicted
        class, posterior and log-likelihood per class.
    baselines : dict
        Pooled metrics of each baseline on the same folds.
    grouping : Grouping
        Where the groups came from.
    n_groups : int
    config : dict
        Folds, seed, clip counts, feature and model settings.
    seconds : float
    warnings : list of str
    leakage : dict or None
        The leakage audit (:func:`~hmmclf.evaluation.leakage.leakage_audit`).
    """

    metrics: dict[str, Any]
    folds: list[FoldResult]
    predictions: pd.DataFrame
    baselines: dict[str, dict[str, Any]]
    grouping: Grouping
    n_groups: int
    config: dict[str, Any]
    seconds: float
    warnings: list[str] = field(default_factory=list)
    leakage: dict[str, Any] | None = None
    group_sizes: list[int] = field(default_factory=list)
    evidence: dict[int, np.ndarray] = field(default_factory=dict)
    """Per-frame evidence (log-likelihood ratio of crackle, wheeze and both against normal, float32) of
    the clips the report's Errors section may show, by row of ``predictions``; empty with ``errors=0``."""

    @property
    def grouped(self) -> bool:
        return self.grouping.grouped

    def fold_summary(self, key: str) -> tuple[float, float]:
        """Mean and standard deviation over folds of one metric."""
        values = np.array([f.metrics[key] for f in self.folds], dtype=float)
        if not np.isfinite(values).any():  # e.g. no fold has a Score: nanmean would warn
            return float("nan"), float("nan")
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
    dead_zone: str = "auto",
    errors: int = 0,
) -> CVResult:
    """Stratified, patient-grouped K-fold cross-validation of ``estimator`` on ``features``.

    Each fold fits ``sklearn.base.clone(estimator)`` on its training part only
    (feature standardisation included), so nothing of a test fold leaks into
    its model. Folds are grouped by ``features.groups`` when present.

    ``dead_zone``: ``"on"`` leaves out of each training part the clips that
    sound like the test part's recordings (:mod:`hmmclf.evaluation.dead_zone`),
    ``"off"`` does not, ``"auto"`` (the default) does when the groups were
    inferred from the audio: a patient column needs no dead zone.

    ``errors`` > 0 keeps, from each fold's model, the per-frame evidence of
    the clips the report's Errors section shows (that many mistakes per
    confusion cell; :mod:`hmmclf.evaluation.mistakes`) in ``CVResult.evidence``.

    Returns
    -------
    CVResult
        Pooled out-of-fold metrics, per-fold metrics, every clip's prediction,
        the baselines' metrics on the same folds and (with ``leakage``) the
        leakage audit.
    """
    started = time.perf_counter()
    notes = _grouping_notes(features)
    folds = _make_folds(features, n_folds, seed)
    grouped_folds, zone = folds, _dead_zone(features, folds, dead_zone, seed)
    if zone is not None:
        folds = zone.pop("folds")
        notes.append(
            f"dead zone: each training part leaves out the clips within the channel radius of its test part "
            f"({100 * zone['dropped']:.0f} % of training clips on average)"
        )
    # What the baselines and the audit's "model" view read, once for every fold.
    statistics = clip_statistics(features.sequences) if baselines or leakage else None
    # The audit runs beside the folds' models and baselines, on a core the last of them leave idle.
    audit_arguments = {
        # Without the frames: the audit reads them only through ``model_statistics``, and the task may
        # be sent to a worker process.
        "features": replace(features, sequences=[]),
        "folds": folds,
        "seed": seed,
        "grouped_folds": grouped_folds if zone else None,
        "model_statistics": statistics,
    }
    models, fold_baselines, audit = _run_folds(
        features,
        estimator,
        folds,
        seed,
        n_jobs,
        progress,
        statistics if baselines else None,
        errors,
        audit_arguments if leakage else None,
    )
    fold_results = [
        _fold_result(k, features, train, test, model, base)
        for k, ((train, test), model, base) in enumerate(zip(folds, models, fold_baselines))
    ]
    table = prediction_table(features, folds, models)
    notes += rarely_predicted(features.classes, table["predicted"].to_numpy(dtype=str))
    if audit and audit["warning"]:
        notes.append(audit["warning"])
    pooled_baselines = {}
    for name in fold_baselines[0]:
        pooled = np.empty(len(features), dtype=object)
        for (_, test), base in zip(folds, fold_baselines):
            pooled[test] = base[name]
        pooled_baselines[name] = icbhi_metrics(features.classes, pooled.astype(str))
    return CVResult(
        metrics=icbhi_metrics(features.classes, table["predicted"].to_numpy(dtype=str)),
        folds=fold_results,
        predictions=table,
        baselines=pooled_baselines,
        grouping=features.grouping,
        n_groups=features.n_groups,
        config={**_run_config(features, estimator, n_folds, seed), "dead_zone": zone},
        seconds=time.perf_counter() - started,
        warnings=notes,
        leakage=audit,
        group_sizes=_group_sizes(features),
        evidence={
            int(test[row]): ev for (_, test), model in zip(folds, models) for row, ev in model["evidence"].items()
        },
    )


def _make_folds(features: FeatureSet, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The folds; when there are too few groups (or clips) for ``n_folds``, the error names the count that works."""
    try:
        return make_folds(features.classes, features.groups, n_folds, seed)
    except ValueError as exc:
        if features.groups is not None:
            most = features.n_groups
        else:
            most = max((int(np.sum(features.classes == c)) for c in set(features.classes.tolist())), default=0)
        if most < 2 or most >= n_folds:
            raise
        raise ValueError(f"{exc}; use --folds {most} or fewer") from None


RARELY_PREDICTED = 0.1
"""A class predicted less than this often, relative to how often it occurs, is flagged in the report."""


def rarely_predicted(true: np.ndarray, predicted: np.ndarray) -> list[str]:
    """A warning for each class of at least 10 clips that the model (almost) never predicts."""
    notes = []
    for name in CLASSES:
        support, count = int(np.sum(true == name)), int(np.sum(predicted == name))
        if support >= 10 and count < RARELY_PREDICTED * support:
            notes.append(
                f"the model predicted {name!r} for {count} clips, though {support} clips are {name}: "
                f"its recall cannot be more than {100 * count / support:.0f} %"
            )
    return notes


def _dead_zone(
    features: FeatureSet, folds: list[tuple[np.ndarray, np.ndarray]], mode: str, seed: int
) -> dict[str, Any] | None:
    """The dead zone's folds, radius and share of training clips dropped, or None when there is none."""
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"dead_zone must be 'auto', 'on' or 'off', got {mode!r}")
    wanted = mode == "on" or (mode == "auto" and features.grouping.kind == "inferred")
    return dead_zone(features, folds, seed) if wanted else None


def _group_sizes(features: FeatureSet) -> list[int]:
    """Clips per group, largest first (empty without groups)."""
    if features.groups is None:
        return []
    _, counts = np.unique(features.groups, return_counts=True)
    return sorted(counts.tolist(), reverse=True)


def _grouping_notes(features: FeatureSet) -> list[str]:
    """Warnings about the grouping, for the terminal and the report."""
    if features.groups is None:
        return [
            "FOLDS NOT GROUPED: clips of one recording or patient may sit in both train and test, "
            "so the scores are optimistic"
        ]
    if features.grouping.kind == "inferred":
        return [
            f"groups inferred from the audio ({features.n_groups} groups): the labels file names no patient; "
            "give a patient column or --groups regex:PATTERN when the patients are known"
        ]
    return []


def _run_folds(
    features: FeatureSet,
    estimator: Any,
    folds: list[tuple[np.ndarray, np.ndarray]],
    seed: int,
    n_jobs: int | None,
    progress: Callable[[str, int, int], None] | None,
    statistics: np.ndarray | None,
    errors: int = 0,
    audit: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, np.ndarray]], dict[str, Any] | None]:
    """Every fold's model output and (given every clip's :func:`clip_statistics`) baseline
    predictions, and the leakage audit (given its arguments), computed in parallel."""
    from ..utils.parallel import parallel_map, resolve_jobs

    parallel = resolve_jobs(n_jobs) > 1
    groups = features.groups
    # The folds' models first, then their baselines: the cheaper baseline
    # tasks fill the cores that the last models leave idle.
    tasks = [
        FoldTask(
            "model",
            estimator,
            [features.sequences[i] for i in train],
            features.classes[train],
            groups[train] if groups is not None else None,
            [features.sequences[i] for i in test],
            seed * 1000 + k,
            parallel,
            features.classes[test],
            errors,
        )
        for k, (train, test) in enumerate(folds)
    ]
    if statistics is not None:
        tasks += [
            FoldTask(
                "baselines",
                None,
                [],
                features.classes[train],
                None,
                [],
                seed * 1000 + k,
                parallel,
                train_statistics=statistics[train],
                test_statistics=statistics[test],
            )
            for k, (train, test) in enumerate(folds)
        ]
    if audit is not None:
        tasks.append(FoldTask("audit", None, [], np.empty(0), None, [], seed, parallel, audit=audit))
    finished = 0

    def on_task(index: int, result: dict) -> None:
        nonlocal finished
        finished += 1
        if progress:
            progress("cv tasks", finished, len(tasks))

    if progress:
        progress("cv tasks", 0, len(tasks))
    outputs = parallel_map(run_fold_task, tasks, n_jobs=min(len(tasks), resolve_jobs(n_jobs)), on_result=on_task)
    models = outputs[: len(folds)]
    n_fold_tasks = len(folds) * (2 if statistics is not None else 1)
    fold_baselines = [out["baselines"] for out in outputs[len(folds) : n_fold_tasks]]
    return models, fold_baselines or [{} for _ in folds], outputs[-1]["audit"] if audit is not None else None


def _fold_result(
    k: int, features: FeatureSet, train: np.ndarray, test: np.ndarray, model: dict, base: dict
) -> FoldResult:
    truth = features.classes[test]
    metrics = icbhi_metrics(truth, model["predicted"])
    if not (np.isfinite(metrics["sensitivity"]) and np.isfinite(metrics["specificity"])):
        # A test part without normal (or abnormal) clips has no Sp (or Se), so no ICBHI Score: "n/a", not
        # the one rate it has.
        metrics["score"] = float("nan")
    return FoldResult(
        fold=k,
        train_size=int(len(train)),
        test_size=int(len(test)),
        test_groups=sorted(set(features.groups[test].tolist())) if features.groups is not None else [],
        metrics=metrics,
        baselines={name: icbhi_metrics(truth, pred) for name, pred in base.items()},
        fit_seconds=round(model["fit_seconds"], 3),
        fit_report=model["fit_report"],
    )


def prediction_table(
    features: FeatureSet, folds: list[tuple[np.ndarray, np.ndarray]], models: list[dict[str, Any]]
) -> pd.DataFrame:
    """Every clip's out-of-fold prediction, posterior and log-likelihoods (predictions.csv)."""
    n = len(features)
    predicted = np.empty(n, dtype=object)
    fold_of = np.empty(n, dtype=np.int64)
    posterior = np.zeros((n, len(CLASSES)))
    log_likelihood = np.zeros((n, len(CLASSES)))
    for k, ((_, test), model) in enumerate(zip(folds, models)):
        predicted[test] = model["predicted"]
        fold_of[test] = k
        posterior[test] = model["posterior"]
        log_likelihood[test] = model["log_likelihood"]
    table = pd.DataFrame(
        {
            "file": features.files,
            "group": features.groups if features.groups is not None else "",
            "group_source": features.grouping.kind,
            "fold": fold_of,
            "true": features.classes,
            "predicted": predicted.astype(str),
        }
    )
    for i, name in enumerate(CLASSES):
        table[f"posterior_{name}"] = np.round(posterior[:, i], 6)
    for i, name in enumerate(CLASSES):
        table[f"log_likelihood_{name}"] = np.round(log_likelihood[:, i], 4)
    return table


def _run_config(features: FeatureSet, estimator: Any, n_folds: int, seed: int) -> dict[str, Any]:
    params = estimator.get_params() if hasattr(estimator, "get_params") else {}
    # The named column sets follow from the feature config, stored beside them.
    params.pop("feature_sets", None)
    return {
        "folds": n_folds,
        "seed": seed,
        "grouped": features.groups is not None,
        "n_clips": len(features),
        "counts": features.counts(),
        "feature_config": features.config.to_dict(),
        "model": type(estimator).__name__,
        "model_params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()},
    }
