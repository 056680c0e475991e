"""The feature-set file: frame sequences of a labelled corpus in one pickle-free npz.

Layout of ``features.npz``, written atomically: ``frames`` (all clips' frames
concatenated, float32), ``lengths`` (frames per clip), per-clip ``files``,
``classes``, ``groups``, ``original_rates``, ``durations``, ``hashes`` (SHA-1
of the file's bytes), ``signatures`` (the recording signature of
:mod:`hmmclf.data.groups`, float32), the files extraction could not use
(``skipped_files``, ``skipped_reasons``) and ``meta`` (a JSON string with the
feature config, its fingerprint, the labels file's SHA-1, where the groups
came from, and whether the extraction completed). Loading reads it with
``allow_pickle=False`` and validates every shape, dtype and value.

The labels and groups stored are those of the extraction. Commands that use
the store re-read the labels file and apply it with :meth:`FeatureSet.with_labels`,
so a label edited, a row removed or another ``--groups`` takes effect
without recomputing any feature.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..task.classes import CLASSES
from ..utils.errors import CacheError
from ..utils.files import load_npz, save_npz
from .features import FeatureConfig
from .grouping import Grouping
from .labels import LabelTable

CACHE_FILE = "features.npz"
CACHE_FORMAT = "hmmclf-features"
# Version 2 (hmmclf 0.3): per-clip "classes" (was "states"), signatures, skipped files, group source.
# Version 3 (hmmclf 0.4): the grouping as one JSON object (0.3 stored three loose strings), and
# per-clip channel statistics for the leakage audit (a version-2 cache is read without them).
CACHE_FORMAT_VERSION = 3
READABLE_CACHE_FORMAT_VERSIONS = (2, 3)


@dataclass
class FeatureSet:
    """Frame sequences of a labelled corpus, one per usable clip.

    Attributes
    ----------
    files : list of str
        Paths relative to the data directory.
    classes : numpy.ndarray of str
        Label class of each clip (see :data:`hmmclf.data.labels.CLASSES`).
    groups : numpy.ndarray of str or None
        Group (patient, recording or inferred group) of each clip, or None
        when the folds are not grouped.
    sequences : list of numpy.ndarray
        (n_frames, n_features) float32 arrays.
    original_rates : numpy.ndarray of int
    durations : numpy.ndarray of float
        Seconds.
    hashes : list of str
        SHA-1 of each file's bytes.
    config : FeatureConfig
    signatures : numpy.ndarray
        (n_clips, n) recording signatures (see :func:`hmmclf.data.groups.clip_signature`).
    channel : numpy.ndarray or None
        (n_clips, CHANNEL_WIDTH) channel statistics for the leakage audit
        (see :mod:`hmmclf.data.channel`); None in a cache of hmmclf 0.3.
    grouping : Grouping
        Where the groups come from (see :mod:`hmmclf.data.grouping`).
    skipped : dict of str to str
        Files extraction could not use, with the reason.
    complete : bool
        False for a checkpoint of an interrupted extraction.
    """

    files: list[str]
    classes: np.ndarray
    groups: np.ndarray | None
    sequences: list[np.ndarray]
    original_rates: np.ndarray
    durations: np.ndarray
    hashes: list[str]
    config: FeatureConfig
    signatures: np.ndarray | None = None
    channel: np.ndarray | None = None
    grouping: Grouping = Grouping()
    skipped: dict[str, str] = field(default_factory=dict)
    complete: bool = True
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def lengths(self) -> np.ndarray:
        """Frames per clip."""
        return np.array([len(s) for s in self.sequences], dtype=np.int64)

    def counts(self) -> dict[str, int]:
        """Clips per label class."""
        return {name: int(np.sum(self.classes == name)) for name in CLASSES}

    @property
    def n_groups(self) -> int:
        return 0 if self.groups is None else len(set(self.groups.tolist()))

    def describe_groups(self) -> str:
        """One line: how the folds will be grouped, and how many groups that gives."""
        if self.groups is None:
            return "folds NOT grouped (no groups): clips of one recording may sit on both sides of a split"
        return f"groups: {self.n_groups} {self.grouping.unit}, from {self.grouping.describe()}"

    def with_labels(self, table: LabelTable) -> FeatureSet:
        """The clips of ``table`` that this set holds, with ``table``'s classes and groups.

        Rows are taken in the labels file's order; files the set does not hold
        are left out (the caller extracts them first). Groups the table leaves
        to inference are inferred from the signatures of the clips kept.
        """
        from .groups import describe_inference, infer_groups

        position = {f: i for i, f in enumerate(self.files)}
        listed = set(table.rows["file"])
        rows = table.rows[table.rows["file"].isin(position)]
        index = np.array([position[f] for f in rows["file"]], dtype=np.int64)
        grouping = table.grouping
        groups = rows["group"].to_numpy(dtype=str) if grouping.kind not in ("none", "inferred") else None
        if grouping.kind == "inferred":
            if self.signatures is None or len(self.signatures) != len(self):
                raise CacheError("the feature cache holds no recording signatures to infer groups from: extract again")
            same_clips = np.array_equal(index, np.arange(len(self)))
            asked = self.grouping.requested_groups == grouping.requested_groups
            if same_clips and asked and self.grouping.kind == "inferred" and self.groups is not None:
                # The cache holds these very clips, in this order, grouped the same way at extraction:
                # the clustering is deterministic, so its groups are reused rather than computed again.
                groups = self.groups
            else:
                inferred = infer_groups(self.signatures[index], n_groups=grouping.requested_groups)
                groups = np.array([f"g{g:04d}" for g in inferred])
            grouping = grouping.inferred_by(describe_inference(grouping.requested_groups))
        return FeatureSet(
            files=rows["file"].tolist(),
            classes=rows["class"].to_numpy(dtype=str),
            groups=groups,
            sequences=[self.sequences[i] for i in index],
            original_rates=self.original_rates[index],
            durations=self.durations[index],
            hashes=[self.hashes[i] for i in index],
            config=self.config,
            signatures=None if self.signatures is None else self.signatures[index],
            channel=None if self.channel is None else self.channel[index],
            grouping=grouping,
            skipped={f: r for f, r in self.skipped.items() if f in listed},
            complete=self.complete,
            meta=dict(self.meta),
        )

    def label_changes(self, other: FeatureSet) -> list[str]:
        """What differs in ``other`` (the same store under newer labels): rows removed, relabelled, added."""
        before = dict(zip(self.files, self.classes.tolist()))
        after = dict(zip(other.files, other.classes.tolist()))
        removed = len(set(before) - set(after))
        added = len(set(after) - set(before))
        relabelled = sum(1 for f, c in after.items() if f in before and before[f] != c)
        changes = [
            f"{n} {what}" for n, what in ((removed, "removed"), (relabelled, "relabelled"), (added, "added")) if n
        ]
        return changes


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
            "grouping": features.grouping.to_dict(),
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
    signatures = features.signatures if features.signatures is not None else np.zeros((len(features), 0))
    channel = features.channel if features.channel is not None else np.zeros((len(features), 0))
    save_npz(
        path,
        {
            "frames": frames,
            "lengths": features.lengths,
            "files": np.array(features.files, dtype=str),
            "classes": np.asarray(features.classes, dtype=str),
            "groups": np.asarray(groups, dtype=str),
            "original_rates": np.asarray(features.original_rates, dtype=np.int64),
            "durations": np.asarray(features.durations, dtype=np.float64),
            "hashes": np.array(features.hashes, dtype=str),
            "signatures": np.asarray(signatures, dtype=np.float32).reshape(len(features), -1),
            "channel": np.asarray(channel, dtype=np.float32).reshape(len(features), -1),
            "skipped_files": np.array(list(features.skipped), dtype=str),
            "skipped_reasons": np.array(list(features.skipped.values()), dtype=str),
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
    required = {"frames", "lengths", "files", "classes", "groups", "original_rates", "durations", "hashes", "meta"}
    required |= {"signatures", "skipped_files", "skipped_reasons"}
    missing = required - set(arrays)
    if missing:
        raise CacheError(f"{path}: not an hmmclf feature cache (missing {', '.join(sorted(missing))})")
    meta, config = _cache_meta(path, arrays)
    problems = _array_problems(arrays, config)
    if problems:
        raise CacheError(f"{path}: invalid feature cache: {'; '.join(problems)}")
    frames, lengths = arrays["frames"], arrays["lengths"]
    n = len(lengths)
    signatures = arrays["signatures"]
    channel = arrays.get("channel")
    skipped_files, skipped_reasons = arrays["skipped_files"], arrays["skipped_reasons"]
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    sequences = [frames[bounds[i] : bounds[i + 1]] for i in range(n)]
    grouping = _stored_grouping(meta)
    return FeatureSet(
        files=arrays["files"].tolist(),
        classes=arrays["classes"],
        groups=arrays["groups"] if grouping.grouped else None,
        sequences=sequences,
        original_rates=arrays["original_rates"],
        durations=arrays["durations"],
        hashes=arrays["hashes"].tolist(),
        config=config,
        signatures=signatures if signatures.shape[1] else None,
        channel=channel if channel is not None and channel.shape[1] else None,
        grouping=grouping,
        skipped=dict(zip(skipped_files.tolist(), skipped_reasons.tolist())),
        complete=bool(meta.get("complete", False)),
        meta={k: meta[k] for k in ("labels", "labels_sha1", "data_dir", "layout") if k in meta},
    )


def _cache_meta(path: Path, arrays: dict[str, np.ndarray]) -> tuple[dict, FeatureConfig]:
    """The cache's metadata and feature config, validated; CacheError naming the file otherwise."""
    try:
        meta = json.loads(str(arrays["meta"]))
        if not isinstance(meta, dict):
            raise ValueError("metadata is not a JSON object")
        odd = [
            k
            for k in ("labels", "labels_sha1", "data_dir", "layout", "group_note")
            if not isinstance(meta.get(k, ""), str)
        ]
        if odd or not isinstance(meta.get("group_column") or "", str):
            raise ValueError(f"{', '.join(odd) or 'group_column'} must be text")
        if meta.get("format") != CACHE_FORMAT:
            raise ValueError(f"format {meta.get('format')!r}")
        if meta.get("format_version") not in READABLE_CACHE_FORMAT_VERSIONS:
            raise ValueError(
                f"format version {meta.get('format_version')!r} (this hmmclf reads {READABLE_CACHE_FORMAT_VERSIONS})"
            )
        config = FeatureConfig.from_dict(meta["config"])
        if config.fingerprint() != meta.get("config_fingerprint"):
            raise ValueError("config fingerprint does not match its config")
    except (ValueError, TypeError, KeyError) as exc:
        raise CacheError(f"{path}: invalid cache metadata ({exc})") from None
    return meta, config


def _array_problems(arrays: dict[str, np.ndarray], config: FeatureConfig) -> list[str]:
    """Every way the cache's arrays break the format (shapes, dtypes, finite values, known classes)."""
    frames, lengths = arrays["frames"], arrays["lengths"]
    n = len(lengths) if lengths.ndim else 0
    problems = []
    frames_ok = frames.dtype == np.float32 and frames.ndim == 2 and frames.shape[1] == config.n_features
    if not frames_ok:
        problems.append(
            f"frames have dtype {frames.dtype} shape {frames.shape}, expected float32 (*, {config.n_features})"
        )
    if lengths.dtype.kind not in "iu" or lengths.ndim != 1 or (n and lengths.min() < 1):
        problems.append("lengths must be positive integers")
    elif frames_ok and int(lengths.sum()) != frames.shape[0]:
        problems.append(f"lengths sum to {int(lengths.sum())} but there are {frames.shape[0]} frames")
    for key in ("files", "classes", "groups", "hashes", "original_rates", "durations"):
        if arrays[key].shape != (n,):
            problems.append(f"{key} has shape {arrays[key].shape}, expected ({n},)")
    for key in ("files", "classes", "groups", "hashes"):
        if arrays[key].dtype.kind != "U":
            problems.append(f"{key} must be strings, got {arrays[key].dtype}")
    signatures = arrays["signatures"]
    if signatures.dtype != np.float32 or signatures.ndim != 2 or signatures.shape[0] != n:
        problems.append(f"signatures have dtype {signatures.dtype} shape {signatures.shape}, expected float32 ({n}, *)")
    elif not np.isfinite(signatures).all():
        problems.append("non-finite signatures")
    channel = arrays.get("channel")
    if channel is not None and (channel.dtype != np.float32 or channel.ndim != 2 or channel.shape[0] != n):
        problems.append(f"channel has dtype {channel.dtype} shape {channel.shape}, expected float32 ({n}, *)")
    elif channel is not None and not np.isfinite(channel).all():
        problems.append("non-finite channel statistics")
    skipped_files, skipped_reasons = arrays["skipped_files"], arrays["skipped_reasons"]
    kinds = skipped_files.dtype.kind + skipped_reasons.dtype.kind
    if skipped_files.ndim != 1 or skipped_files.shape != skipped_reasons.shape or kinds != "UU":
        problems.append("skipped_files and skipped_reasons must be string arrays of one length")
    if not problems:
        unknown = set(arrays["classes"].tolist()) - set(CLASSES)
        if unknown:
            problems.append(f"unknown classes {sorted(unknown)}")
        if not np.isfinite(frames).all():
            problems.append("non-finite frames")
    return problems


def _stored_grouping(meta: dict) -> Grouping:
    """The grouping a cache recorded (hmmclf 0.3 caches stored three loose strings instead)."""
    if isinstance(meta.get("grouping"), dict):
        try:
            return Grouping.from_dict(meta["grouping"])
        except (TypeError, ValueError):
            return Grouping()
    source = str(meta.get("group_source", "none"))
    if source == "column":
        return Grouping("column", column=meta.get("group_column"))
    return (
        Grouping("inferred")
        if source == "inferred"
        else Grouping(source if source in ("filename", "regex") else "none")
    )
