"""Extraction: decode every clip of a labelled folder, compute its features, cache them.

Clips are read and featurised in chunks by worker processes
(:func:`features_of_chunk`); the results go into a :class:`FeatureSet` saved
with :mod:`hmmclf.data.feature_store` in ``<out>/features.npz``, beside
``index.csv`` (one row per usable clip) and ``skipped.csv`` (one row per
left-out clip with its reason).

Re-running :func:`extract_corpus` reuses every clip whose bytes are unchanged
under the same feature config; a run killed midway leaves its last checkpoint,
which the next run resumes from.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..utils.errors import AudioError, CacheError
from ..utils.files import atomic_open, directory_lock
from ..utils.parallel import parallel_map, resolve_jobs
from .audio import DEFAULT_MAX_SECONDS, load_clip
from .channel import channel_statistics, probe_config
from .feature_store import CACHE_FILE, FeatureSet, load_feature_set, save_feature_set
from .features import FeatureConfig, compute_features, power_spectrogram
from .groups import clip_signature
from .labels import LabelTable, read_labels

ProgressFn = Callable[[str, int, int], None]


def file_sha1(path: str | os.PathLike[str]) -> str:
    """SHA-1 of a file's bytes; identifies an unchanged clip across runs."""
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ClipResult:
    """What extraction made of one clip: its features, or the reason it was skipped."""

    features: np.ndarray | None = None
    original_rate: int = 0
    duration: float = 0.0
    signature: np.ndarray | None = None
    channel: np.ndarray | None = None
    skip_reason: str | None = None
    sha1: str | None = None

    @property
    def usable(self) -> bool:
        return self.skip_reason is None


@dataclass
class ChunkTask:
    """A chunk of clips for one worker."""

    paths: list[str]
    config: FeatureConfig
    max_seconds: float = DEFAULT_MAX_SECONDS
    with_hash: bool = False


def clip_features(path: str, config: FeatureConfig, max_seconds: float = DEFAULT_MAX_SECONDS) -> ClipResult:
    """Decode one clip and compute its features.

    Raises
    ------
    AudioError
        With the skip reason, when the clip cannot be used.
    """
    clip = load_clip(path, config.sample_rate, max_seconds=max_seconds)
    try:
        samples = np.asarray(clip.samples, dtype=np.float32)
        power = power_spectrogram(samples, config.frame_length, config.hop_length)
        features = compute_features(samples, config, power=power)
        # The recording's channel, measured before cepstral mean normalisation removes it.
        probe = probe_config(config.sample_rate)
        same_frames = (probe.frame_length, probe.hop_length) == (config.frame_length, config.hop_length)
        signature = clip_signature(clip.samples, config.sample_rate, clip.original_rate, power if same_frames else None)
        channel = channel_statistics(samples, config.sample_rate, power if same_frames else None)
    except ValueError as exc:
        raise AudioError(path, str(exc)) from None
    return ClipResult(features, clip.original_rate, clip.duration, signature, channel)


def features_of_chunk(task: ChunkTask) -> list[ClipResult]:
    """Worker: features of a chunk of clips, in order; unusable clips get their skip reason.

    With ``task.with_hash`` each result carries the SHA-1 of the file's bytes,
    computed while the file is read anyway.
    """
    out: list[ClipResult] = []
    for path in task.paths:
        try:
            digest = file_sha1(path) if task.with_hash else None
        except OSError as exc:
            out.append(ClipResult(skip_reason=f"cannot read: {exc.strerror or exc}"))
            continue
        try:
            result = clip_features(path, task.config, task.max_seconds)
        except AudioError as exc:
            result = ClipResult(skip_reason=exc.reason)
        result.sha1 = digest
        out.append(result)
    return out


@dataclass
class ExtractResult:
    """What :func:`extract_corpus` did."""

    features: FeatureSet
    skipped: pd.DataFrame
    reused: int
    computed: int
    seconds: float
    cache_path: Path
    notes: list[str]


def _sha1_or_empty(path: Path) -> str:
    """The file's SHA-1, or "" when it cannot be read (it is then extracted, and skipped with the reason)."""
    try:
        return file_sha1(path)
    except OSError:
        return ""


def extract_corpus(
    data_dir: str | os.PathLike[str],
    labels_csv: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: FeatureConfig | None = None,
    groups: str | None = "auto",
    n_jobs: int | None = None,
    progress: ProgressFn | None = None,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    chunk_size: int = 32,
    checkpoint_seconds: float = 20.0,
) -> ExtractResult:
    """Extract the features of every usable clip of a labelled folder into a cache.

    Parameters
    ----------
    data_dir : path
        Folder of clips the labels file's paths are relative to.
    labels_csv : path
        Labels file in any layout :func:`hmmclf.data.labels.read_labels` accepts.
    out_dir : path
        Cache directory; created if needed and locked while this runs.
    config : FeatureConfig, optional
        Feature parameters; the default config when None.
    groups : str or None
        Group column choice, as in :func:`hmmclf.data.labels.read_labels`.
    n_jobs : int, optional
        Worker processes; all cores when None.
    progress : callable, optional
        ``progress(stage, done, total)``, called as clips finish.
    max_seconds : float
        Longer clips are skipped unread.
    chunk_size : int
        Clips per parallel task.
    checkpoint_seconds : float
        At most this long between checkpoints of an unfinished extraction.

    Returns
    -------
    ExtractResult
    """
    started = time.perf_counter()
    config = config or FeatureConfig()
    # Absolute paths: worker processes (or cluster workers) may run in another directory.
    data_dir, out_dir = Path(data_dir).resolve(), Path(out_dir)
    if not data_dir.is_dir():
        raise CacheError(f"{data_dir}: data directory not found")
    cache_path = out_dir / CACHE_FILE
    notes: list[str] = []
    with directory_lock(out_dir, "extract"):
        table = read_labels(labels_csv, data_dir, groups=groups)
        run = _ExtractionRun(table, data_dir, Path(labels_csv), config, _reusable_clips(cache_path, config, notes))
        tasks = run.chunk_tasks(chunk_size, max_seconds)
        checkpoints = _Checkpoints(run, cache_path, checkpoint_seconds, progress)
        n_workers = min(resolve_jobs(n_jobs), max(1, len(tasks)))
        try:
            parallel_map(features_of_chunk, tasks, n_jobs=n_workers, on_result=checkpoints.on_chunk)
        except KeyboardInterrupt:
            # Ctrl-C: keep what was computed (the next run resumes from it), then stop.
            if run.done > run.reused:
                save_feature_set(run.snapshot(complete=False), cache_path)
            raise
        features = run.snapshot(complete=True)
        save_feature_set(features, cache_path)
        skipped = _write_listings(out_dir, table, run, features)
        if not len(features):
            raise CacheError(
                f"{labels_csv}: no usable clip: all {len(skipped)} skipped; reasons in {out_dir / 'skipped.csv'}"
            )
    return ExtractResult(
        features=features,
        skipped=skipped,
        reused=run.reused,
        computed=len(run.todo),
        seconds=time.perf_counter() - started,
        cache_path=cache_path,
        notes=notes,
    )


def _reusable_clips(cache_path: Path, config: FeatureConfig, notes: list[str]) -> dict[tuple[str, str], ClipResult]:
    """The clips of a previous cache made with ``config``, by (file, SHA-1); what was ignored goes to ``notes``."""
    if not cache_path.exists():
        return {}
    try:
        old = load_feature_set(cache_path)
    except CacheError as exc:
        notes.append(f"previous cache ignored: {exc}")
        return {}
    if old.config != config:
        notes.append("feature config changed: every clip is recomputed")
        return {}
    if old.channel is None:
        notes.append("cache of an older hmmclf (no channel statistics): every clip is recomputed")
        return {}
    return {
        (file, old.hashes[i]): ClipResult(
            old.sequences[i], int(old.original_rates[i]), float(old.durations[i]), old.signatures[i], old.channel[i]
        )
        for i, file in enumerate(old.files)
    }


class _ExtractionRun:
    """The clips of one extraction: those reused from a previous cache, those still to compute, the results."""

    def __init__(
        self,
        table: LabelTable,
        data_dir: Path,
        labels_csv: Path,
        config: FeatureConfig,
        previous: dict[tuple[str, str], ClipResult],
    ) -> None:
        self.table, self.data_dir, self.config = table, data_dir, config
        self.files: list[str] = table.rows["file"].tolist()
        self.fresh = not previous
        # With a previous cache, hashes decide which clips to reuse, so they come
        # first; without one, the workers hash each clip as they read it.
        self.hashes = [_sha1_or_empty(data_dir / f) for f in self.files] if previous else [""] * len(self.files)
        self.results: list[ClipResult | None] = [previous.get(key) for key in zip(self.files, self.hashes)]
        self.todo = [i for i, result in enumerate(self.results) if result is None]
        self.reused = len(self.files) - len(self.todo)
        self.done = self.reused
        self.chunks: list[list[int]] = []
        self.meta = {
            "labels": str(labels_csv.resolve()),
            "labels_sha1": _sha1_or_empty(labels_csv),
            "data_dir": str(data_dir),
        }

    def chunk_tasks(self, chunk_size: int, max_seconds: float) -> list[ChunkTask]:
        """The clips still to compute, as parallel tasks of ``chunk_size`` clips."""
        self.chunks = [self.todo[k : k + chunk_size] for k in range(0, len(self.todo), chunk_size)]
        return [
            ChunkTask([str(self.data_dir / self.files[i]) for i in chunk], self.config, max_seconds, self.fresh)
            for chunk in self.chunks
        ]

    def record(self, index: int, chunk_results: list[ClipResult]) -> int:
        """Keep the results of task ``index``; return how many clips are done."""
        for i, result in zip(self.chunks[index], chunk_results):
            self.results[i] = result
            if result.sha1 is not None:
                self.hashes[i] = result.sha1
        self.done += len(chunk_results)
        return self.done

    def audio_skips(self) -> list[dict[str, str]]:
        return [
            {"file": self.files[i], "reason": r.skip_reason}
            for i, r in enumerate(self.results)
            if r is not None and not r.usable
        ]

    def snapshot(self, complete: bool) -> FeatureSet:
        """The usable clips so far; with ``complete``, labelled and grouped as the labels file says."""
        results = self.results
        ok = [i for i, r in enumerate(results) if r is not None and r.usable]
        rows = self.table.rows.iloc[ok]
        features = FeatureSet(
            files=rows["file"].tolist(),
            classes=rows["class"].to_numpy(dtype=str),
            groups=None,
            sequences=[results[i].features for i in ok],
            original_rates=np.array([results[i].original_rate for i in ok], dtype=np.int64),
            durations=np.array([results[i].duration for i in ok], dtype=np.float64),
            hashes=[self.hashes[i] for i in ok],
            config=self.config,
            # (0, 0) when no clip is usable: reshape(0, -1) cannot infer a width.
            signatures=np.array([results[i].signature for i in ok], dtype=np.float32).reshape(len(ok), -1)
            if ok
            else np.zeros((0, 0), dtype=np.float32),
            channel=np.array([results[i].channel for i in ok], dtype=np.float32).reshape(len(ok), -1)
            if ok
            else np.zeros((0, 0), dtype=np.float32),
            skipped={skip["file"]: skip["reason"] for skip in self.audio_skips()},
            complete=complete,
            meta=dict(self.meta),
        )
        # Groups (inferred ones included) only for the finished set: a checkpoint is never used for CV.
        return features.with_labels(self.table) if complete else features


class _Checkpoints:
    """Progress after every finished task, and a checkpoint of the cache at most every ``seconds``."""

    def __init__(self, run: _ExtractionRun, cache_path: Path, seconds: float, progress: ProgressFn | None) -> None:
        self.run, self.cache_path, self.seconds, self.progress = run, cache_path, seconds, progress
        self.last = time.monotonic()
        if progress:
            progress("extract", run.reused, len(run.files))

    def on_chunk(self, index: int, chunk_results: list[ClipResult]) -> None:
        done = self.run.record(index, chunk_results)
        if self.progress:
            self.progress("extract", done, len(self.run.files))
        # A checkpoint lets a killed run resume instead of starting over.
        if time.monotonic() - self.last > self.seconds and done < len(self.run.files):
            save_feature_set(self.run.snapshot(complete=False), self.cache_path)
            self.last = time.monotonic()


def _write_listings(out_dir: Path, table: LabelTable, run: _ExtractionRun, features: FeatureSet) -> pd.DataFrame:
    """skipped.csv (every row or clip left out, with its reason) and index.csv (every clip kept)."""
    skips = pd.DataFrame(run.audio_skips(), columns=["file", "reason"])
    skipped = pd.concat([table.skipped, skips], ignore_index=True)
    with atomic_open(out_dir / "skipped.csv", "w", newline="", encoding="utf-8") as fh:
        skipped.to_csv(fh, index=False)
    index = pd.DataFrame(
        {
            "file": features.files,
            "class": features.classes,
            "group": features.groups if features.groups is not None else "",
            "group_source": features.grouping.kind,
            "original_rate": features.original_rates,
            "duration": np.round(features.durations, 4),
            "n_frames": features.lengths,
            "sha1": features.hashes,
        }
    )
    with atomic_open(out_dir / "index.csv", "w", newline="", encoding="utf-8") as fh:
        index.to_csv(fh, index=False)
    return skipped
