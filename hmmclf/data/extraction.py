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
from .feature_store import CACHE_FILE, FeatureSet, load_feature_set, save_feature_set
from .features import FeatureConfig, compute_features
from .groups import clip_signature
from .labels import read_labels

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
        features = compute_features(clip.samples, config)
        # The recording's channel, measured before cepstral mean normalisation removes it.
        signature = clip_signature(clip.samples, config.sample_rate, clip.original_rate)
    except ValueError as exc:
        raise AudioError(path, str(exc)) from None
    return ClipResult(features, clip.original_rate, clip.duration, signature)


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
        previous: dict[tuple[str, str], ClipResult] = {}
        if cache_path.exists():
            try:
                old = load_feature_set(cache_path)
            except CacheError as exc:
                notes.append(f"previous cache ignored: {exc}")
            else:
                if old.config == config:
                    for i, file in enumerate(old.files):
                        previous[(file, old.hashes[i])] = ClipResult(
                            old.sequences[i], int(old.original_rates[i]), float(old.durations[i]), old.signatures[i]
                        )
                else:
                    notes.append("feature config changed: every clip is recomputed")

        files = table.rows["file"].tolist()
        # With a previous cache, hashes decide which clips to reuse, so they come
        # first; without one, the workers hash each clip as they read it.
        hashes: list[str] = [_sha1_or_empty(data_dir / f) for f in files] if previous else [""] * len(files)
        results: list[ClipResult | None] = [None] * len(files)
        todo: list[int] = []
        for i, key in enumerate(zip(files, hashes)):
            if key in previous:
                results[i] = previous[key]
            else:
                todo.append(i)
        reused = len(files) - len(todo)

        labels_sha1 = _sha1_or_empty(Path(labels_csv))

        def snapshot(complete: bool) -> FeatureSet:
            ok = [i for i, r in enumerate(results) if r is not None and r.usable]
            rows = table.rows.iloc[ok]
            features = FeatureSet(
                files=rows["file"].tolist(),
                classes=rows["class"].to_numpy(dtype=str),
                groups=None,
                sequences=[results[i].features for i in ok],
                original_rates=np.array([results[i].original_rate for i in ok], dtype=np.int64),
                durations=np.array([results[i].duration for i in ok], dtype=np.float64),
                hashes=[hashes[i] for i in ok],
                config=config,
                signatures=np.array([results[i].signature for i in ok], dtype=np.float32).reshape(len(ok), -1),
                skipped={files[i]: r.skip_reason for i, r in enumerate(results) if r is not None and not r.usable},
                complete=complete,
                meta={"labels": str(Path(labels_csv).resolve()), "labels_sha1": labels_sha1, "data_dir": str(data_dir)},
            )
            # Groups (inferred ones included) only for the finished set: a checkpoint is never used for CV.
            return features.with_labels(table) if complete else features

        chunks = [todo[k : k + chunk_size] for k in range(0, len(todo), chunk_size)]
        tasks = [
            ChunkTask([str(data_dir / files[i]) for i in chunk], config, max_seconds, not previous) for chunk in chunks
        ]
        done = reused
        last_checkpoint = time.monotonic()
        if progress:
            progress("extract", done, len(files))

        def on_chunk(index: int, chunk_results: list[ClipResult]) -> None:
            nonlocal done, last_checkpoint
            for i, result in zip(chunks[index], chunk_results):
                results[i] = result
                if result.sha1 is not None:
                    hashes[i] = result.sha1
            done += len(chunk_results)
            if progress:
                progress("extract", done, len(files))
            # A checkpoint lets a killed run resume instead of starting over.
            if time.monotonic() - last_checkpoint > checkpoint_seconds and done < len(files):
                save_feature_set(snapshot(complete=False), cache_path)
                last_checkpoint = time.monotonic()

        parallel_map(features_of_chunk, tasks, n_jobs=min(resolve_jobs(n_jobs), max(1, len(tasks))), on_result=on_chunk)
        computed = len(todo)

        features = snapshot(complete=True)
        save_feature_set(features, cache_path)
        audio_skips = [
            {"file": files[i], "reason": r.skip_reason} for i, r in enumerate(results) if r is not None and not r.usable
        ]
        skipped = pd.concat([table.skipped, pd.DataFrame(audio_skips, columns=["file", "reason"])], ignore_index=True)
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
    return ExtractResult(
        features=features,
        skipped=skipped,
        reused=reused,
        computed=computed,
        seconds=time.perf_counter() - started,
        cache_path=cache_path,
        notes=notes,
    )
