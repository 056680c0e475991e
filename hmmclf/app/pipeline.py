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

from ..data.audio import DEFAULT_MAX_SECONDS
from ..data.extraction import ChunkTask, ExtractResult, extract_corpus, features_of_chunk
from ..data.feature_store import CACHE_FILE, FeatureSet, load_feature_set
from ..data.features import FeatureConfig
from ..data.labels import read_labels
from ..model.config import ModelConfig
from ..task.classes import CLASSES
from ..utils.errors import CacheError, HmmclfError
from .experiment import Experiment

ProgressFn = Callable[[str, int, int], None]


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
    labels_given: bool = False,
) -> FeatureSet:
    """The features of the clips the labels file lists now, with its labels and groups now.

    The feature cache is extracted first when it is missing, unfinished, of
    another config, or lacks a clip the labels file lists. Otherwise the
    labels file is read again and applied to the cached features
    (:meth:`FeatureSet.with_labels`): rows removed, labels edited and another
    ``groups`` choice take effect without recomputing a feature, and ``log``
    says what changed since the extraction. Without the labels file (a cache
    used elsewhere), the labels file recorded at extraction is read, unless
    ``labels_given`` (the user named the labels file or data folder): then a
    missing one is an error, never replaced silently.
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
                labels_csv, data_dir = _labels_for(cached, labels_csv, data_dir, say, labels_given)
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
    cached: FeatureSet,
    labels_csv: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    say: Callable[[str], None],
    labels_given: bool = False,
) -> tuple[str | os.PathLike[str], str | os.PathLike[str]]:
    """The labels file and data folder to apply: the ones given, else (when the user named
    neither) those recorded at extraction."""
    if Path(labels_csv).is_file() and Path(data_dir).is_dir():
        return labels_csv, data_dir
    if labels_given:
        if not Path(labels_csv).is_file():
            raise HmmclfError(f"{labels_csv}: labels file not found")
        raise HmmclfError(f"{data_dir}: data folder not found")
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
    # Count reasons without their details: "too short (0.13 s gives 7 frames < 10)" -> "too short".
    reasons = result.skipped["reason"].str.replace(r"\s*[:(].*", "", regex=True).value_counts()
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
    """A fresh ``<base>/<prefix>-<timestamp>`` directory, created (so claimed) by this call."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    Path(base).mkdir(parents=True, exist_ok=True)
    candidate = Path(base) / f"{prefix}-{stamp}"
    n = 2
    # mkdir claims the name atomically: two runs started in the same second get different directories.
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            candidate = Path(base) / f"{prefix}-{stamp}-{n}"
            n += 1


def _repeat_progress(progress: ProgressFn, suffix: str, stage: str, done: int, total: int) -> None:
    progress(f"{stage} {suffix}", done, total)


def run_cv(
    features: FeatureSet,
    out_dir: str | os.PathLike[str],
    experiment: Experiment | None = None,
    *,
    n_jobs: int | None = None,
    progress: ProgressFn | None = None,
    command: str | None = None,
    errors: int | None = None,
) -> dict[str, Any]:
    """Cross-validate the experiment's model (default: :class:`Experiment`) and write the report.

    ``errors``: the most confident mistakes per confusion cell that ``report.html`` plays (0: none;
    default :data:`~hmmclf.evaluation.mistakes.DEFAULT_ERRORS`).

    The experiment's ``cv`` settings give the folds and seed; with
    ``repeats`` > 1 the whole CV is repeated with seeds ``seed``, ``seed + 1``,
    ...: the report details the first run and adds every repeat's Score, Se
    and Sp with their mean and standard deviation. ``out_dir`` is locked
    while this runs: a second cv into it is refused. Returns the report dictionary.
    """
    from ..evaluation.mistakes import DEFAULT_ERRORS
    from ..utils.files import directory_lock

    errors = DEFAULT_ERRORS if errors is None else errors

    with directory_lock(out_dir, "cv"):
        return _run_cv(features, Path(out_dir), experiment or Experiment(), n_jobs, progress, command, errors)


def _run_cv(
    features: FeatureSet,
    out_dir: Path,
    experiment: Experiment,
    n_jobs: int | None,
    progress: ProgressFn | None,
    command: str | None,
    errors: int = 0,
) -> dict[str, Any]:
    from ..evaluation.cv import cross_validate
    from ..evaluation.report import write_cv_report
    from ..model.classifier import HMMClassifier
    from ..task.metrics import bootstrap_score_interval
    from ..task.splits import fold_agreement
    from ..utils.parallel import release_workers

    out_dir = Path(out_dir)
    if (out_dir / "report.json").exists():
        raise HmmclfError(f"{out_dir}: already holds a report; reports are never overwritten, choose another --out")
    experiment = experiment or Experiment()
    n_folds, seed, repeats = experiment.cv.folds, experiment.cv.seed, experiment.cv.repeats
    started = time.perf_counter()
    model = HMMClassifier.from_config(experiment.model, feature_sets=features.config.column_sets())
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
                    # Baselines on every repeat's folds: a model must beat them by more than the seed spread.
                    baselines=True,
                    leakage=(r == 0),
                    dead_zone=experiment.cv.dead_zone,
                    # The Errors section shows the first run: only its models keep their evidence.
                    errors=errors if r == 0 else 0,
                )
            )
        except ValueError as exc:
            raise HmmclfError(f"cv: {exc}") from None
    result = runs[0]
    interval = bootstrap_score_interval(
        result.predictions["true"].to_numpy(), result.predictions["predicted"].to_numpy(), features.groups, seed=seed
    )
    extra: dict[str, Any] = {
        "score_interval": interval,
        "experiment": experiment.to_dict(),
        "data": {"data_dir": features.meta.get("data_dir"), "labels": features.meta.get("labels")},
    }
    if repeats > 1:
        per_repeat = [
            {"seed": seed + r, **{k: run.metrics[k] for k in ("score", "sensitivity", "specificity")}}
            for r, run in enumerate(runs)
        ]
        extra["repeats"] = per_repeat
        extra["repeat_fold_agreement"] = fold_agreement([run.predictions["fold"].to_numpy() for run in runs])
        extra["repeat_mean_std"] = {
            k: {"mean": float(np.mean([p[k] for p in per_repeat])), "std": float(np.std([p[k] for p in per_repeat]))}
            for k in ("score", "sensitivity", "specificity")
        }
        baseline_scores = {name: [run.baselines[name]["score"] for run in runs] for name in result.baselines}
        extra["baseline_repeat_mean_std"] = {
            name: {"mean": float(np.mean(scores)), "std": float(np.std(scores))}
            for name, scores in baseline_scores.items()
        }
    result.seconds = time.perf_counter() - started
    data_dir = features.meta.get("data_dir")
    clip_folder = Path(data_dir).resolve() if data_dir else None
    try:
        # The workers that ran the folds draw the figures too.
        return write_cv_report(
            result, out_dir, command=command, extra=extra, errors=errors, clip_folder=clip_folder, n_jobs=n_jobs
        )
    finally:
        release_workers()


def train_model(
    features: FeatureSet,
    out_path: str | os.PathLike[str],
    config: ModelConfig | None = None,
) -> tuple[Any, Path, float]:
    """Fit on every usable clip with ``config`` (default: the defaults) and save the model;
    return (model, path, seconds)."""
    from ..model.classifier import HMMClassifier
    from ..model.model_io import save_model

    started = time.perf_counter()
    if len(features) == 0:
        raise HmmclfError("train: the feature cache holds no usable clips (reasons in its skipped.csv)")
    model = HMMClassifier.from_config(config or ModelConfig(), feature_sets=features.config.column_sets())
    try:
        model.fit(features.sequences, features.classes, groups=features.groups)
    except ValueError as exc:
        raise HmmclfError(f"train: {exc}") from None
    path = save_model(model, out_path, features.config)
    return model, path, time.perf_counter() - started


# Other names libsndfile reads under (it detects a file's format from its header, not its name),
# each with the major format, and subtype if any, it needs to be available.
AUDIO_SUFFIX_ALIASES = {
    ".wave": ("WAV", None),
    ".aif": ("AIFF", None),
    ".aifc": ("AIFF", None),
    ".snd": ("AU", None),
    ".oga": ("OGG", None),
    ".opus": ("OGG", "OPUS"),
    ".sf": ("IRCAM", None),
    ".sph": ("NIST", None),
    ".8svx": ("SVX", None),
    ".mpeg": ("MP3", None),
    ".mpga": ("MP3", None),
    ".mp2": ("MP3", "MPEG_LAYER_II"),
    ".mp1": ("MP3", "MPEG_LAYER_I"),
}

# A header-less file cannot be decoded without being told its rate and sample format.
NOT_LISTED_FORMATS = {"RAW"}


@functools.lru_cache(maxsize=1)
def audio_suffixes() -> frozenset[str]:
    """File extensions (lower case, with the dot) that a directory given to ``predict`` is searched for:
    every format the installed libsndfile reads (``soundfile.available_formats()``, header-less RAW
    excepted) and the usual other names of those formats (``.wave``, ``.aif``, ``.oga``, ``.opus``, ...)."""
    import soundfile

    formats = set(soundfile.available_formats()) - NOT_LISTED_FORMATS
    suffixes = {f".{name.lower()}" for name in formats}
    for suffix, (major, subtype) in AUDIO_SUFFIX_ALIASES.items():
        if major in formats and (subtype is None or subtype in soundfile.available_subtypes(major)):
            suffixes.add(suffix)
    return frozenset(suffixes)


@dataclass
class ClipListing:
    """The clips found in the paths given to ``predict``, and what was passed over in their directories.

    Attributes
    ----------
    clips : list of Path
        Files given, as given; audio files of directories given, sorted.
    skipped : dict
        Per directory (as given): ``((noun, reason), names)`` of what it holds but was not listed.
    """

    clips: list[Path]
    skipped: dict[str, list[tuple[tuple[str, str], list[str]]]]

    def notes(self, limit: int = 10) -> list[str]:
        """One line per directory and reason, e.g.
        ``predict: skipped 2 files in DIR that are not audio (...): notes.txt, x.png``."""
        lines = []
        for directory, groups in self.skipped.items():
            for (noun, reason), names in groups:
                shown = ", ".join(names[:limit]) + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
                one = len(names) == 1
                count, reason = f"{len(names)} {noun}{'' if one else 's'}", reason.format(are="is" if one else "are")
                lines.append(f"predict: skipped {count} in {directory} {reason}: {shown}")
        return lines


def list_clips(paths: Iterable[str | os.PathLike[str]]) -> ClipListing:
    """Expand directories into their audio files (sorted, not recursive); keep files as given.

    A directory's audio files are those whose extension names a format libsndfile reads
    (:func:`audio_suffixes`). Whatever else it holds is reported in ``skipped`` with the reason:
    other files, hidden files (``.DS_Store``, macOS ``._clip.wav`` copies) and sub-folders.

    Raises
    ------
    HmmclfError
        A path that does not exist (one line naming every such path).
    """
    paths = [Path(raw) for raw in paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise HmmclfError(f"no such file or directory: {', '.join(missing)}")
    suffixes = audio_suffixes()
    clips: list[Path] = []
    skipped: dict[str, list[tuple[tuple[str, str], list[str]]]] = {}
    for path in paths:
        if not path.is_dir():
            clips.append(path)
            continue
        found, hidden, other, folders = [], [], [], []
        for entry in sorted(path.iterdir()):
            if entry.name.startswith("."):
                hidden.append(entry.name)
            elif entry.is_dir():
                folders.append(entry.name + "/")
            elif entry.suffix.lower() in suffixes:
                found.append(entry)
            else:
                other.append(entry.name)
        clips.extend(found)
        groups = [
            (("file", "that {are} not audio (no extension libsndfile reads)"), other),
            (("hidden file", "(name starts with '.')"), hidden),
            (("folder", "(not searched: give a folder as a path of its own)"), folders),
        ]
        if any(names for _, names in groups):
            skipped[str(path)] = [(kind, names) for kind, names in groups if names]
    return ClipListing(clips, skipped)


def predict_clips(
    paths: Sequence[str | os.PathLike[str]],
    model_path: str | os.PathLike[str],
    n_jobs: int | None = 1,
    chunk_size: int = 64,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Predict every clip; a clip that exists but cannot be used gets an ``error`` entry instead.

    Directories are searched for audio files (:func:`list_clips`); ``log`` gets
    one line per directory and reason for the files passed over.

    Returns
    -------
    list of dict
        Per clip: ``file``, ``labels`` (the label set), ``class``,
        ``log_likelihood`` and ``posterior`` per class; or ``file`` and ``error``.

    Raises
    ------
    HmmclfError
        A path that does not exist, no audio file at all, or an unusable model file.
    """
    from ..model.model_io import load_model
    from ..utils.parallel import parallel_map

    listing = list_clips(paths)
    say = log or (lambda message: None)
    for note in listing.notes():
        say(note)
    clips = [str(p) for p in listing.clips]
    if not clips:
        raise HmmclfError(f"no audio files found in {', '.join(str(p) for p in paths)}")
    model, config = load_model(model_path)
    # Workers may run in another directory; the output keeps the paths as given.
    absolute = [os.path.abspath(c) for c in clips]
    chunks = [absolute[k : k + chunk_size] for k in range(0, len(absolute), chunk_size)]
    tasks = [ChunkTask(chunk, config, DEFAULT_MAX_SECONDS) for chunk in chunks]
    results = [r for chunk in parallel_map(features_of_chunk, tasks, n_jobs=n_jobs) for r in chunk]
    ok = [i for i, r in enumerate(results) if r.usable]
    out: list[dict[str, Any]] = [{"file": c} for c in clips]
    if ok:
        scored = model.score_clips([results[i].features for i in ok])
        for row, i in enumerate(ok):
            out[i].update(scored.clip_record(row))
    for i, r in enumerate(results):
        if not r.usable:
            out[i]["error"] = r.skip_reason
    return out


@dataclass
class DemoResult:
    """What :func:`run_demo` made; ``stage_seconds`` is the wall time of each step on its own
    (synthesis, extract, cv, train, predict), ``seconds`` the whole run."""

    directory: Path
    report: dict[str, Any]
    model_path: Path
    predictions: list[dict[str, Any]]
    seconds: float
    report_dir: Path
    stage_seconds: dict[str, float]

    def timing(self) -> str:
        """``12.3 s (synthesis 0.4 s, extract 3.0 s, cv 6.1 s, train 2.2 s, predict 0.6 s)``."""
        stages = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.stage_seconds.items())
        return f"{self.seconds:.1f} s ({stages})"


def run_demo(
    directory: str | os.PathLike[str] = "demo",
    seed: int = 0,
    n_folds: int = 3,
    n_jobs: int | None = None,
    progress: ProgressFn | None = None,
    log: Callable[[str], None] | None = None,
) -> DemoResult:
    """Synthesise the demo corpus in ``directory`` and run extract, cv, train and predict on it
    (not prepare, compare or explain)."""
    import pandas as pd

    from ..data.synthetic import synthesize_corpus

    started = time.perf_counter()
    stage_seconds: dict[str, float] = {}

    def stage_done(name: str, since: float) -> float:
        now = time.perf_counter()
        stage_seconds[name] = now - since
        return now

    directory = Path(directory)
    say = log or (lambda message: None)
    synthesize_corpus(directory, seed=seed)
    say(f"demo: synthesised corpus in {directory}/train with {directory}/train.csv")
    mark = stage_done("synthesis", started)
    extracted = extract_corpus(
        directory / "train", directory / "train.csv", directory / "features", n_jobs=n_jobs, progress=progress
    )
    say(extract_summary(extracted))
    mark = stage_done("extract", mark)
    report_dir = new_report_dir(directory / "reports")
    report = run_cv(
        extracted.features,
        report_dir,
        Experiment().with_overrides(folds=n_folds, seed=seed),
        n_jobs=n_jobs,
        progress=progress,
        command=f"hmmclf demo {directory} --seed {seed}",
    )
    mark = stage_done("cv", mark)
    _, model_path, _ = train_model(extracted.features, directory / "model.npz")
    mark = stage_done("train", mark)
    # The training step alone: not the time since the demo started.
    say(f"demo: model trained on all clips in {stage_seconds['train']:.1f} s -> {model_path}")
    labels = pd.read_csv(directory / "train.csv")
    # One clip per label class, plus the unreadable file, to show both kinds of output.
    examples = [labels.loc[labels["label"] == name, "filename"].iloc[0] for name in CLASSES]
    examples += [f for f in labels["filename"] if f not in extracted.features.files][:1]
    predictions = predict_clips([directory / "train" / f for f in examples], model_path)
    stage_done("predict", mark)
    return DemoResult(
        directory=directory,
        report=report,
        model_path=model_path,
        predictions=predictions,
        seconds=time.perf_counter() - started,
        report_dir=report_dir,
        stage_seconds=stage_seconds,
    )
