"""The jobs behind the CLI commands: extract, cv, train, predict.

Each function takes plain arguments, does one job and returns what it made;
the CLI only parses options, calls these and prints.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .audio import DEFAULT_MAX_SECONDS
from .errors import CacheError, HmmclfError
from .extraction import ChunkTask, ExtractResult, extract_corpus, features_of_chunk
from .feature_store import CACHE_FILE, FeatureSet, load_feature_set
from .features import FeatureConfig
from .labels import CLASS_LABELS, CLASSES, read_labels

AUDIO_SUFFIXES = (".wav", ".wave", ".flac", ".ogg", ".aif", ".aiff", ".au", ".w64", ".rf64")

ProgressFn = Callable[[str, int, int], None]


def default_model_params() -> dict[str, Any]:
    """Model parameters used when none are given."""
    return {}


def features_dir_for(features_dir: str | os.PathLike[str], config: FeatureConfig | None) -> Path:
    """Cache directory of ``config``: ``features_dir`` itself for the default config,
    a ``config-<fingerprint>`` folder inside it for any other, so experiments with
    different features keep their caches side by side."""
    features_dir = Path(features_dir)
    if config is None or config == FeatureConfig():
        return features_dir
    return features_dir / f"config-{config.fingerprint()}"


def ensure_features(
    features_dir: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    labels_csv: str | os.PathLike[str],
    config: FeatureConfig | None = None,
    groups: str | None = "auto",
    n_jobs: int | None = None,
    progress: ProgressFn | None = None,
    log: Callable[[str], None] | None = None,
) -> FeatureSet:
    """The features of the clips the labels file lists now, with its labels and groups now.

    The feature cache is extracted first when it is missing, unfinished, of
    another config, or lacks a clip the labels file lists. Otherwise the
    labels file is read again and applied to the cached features
    (:meth:`FeatureSet.with_labels`): rows removed, labels edited and another
    ``groups`` choice take effect without recomputing a feature, and ``log``
    says what changed since the extraction. Without the labels file (a cache
    used elsewhere), the labels file recorded at extraction is read.
    """
    say = log or (lambda message: None)
    cache_path = Path(features_dir) / CACHE_FILE
    reason = None
    if not cache_path.exists():
        reason = "no feature cache"
    else:
        try:
            cached = load_feature_set(cache_path)
        except CacheError as exc:
            reason = f"cache unusable ({exc})"
        else:
            if not cached.complete:
                reason = "cache is an unfinished extraction"
            elif config is not None and cached.config != config:
                reason = "cache was made with another feature config"
            else:
                labels_csv, data_dir = _labels_for(cached, labels_csv, data_dir, say)
                table = read_labels(labels_csv, data_dir, groups=groups)
                known = set(cached.files) | set(cached.skipped)
                unseen = [f for f in table.rows["file"] if f not in known]
                if not unseen:
                    features = cached.with_labels(table)
                    changes = cached.label_changes(features)
                    if changes:
                        say(
                            f"labels: {labels_csv} differs from the extraction: {', '.join(changes)} "
                            "(no feature recomputed)"
                        )
                    return features
                reason = f"{len(unseen)} clips of {labels_csv} are not in the cache"
    say(f"{reason}: extracting {data_dir} with {labels_csv} into {features_dir}")
    result = extract_corpus(
        data_dir, labels_csv, features_dir, config=config, groups=groups, n_jobs=n_jobs, progress=progress
    )
    say(extract_summary(result))
    return result.features


def _labels_for(
    cached: FeatureSet, labels_csv: str | os.PathLike[str], data_dir: str | os.PathLike[str], say: Callable[[str], None]
) -> tuple[str | os.PathLike[str], str | os.PathLike[str]]:
    """The labels file and data folder to apply: the ones given, else those recorded at extraction."""
    if Path(labels_csv).is_file() and Path(data_dir).is_dir():
        return labels_csv, data_dir
    stored_labels, stored_data = cached.meta.get("labels"), cached.meta.get("data_dir")
    if stored_labels and stored_data and Path(stored_labels).is_file() and Path(stored_data).is_dir():
        say(
            f"labels: {labels_csv} or {data_dir} not here; "
            f"using {stored_labels} and {stored_data} recorded at extraction"
        )
        return stored_labels, stored_data
    raise HmmclfError(
        f"{labels_csv}: labels file not found (the labels are read again at every run; give --labels and --data)"
    )


def extract_summary(result: ExtractResult) -> str:
    """One line: how many clips were used, reused, skipped and why."""
    counts = result.features.counts()
    reasons = result.skipped["reason"].str.replace(r":.*", "", regex=True).value_counts()
    skipped = ", ".join(f"{n} {r}" for r, n in reasons.items())
    line = (
        f"extract: {len(result.features)} clips usable ({', '.join(f'{s} {n}' for s, n in counts.items())}); "
        f"{result.computed} computed, {result.reused} reused; {len(result.skipped)} skipped"
        + (f" ({skipped})" if skipped else "")
        + f"; {result.seconds:.1f} s -> {result.cache_path}"
    )
    if len(result.skipped):
        line += f"; reasons in {result.cache_path.parent / 'skipped.csv'}"
    return line


def new_report_dir(base: str | os.PathLike[str] = "reports", prefix: str = "cv") -> Path:
    """A fresh ``<base>/<prefix>-<timestamp>`` directory name that does not exist yet."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = Path(base) / f"{prefix}-{stamp}"
    n = 2
    while candidate.exists():
        candidate = Path(base) / f"{prefix}-{stamp}-{n}"
        n += 1
    return candidate


def make_model(params: dict[str, Any] | None = None):
    """An :class:`hmmclf.classifier.HMMClassifier` with the defaults updated by ``params``."""
    from .classifier import HMMClassifier

    merged = default_model_params()
    merged.update(params or {})
    try:
        return HMMClassifier(**merged)
    except TypeError as exc:
        raise HmmclfError(f"invalid model parameters: {exc}") from None


def _repeat_progress(progress: ProgressFn, suffix: str, stage: str, done: int, total: int) -> None:
    progress(f"{stage} {suffix}", done, total)


def run_cv(
    features: FeatureSet,
    out_dir: str | os.PathLike[str],
    n_folds: int = 5,
    seed: int = 0,
    model_params: dict[str, Any] | None = None,
    n_jobs: int | None = None,
    progress: ProgressFn | None = None,
    command: str | None = None,
    repeats: int = 1,
    experiment: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Cross-validate and write the report; return the report dictionary.

    With ``repeats`` > 1 the whole CV is repeated with seeds ``seed``,
    ``seed + 1``, ...: the report details the first run and adds every
    repeat's Score, Se and Sp with their mean and standard deviation.
    """
    from .cv import cross_validate
    from .metrics import bootstrap_score_interval
    from .parallel import release_workers
    from .report import write_cv_report

    out_dir = Path(out_dir)
    if (out_dir / "report.json").exists():
        raise HmmclfError(f"{out_dir}: already holds a report; reports are never overwritten, choose another --out")
    if repeats < 1:
        raise HmmclfError(f"--repeats must be >= 1, got {repeats}")
    started = time.perf_counter()
    model = make_model(model_params)
    runs = []
    for r in range(repeats):
        stage_progress = progress
        if progress is not None and repeats > 1:
            stage_progress = functools.partial(_repeat_progress, progress, f"(repeat {r + 1}/{repeats})")
        try:
            runs.append(
                cross_validate(
                    features,
                    model,
                    n_folds=n_folds,
                    seed=seed + r,
                    n_jobs=n_jobs,
                    progress=stage_progress,
                    baselines=(r == 0),
                    leakage=(r == 0),
                )
            )
        except ValueError as exc:
            raise HmmclfError(f"cv: {exc}") from None
    release_workers()
    result = runs[0]
    interval = bootstrap_score_interval(
        result.predictions["true"].to_numpy(), result.predictions["predicted"].to_numpy(), features.groups, seed=seed
    )
    extra: dict[str, Any] = {"score_interval": interval, "experiment": experiment or {"name": "default"}}
    if repeats > 1:
        per_repeat = [
            {"seed": seed + r, **{k: run.metrics[k] for k in ("score", "sensitivity", "specificity")}}
            for r, run in enumerate(runs)
        ]
        extra["repeats"] = per_repeat
        extra["repeat_mean_std"] = {
            k: {"mean": float(np.mean([p[k] for p in per_repeat])), "std": float(np.std([p[k] for p in per_repeat]))}
            for k in ("score", "sensitivity", "specificity")
        }
    result.seconds = time.perf_counter() - started
    return write_cv_report(result, out_dir, command=command, extra=extra)


def train_model(
    features: FeatureSet,
    out_path: str | os.PathLike[str],
    model_params: dict[str, Any] | None = None,
) -> tuple[Any, Path, float]:
    """Fit on every usable clip and save the model; return (model, path, seconds)."""
    from .model_io import save_model

    started = time.perf_counter()
    if len(features) == 0:
        raise HmmclfError("train: the feature cache holds no usable clips (reasons in its skipped.csv)")
    model = make_model(model_params)
    try:
        model.fit(features.sequences, features.classes, groups=features.groups)
    except ValueError as exc:
        raise HmmclfError(f"train: {exc}") from None
    path = save_model(model, out_path, features.config)
    return model, path, time.perf_counter() - started


def list_clips(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand directories into their audio files (sorted, not recursive); keep files as given."""
    clips: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            clips.extend(sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES))
        else:
            clips.append(path)
    return clips


def predict_clips(
    paths: Sequence[str | os.PathLike[str]],
    model_path: str | os.PathLike[str],
    n_jobs: int | None = 1,
    chunk_size: int = 64,
) -> list[dict[str, Any]]:
    """Predict every clip; an unreadable clip gets an ``error`` entry instead.

    Returns
    -------
    list of dict
        Per clip: ``file``, ``labels`` (the label set), ``class``,
        ``log_likelihood`` and ``posterior`` per class; or ``file`` and ``error``.
    """
    from .model_io import load_model
    from .parallel import parallel_map

    model, config = load_model(model_path)
    clips = [str(p) for p in list_clips(paths)]
    # Workers may run in another directory; the output keeps the paths as given.
    absolute = [os.path.abspath(c) for c in clips]
    if not clips:
        raise HmmclfError(f"no audio files found in {', '.join(str(p) for p in paths)}")
    chunks = [absolute[k : k + chunk_size] for k in range(0, len(absolute), chunk_size)]
    tasks = [ChunkTask(chunk, config, DEFAULT_MAX_SECONDS) for chunk in chunks]
    results = [r for chunk in parallel_map(features_of_chunk, tasks, n_jobs=n_jobs) for r in chunk]
    ok = [i for i, r in enumerate(results) if r.usable]
    out: list[dict[str, Any]] = [{"file": c} for c in clips]
    if ok:
        scored = model.score_clips([results[i].features for i in ok])
        posterior = scored.posterior
        for row, i in enumerate(ok):
            label_class = CLASSES[int(np.argmax(scored.decision[row]))]
            out[i].update(
                {
                    "labels": list(CLASS_LABELS[label_class]),
                    "class": label_class,
                    "log_likelihood": {c: round(float(v), 4) for c, v in zip(CLASSES, scored.log_likelihood[row])},
                    "posterior": {c: round(float(v), 6) for c, v in zip(CLASSES, posterior[row])},
                }
            )
    for i, r in enumerate(results):
        if not r.usable:
            out[i]["error"] = r.skip_reason
    return out


@dataclass
class DemoResult:
    """What :func:`run_demo` made."""

    directory: Path
    report: dict[str, Any]
    model_path: Path
    predictions: list[dict[str, Any]]
    seconds: float
    report_dir: Path


def run_demo(
    directory: str | os.PathLike[str] = "demo",
    seed: int = 0,
    n_folds: int = 3,
    n_jobs: int | None = None,
    progress: ProgressFn | None = None,
    log: Callable[[str], None] | None = None,
) -> DemoResult:
    """Synthesise the demo corpus in ``directory`` and run extract, cv, train and predict on it."""
    import pandas as pd

    from .synthetic import synthesize_corpus

    started = time.perf_counter()
    directory = Path(directory)
    say = log or (lambda message: None)
    synthesize_corpus(directory, seed=seed)
    say(f"demo: synthesised corpus in {directory}/train with {directory}/train.csv")
    extracted = extract_corpus(
        directory / "train", directory / "train.csv", directory / "features", n_jobs=n_jobs, progress=progress
    )
    say(extract_summary(extracted))
    report_dir = new_report_dir(directory / "reports")
    report = run_cv(
        extracted.features,
        report_dir,
        n_folds=n_folds,
        seed=seed,
        n_jobs=n_jobs,
        progress=progress,
        command=f"hmmclf demo {directory} --seed {seed}",
    )
    _, model_path, train_seconds = train_model(extracted.features, directory / "model.npz")
    say(f"demo: model trained on all clips in {train_seconds:.1f} s -> {model_path}")
    labels = pd.read_csv(directory / "train.csv")
    # One clip per label class, plus the unreadable file, to show both kinds of output.
    examples = [labels.loc[labels["label"] == name, "filename"].iloc[0] for name in CLASSES]
    examples += [f for f in labels["filename"] if f not in extracted.features.files][:1]
    predictions = predict_clips([directory / "train" / f for f in examples], model_path)
    return DemoResult(
        directory=directory,
        report=report,
        model_path=model_path,
        predictions=predictions,
        seconds=time.perf_counter() - started,
        report_dir=report_dir,
    )
