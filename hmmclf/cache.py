"""The feature cache: extraction of a labelled corpus into one pickle-free npz file.

Layout of ``<out>/``:

``features.npz``
    The cache itself, written atomically: ``frames`` (all clips' frames
    concatenated, float32), ``lengths`` (frames per clip), per-clip ``files``,
    ``states``, ``groups``, ``original_rates``, ``durations``, ``hashes``
    (SHA-1 of the file's bytes) and ``meta`` (a JSON string with the feature
    config, its fingerprint and whether the extraction completed).
``index.csv``, ``skipped.csv``
    Human-readable exports: one row per usable clip, and one row per left-out
    clip with its reason.

Re-running :func:`extract_corpus` reuses every clip whose bytes are unchanged
under the same feature config; a run killed midway leaves its last checkpoint,
which the next run resumes from.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import __version__
from ._atomic import atomic_open, directory_lock, load_npz, save_npz
from .audio import DEFAULT_MAX_SECONDS, load_clip
from .errors import AudioError, CacheError
from .features import FeatureConfig, compute_features
from .labels import LABEL_STATES, read_labels
from .parallel import parallel_map, resolve_jobs

CACHE_FILE = "features.npz"
CACHE_FORMAT = "hmmclf-features"
CACHE_FORMAT_VERSION = 1

ProgressFn = Callable[[str, int, int], None]


@dataclass
class FeatureSet:
    """Frame sequences of a labelled corpus, one per usable clip.

    Attributes
    ----------
    files : list of str
        Paths relative to the data directory.
    states : numpy.ndarray of str
        Label state of each clip (see :data:`hmmclf.labels.LABEL_STATES`).
    groups : numpy.ndarray of str or None
        Group (patient or recording) of each clip, or None without a group column.
    sequences : list of numpy.ndarray
        (n_frames, n_features) float32 arrays.
    original_rates : numpy.ndarray of int
    durations : numpy.ndarray of float
        Seconds.
    hashes : list of str
        SHA-1 of each file's bytes.
    config : FeatureConfig
    group_column : str or None
    complete : bool
        False for a checkpoint of an interrupted extraction.
    """

    files: list[str]
    states: np.ndarray
    groups: np.ndarray | None
    sequences: list[np.ndarray]
    original_rates: np.ndarray
    durations: np.ndarray
    hashes: list[str]
    config: FeatureConfig
    group_column: str | None = None
    complete: bool = True
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def lengths(self) -> np.ndarray:
        """Frames per clip."""
        return np.array([len(s) for s in self.sequences], dtype=np.int64)

    def counts(self) -> dict[str, int]:
        """Clips per label state."""
        return {state: int(np.sum(self.states == state)) for state in LABEL_STATES}


def file_sha1(path: str | os.PathLike[str]) -> str:
    """SHA-1 of a file's bytes; identifies an unchanged clip across runs."""
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_feature_set(features: FeatureSet, path: str | os.PathLike[str]) -> None:
    """Write ``features`` atomically as a pickle-free npz file."""
    meta = dict(features.meta)
    meta.update(
        {
            "format": CACHE_FORMAT,
            "format_version": CACHE_FORMAT_VERSION,
            "hmmclf_version": __version__,
            "config": features.config.to_dict(),
            "config_fingerprint": features.config.fingerprint(),
            "group_column": features.group_column,
            "complete": bool(features.complete),
        }
    )
    n_features = features.config.n_features
    frames = (
        np.concatenate(features.sequences).astype(np.float32, copy=False)
        if features.sequences
        else np.zeros((0, n_features), dtype=np.float32)
    )
    groups = features.groups if features.groups is not None else np.full(len(features), "", dtype=str)
    save_npz(
        path,
        {
            "frames": frames,
            "lengths": features.lengths,
            "files": np.array(features.files, dtype=str),
            "states": np.asarray(features.states, dtype=str),
            "groups": np.asarray(groups, dtype=str),
            "original_rates": np.asarray(features.original_rates, dtype=np.int64),
            "durations": np.asarray(features.durations, dtype=np.float64),
            "hashes": np.array(features.hashes, dtype=str),
            "meta": np.array(json.dumps(meta)),
        },
    )


def load_feature_set(path: str | os.PathLike[str]) -> FeatureSet:
    """Load and validate a cache written by :func:`save_feature_set`.

    Nothing in the file is unpickled or executed: arrays are read with
    ``allow_pickle=False`` and every shape, dtype and value range is checked.

    Raises
    ------
    CacheError
        When the file is missing, damaged, foreign or inconsistent.
    """
    path = Path(path)
    arrays = load_npz(path, CacheError, "feature cache", "run 'hmmclf extract'")
    required = {"frames", "lengths", "files", "states", "groups", "original_rates", "durations", "hashes", "meta"}
    missing = required - set(arrays)
    if missing:
        raise CacheError(f"{path}: not an hmmclf feature cache (missing {', '.join(sorted(missing))})")
    try:
        meta = json.loads(str(arrays["meta"]))
        if meta.get("format") != CACHE_FORMAT:
            raise ValueError(f"format {meta.get('format')!r}")
        if meta.get("format_version") != CACHE_FORMAT_VERSION:
            raise ValueError(f"format version {meta.get('format_version')!r} (this hmmclf reads {CACHE_FORMAT_VERSION})")
        config = FeatureConfig.from_dict(meta["config"])
        if config.fingerprint() != meta.get("config_fingerprint"):
            raise ValueError("config fingerprint does not match its config")
    except (ValueError, TypeError, KeyError) as exc:
        raise CacheError(f"{path}: invalid cache metadata ({exc})") from None

    frames, lengths = arrays["frames"], arrays["lengths"]
    n = len(lengths)
    problems = []
    if frames.dtype != np.float32 or frames.ndim != 2 or frames.shape[1] != config.n_features:
        problems.append(f"frames have dtype {frames.dtype} shape {frames.shape}, expected float32 (*, {config.n_features})")
    if lengths.dtype.kind not in "iu" or lengths.ndim != 1 or (n and lengths.min() < 1):
        problems.append("lengths must be positive integers")
    elif int(lengths.sum()) != frames.shape[0]:
        problems.append(f"lengths sum to {int(lengths.sum())} but there are {frames.shape[0]} frames")
    for key in ("files", "states", "groups", "hashes", "original_rates", "durations"):
        if arrays[key].shape != (n,):
            problems.append(f"{key} has shape {arrays[key].shape}, expected ({n},)")
    for key in ("files", "states", "groups", "hashes"):
        if arrays[key].dtype.kind != "U":
            problems.append(f"{key} must be strings, got {arrays[key].dtype}")
    if not problems:
        unknown = set(arrays["states"].tolist()) - set(LABEL_STATES)
        if unknown:
            problems.append(f"unknown states {sorted(unknown)}")
        if not np.isfinite(frames).all():
            problems.append("non-finite frames")
    if problems:
        raise CacheError(f"{path}: invalid feature cache: {'; '.join(problems)}")

    offsets = np.concatenate([[0], np.cumsum(lengths)])
    sequences = [frames[offsets[i] : offsets[i + 1]] for i in range(n)]
    group_column = meta.get("group_column")
    return FeatureSet(
        files=arrays["files"].tolist(),
        states=arrays["states"],
        groups=arrays["groups"] if group_column else None,
        sequences=sequences,
        original_rates=arrays["original_rates"],
        durations=arrays["durations"],
        hashes=arrays["hashes"].tolist(),
        config=config,
        group_column=group_column,
        complete=bool(meta.get("complete", False)),
        meta={k: meta[k] for k in ("labels", "data_dir", "layout") if k in meta},
    )


def clip_features(path: str, config: FeatureConfig, max_seconds: float = DEFAULT_MAX_SECONDS):
    """Decode one clip and compute its features.

    Returns ``(features, original_rate, duration)``; raises :class:`AudioError`
    with the skip reason.
    """
    clip = load_clip(path, config.sample_rate, max_seconds=max_seconds)
    try:
        features = compute_features(clip.samples, config)
    except ValueError as exc:
        raise AudioError(path, str(exc)) from None
    return features, clip.original_rate, clip.duration


def features_of_chunk(task: tuple[list[str], FeatureConfig, float, bool]) -> list[tuple[tuple, str | None]]:
    """Worker: features of a chunk of clips.

    Returns, per clip and in order, ``(result, sha1)``: ``result`` is
    ``("ok", features, original_rate, duration)`` for a usable clip and
    ``("skip", reason)`` for an unusable one; ``sha1`` is the file's hash when
    ``with_hash`` is true (else None).
    """
    paths, config, max_seconds, with_hash = task
    out: list[tuple[tuple, str | None]] = []
    for path in paths:
        try:
            digest = file_sha1(path) if with_hash else None
        except OSError as exc:
            out.append((("skip", f"cannot read: {exc.strerror or exc}"), None))
            continue
        try:
            out.append((("ok",) + clip_features(path, config, max_seconds), digest))
        except AudioError as exc:
            out.append((("skip", exc.reason), digest))
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
        Labels file in any layout :func:`hmmclf.labels.read_labels` accepts.
    out_dir : path
        Cache directory; created if needed and locked while this runs.
    config : FeatureConfig, optional
        Feature parameters; the default config when None.
    groups : str or None
        Group column choice, as in :func:`hmmclf.labels.read_labels`.
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
        previous: dict[tuple[str, str], tuple] = {}
        if cache_path.exists():
            try:
                old = load_feature_set(cache_path)
            except CacheError as exc:
                notes.append(f"previous cache ignored: {exc}")
            else:
                if old.config == config:
                    for i, file in enumerate(old.files):
                        previous[(file, old.hashes[i])] = (
                            old.sequences[i],
                            int(old.original_rates[i]),
                            float(old.durations[i]),
                        )
                else:
                    notes.append("feature config changed: every clip is recomputed")

        files = table.rows["file"].tolist()
        # With a previous cache, hashes decide which clips to reuse, so they come
        # first; without one, the workers hash each clip as they read it.
        hashes: list[str] = [_sha1_or_empty(data_dir / f) for f in files] if previous else [""] * len(files)
        results: list[tuple | None] = [None] * len(files)
        todo: list[int] = []
        for i, key in enumerate(zip(files, hashes)):
            if key in previous:
                results[i] = ("ok",) + previous[key]
            else:
                todo.append(i)
        reused = len(files) - len(todo)

        def snapshot(complete: bool) -> FeatureSet:
            ok = [i for i, r in enumerate(results) if r is not None and r[0] == "ok"]
            rows = table.rows.iloc[ok]
            return FeatureSet(
                files=rows["file"].tolist(),
                states=rows["state"].to_numpy(dtype=str),
                groups=rows["group"].to_numpy(dtype=str) if table.group_column else None,
                sequences=[results[i][1] for i in ok],
                original_rates=np.array([results[i][2] for i in ok], dtype=np.int64),
                durations=np.array([results[i][3] for i in ok], dtype=np.float64),
                hashes=[hashes[i] for i in ok],
                config=config,
                group_column=table.group_column,
                complete=complete,
                meta={"labels": str(labels_csv), "data_dir": str(data_dir), "layout": table.layout},
            )

        chunks = [todo[k : k + chunk_size] for k in range(0, len(todo), chunk_size)]
        tasks = [([str(data_dir / files[i]) for i in chunk], config, max_seconds, not previous) for chunk in chunks]
        done = reused
        last_checkpoint = time.monotonic()
        if progress:
            progress("extract", done, len(files))

        def on_chunk(index: int, chunk_results: list[tuple]) -> None:
            nonlocal done, last_checkpoint
            for i, (result, digest) in zip(chunks[index], chunk_results):
                results[i] = result
                if digest is not None:
                    hashes[i] = digest
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
            {"file": files[i], "reason": r[1]} for i, r in enumerate(results) if r is not None and r[0] == "skip"
        ]
        skipped = pd.concat([table.skipped, pd.DataFrame(audio_skips, columns=["file", "reason"])], ignore_index=True)
        with atomic_open(out_dir / "skipped.csv", "w", newline="", encoding="utf-8") as fh:
            skipped.to_csv(fh, index=False)
        index = pd.DataFrame(
            {
                "file": features.files,
                "state": features.states,
                "group": features.groups if features.groups is not None else "",
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
