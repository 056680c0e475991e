"""Import the public ICBHI 2017 and SPRSound releases: whole recordings -> one clip per cycle or event.

``prepare_corpus(kind, SRC, OUT)`` finds the recordings and their annotation
files anywhere under ``SRC`` and writes the layout every other command reads:

``OUT/train/<recording>_<index:03d>.wav``
    One 16-bit PCM wav per annotated cycle (ICBHI) or event (SPRSound), at the
    recording's own sample rate, cut at samples ``round(start * sr)`` to
    ``round(end * sr)``; a recording with several channels is mixed to mono
    (channel mean). The releases' recordings are mono already.
``OUT/train.csv``
    One row per clip, sorted by recording then cycle/event index (columns in
    :data:`ICBHI_COLUMNS` and :data:`SPRSOUND_COLUMNS`).
``OUT/skipped.csv``
    Every annotation row, recording or file that gave no clip, with its reason.
``OUT/prepare_state.json``
    Per recording: size and mtime of its source files and of the clips cut from
    it. A re-run cuts again only recordings whose sources or clips changed, and
    still writes a complete ``train.csv``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..utils.errors import HmmclfError
from ..utils.files import atomic_open, atomic_path, atomic_write_text, directory_lock

KINDS = ("icbhi", "sprsound")
STATE_FILE = "prepare_state.json"
_STATE_VERSION = 1

ICBHI_COLUMNS = (
    "filename",
    "patient_id",
    "recording",
    "cycle",
    "start",
    "end",
    "crackles",
    "wheezes",
    "label",
    "device",
    "chest_location",
    "acquisition_mode",
)
"""train.csv columns of an ICBHI import; ``diagnosis`` and ``split`` follow when the release's files are found."""
SPRSOUND_COLUMNS = (
    "filename",
    "patient_id",
    "recording",
    "event",
    "start",
    "end",
    "duration",
    "crackles",
    "wheezes",
    "label",
    "event_type",
    "record_annotation",
    "split",
)
"""train.csv columns of a SPRSound import (start, end and duration in seconds)."""
SKIPPED_COLUMNS = ("source", "recording", "row", "reason")
LABELS = ("normal", "crackle", "wheeze", "both")
"""The ``label`` values, indexed by crackles + 2 * wheezes."""

SPRSOUND_TYPES = {
    "normal": (0, 0),
    "fine crackle": (1, 0),
    "coarse crackle": (1, 0),
    "wheeze": (0, 1),
    "rhonchi": (0, 1),
    "stridor": (0, 1),
    "wheeze+crackle": (1, 1),
}
"""SPRSound event type (lower case) -> (crackles, wheezes)."""

_ICBHI_NAME = re.compile(r"^(\d+)_([A-Za-z0-9]+)_([A-Za-z]+)_(sc|mc)_([A-Za-z0-9]+)$")
_ICBHI_DIAGNOSIS = "icbhi_challenge_diagnosis.txt"
_ICBHI_SPLIT = "icbhi_challenge_train_test.txt"
_FLAGS = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}
_SPLIT_WORDS = (
    ("inter", "inter"),
    ("intra", "intra"),
    ("train", "train"),
    ("valid", "valid"),
    ("val", "valid"),
    ("test", "test"),
)


@dataclass(frozen=True)
class Segment:
    """One usable annotation row: a cycle (ICBHI) or an event (SPRSound), times in seconds."""

    index: int
    start: float
    end: float
    crackles: int
    wheezes: int
    event_type: str = ""


@dataclass(frozen=True)
class Skip:
    """One line of ``skipped.csv``: the file concerned (relative to SRC), its recording, row index and reason."""

    source: str
    recording: str
    row: int | None
    reason: str


@dataclass
class Recording:
    """A recording's audio and annotation files, its parsed rows and the columns shared by its clips."""

    name: str
    audio: Path | None
    annotation: Path
    source: str
    audio_source: str
    columns: dict[str, str]
    segments: list[Segment] = field(default_factory=list)
    problems: list[Skip] = field(default_factory=list)

    def skip(self, row: int | None, reason: str, source: str | None = None) -> Skip:
        """A ``skipped.csv`` line for row ``row`` (None: the whole recording) of this recording's annotation."""
        return Skip(self.source if source is None else source, self.name, row, reason)


@dataclass
class PrepareResult:
    """What :func:`prepare_corpus` wrote.

    Attributes
    ----------
    kind : str
        ``icbhi`` or ``sprsound``.
    out : pathlib.Path
        The output directory, holding ``train/``, ``train.csv`` and ``skipped.csv``.
    clips : pandas.DataFrame
        The rows of ``train.csv``.
    skipped : pandas.DataFrame
        The rows of ``skipped.csv`` (columns source, recording, row, reason).
    recordings : int
        Annotated recordings found.
    cut : int
        Recordings whose clips were cut in this run.
    reused : int
        Recordings whose clips were already there and unchanged (the others gave no clip: no usable audio or rows).
    """

    kind: str
    out: Path
    clips: pd.DataFrame
    skipped: pd.DataFrame
    recordings: int
    cut: int
    reused: int


@dataclass(frozen=True)
class _Job:
    recording: Recording
    train_dir: Path
    previous: dict | None


@dataclass
class _Done:
    clips: list[tuple[Segment, str]]
    skips: list[Skip]
    state: dict | None
    reused: bool


def prepare_corpus(
    kind: str,
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    n_jobs: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> PrepareResult:
    """Cut the recordings of an ICBHI 2017 or SPRSound release into one clip per cycle or event.

    Parameters
    ----------
    kind : {"icbhi", "sprsound"}
        The release under ``src``.
    src : path
        The unpacked release, searched recursively. ICBHI: ``PID_REC_LOC_MODE_DEVICE.wav``
        with ``.txt`` cycle annotations (start end crackles wheezes), and optionally
        ``ICBHI_Challenge_diagnosis.txt`` and ``ICBHI_challenge_train_test.txt``.
        SPRSound: ``.wav`` recordings and same-named ``.json`` annotations
        (``record_annotation``, ``event_annotation`` with start/end in ms and type);
        the split is read from the folder names (``train``, ``inter``, ``intra``, ``valid``, ``test``).
    out : path
        Output directory (see the module docstring). Nothing under it is read as part of the
        release (when it is ``src`` itself, its ``train/`` and state file are left out).
    n_jobs : int, optional
        Processes cutting recordings in parallel (all cores when None).
    progress : callable, optional
        ``progress(stage, done, total)``, called once per recording.

    Returns
    -------
    PrepareResult

    Raises
    ------
    HmmclfError
        When ``kind`` is unknown or ``src`` holds no recording of that release.
    """
    from ..utils.parallel import parallel_map

    if kind not in KINDS:
        raise HmmclfError(f"unknown database {kind!r}; expected one of {', '.join(KINDS)}")
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise HmmclfError(f"{src}: no such directory (expected the unpacked {_TITLE[kind]} release)")
    files = _walk(src, out)
    recordings, skips = (_find_icbhi if kind == "icbhi" else _find_sprsound)(src, files)
    with directory_lock(out, "prepare"):
        state = _load_state(out / STATE_FILE, kind)
        train_dir = out / "train"
        train_dir.mkdir(parents=True, exist_ok=True)
        jobs = [_Job(rec, train_dir, state.get(rec.name)) for rec in recordings]
        if progress is not None:
            progress("prepare", 0, len(jobs))
        ticks = itertools.count(1)
        on_result = None if progress is None else (lambda _i, _r: progress("prepare", next(ticks), len(jobs)))
        results = parallel_map(_cut, jobs, n_jobs=n_jobs, on_result=on_result)
        rows, new_state = [], {}
        for rec, done in zip(recordings, results):
            skips += done.skips
            rows += [_row(kind, rec, seg, name) for seg, name in done.clips]
            if done.state is not None:
                new_state[rec.name] = done.state
        _remove_stale_clips(train_dir, state, new_state)
        extra = ("diagnosis", "split") if recordings and "split" in recordings[0].columns else ()
        columns = ICBHI_COLUMNS + extra if kind == "icbhi" else SPRSOUND_COLUMNS
        clips = pd.DataFrame(rows, columns=list(columns))
        skips.sort(key=lambda s: (s.recording, -1 if s.row is None else s.row, s.source, s.reason))
        skipped = pd.DataFrame([vars(s) for s in skips], columns=list(SKIPPED_COLUMNS)).astype({"row": "Int64"})
        for name, table in (("train.csv", clips), ("skipped.csv", skipped)):
            with atomic_open(out / name, "w", newline="", encoding="utf-8") as fh:
                table.to_csv(fh, index=False)
        payload = {"version": _STATE_VERSION, "kind": kind, "recordings": new_state}
        atomic_write_text(out / STATE_FILE, json.dumps(payload, sort_keys=True))
    reused = sum(done.reused for done in results)
    cut = sum(done.state is not None for done in results) - reused
    return PrepareResult(kind, out, clips, skipped, len(recordings), cut, reused)


def format_prepare_summary(result: PrepareResult) -> str:
    """Two lines for the terminal: clips per label and recordings cut/reused; rows skipped and why."""
    counts = result.clips["label"].value_counts()
    per_label = ", ".join(f"{state} {int(counts.get(state, 0))}" for state in LABELS)
    patients = result.clips["patient_id"].nunique()
    lines = [
        f"prepare {result.kind}: {len(result.clips)} clips from {result.recordings} recordings ({patients} patients) "
        + f"in {result.out / 'train'} and {result.out / 'train.csv'}: {per_label}; "
        + f"{result.cut} recordings cut, {result.reused} unchanged"
    ]
    if len(result.skipped):
        reasons = result.skipped["reason"].str.split(r" \(|: ", regex=True).str[0].value_counts()
        text = ", ".join(f"{n} {reason}" for reason, n in reasons.items())
        lines.append(f"skipped {len(result.skipped)} ({text}); reasons in {result.out / 'skipped.csv'}")
    else:
        lines.append("skipped none")
    return "\n".join(lines)


_TITLE = {"icbhi": "ICBHI 2017", "sprsound": "SPRSound"}
_EXPECTED = {
    "icbhi": "PID_REC_LOC_MODE_DEVICE.wav recordings with .txt cycle annotations, e.g. 101_1b1_Al_sc_Meditron.txt",
    "sprsound": ".wav recordings with same-named .json event annotations, e.g. train_wav/ + train_json/",
}


def _no_recordings(kind: str, src: Path, files: list[Path]) -> HmmclfError:
    other = "sprsound" if kind == "icbhi" else "icbhi"
    looks = (lambda f: f.suffix.lower() == ".json") if other == "sprsound" else _is_icbhi_annotation
    hint = f"; it looks like {_TITLE[other]} data: try 'hmmclf prepare {other}'" if any(map(looks, files)) else ""
    return HmmclfError(f"{src}: no {_TITLE[kind]} recordings found (expected {_EXPECTED[kind]}){hint}")


def _is_icbhi_annotation(path: Path) -> bool:
    return path.suffix.lower() == ".txt" and _ICBHI_NAME.match(path.stem) is not None


def _walk(src: Path, out: Path) -> list[Path]:
    """Every file under ``src`` (links followed once), sorted, without hidden files, __MACOSX and what we wrote.

    ``out`` is left out entirely unless it is ``src`` itself; then its ``train/`` and state file are.
    """
    real_src, real_out = os.path.realpath(src), os.path.realpath(out)
    skip_dirs = {os.path.join(real_out, "train")} | ({real_out} if real_out != real_src else set())
    found, seen = [], set()
    for root, dirs, names in os.walk(src, followlinks=True):
        real = os.path.realpath(root)
        if real in seen or real in skip_dirs:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__MACOSX"]
        found += [Path(root) / n for n in names if not n.startswith(".") and (real, n) != (real_out, STATE_FILE)]
    return sorted(found, key=lambda p: p.as_posix())


def _rel(path: Path, src: Path) -> str:
    return path.relative_to(src).as_posix()


def _pair(src: Path, annotations: list[Path], audios: list[Path], skips: list[Skip]):
    """(name, annotation, audio or None) per annotated recording; audio without annotation and duplicates -> skips."""
    by_ann: dict[str, list[Path]] = {}
    by_wav: dict[str, list[Path]] = {}
    for paths, table in ((annotations, by_ann), (audios, by_wav)):
        for path in paths:
            table.setdefault(path.stem, []).append(path)
    pairs = []
    for name in sorted(set(by_ann) | set(by_wav)):
        anns, wavs = by_ann.get(name, []), by_wav.get(name, [])
        if not anns:
            skips += [Skip(_rel(wav, src), name, None, "audio without annotation") for wav in wavs]
            continue
        ann = anns[0]
        # Of several copies, the audio nearest to the annotation in the folder tree.
        wav = min(wavs, key=lambda w: (-len(os.path.commonpath([w, ann])), w.as_posix())) if wavs else None
        for extra in anns[1:] + [w for w in wavs if w != wav]:
            skips.append(Skip(_rel(extra, src), name, None, f"duplicate recording name (using {_rel(ann, src)})"))
        pairs.append((name, ann, wav))
    return pairs


def _find_icbhi(src: Path, files: list[Path]) -> tuple[list[Recording], list[Skip]]:
    annotations = [f for f in files if _is_icbhi_annotation(f)]
    if not annotations:
        raise _no_recordings("icbhi", src, files)
    meta = {}
    for key, filename in (("diagnosis", _ICBHI_DIAGNOSIS), ("split", _ICBHI_SPLIT)):
        path = next((f for f in files if f.name.lower() == filename), None)
        if path is not None:
            pairs = (line.split() for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines())
            meta[key] = {p[0]: p[1] for p in pairs if len(p) == 2}
    skips: list[Skip] = []
    recordings = []
    for name, ann, wav in _pair(src, annotations, [f for f in files if f.suffix.lower() == ".wav"], skips):
        patient, _, location, mode, device = _ICBHI_NAME.match(name).groups()
        stem = name.rsplit("_", 1)[0]
        columns = {"patient_id": patient, "device": device, "chest_location": location, "acquisition_mode": mode}
        if meta:
            # The release's list names one recording with another device (226_1b1_Pl_sc_LittC2SE as ..._Meditron).
            splits = meta.get("split", {})
            split = splits.get(name) or next((v for k, v in splits.items() if k.rsplit("_", 1)[0] == stem), "")
            columns["diagnosis"] = meta.get("diagnosis", {}).get(patient, "")
            columns["split"] = split.lower()
        recordings.append(_parsed_recording(src, name, ann, wav, columns, _parse_icbhi))
    return recordings, skips


def _parsed_recording(
    src: Path, name: str, annotation: Path, audio: Path | None, columns: dict, parse: Callable[[Recording], None]
) -> Recording:
    """A recording of the release, its annotation read by ``parse`` (segments, or the problems found)."""
    rec = Recording(name, audio, annotation, _rel(annotation, src), _rel(audio, src) if audio else "", columns)
    parse(rec)
    return rec


def _parse_icbhi(rec: Recording) -> None:
    try:
        text = rec.annotation.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        rec.problems.append(rec.skip(None, f"unreadable annotation ({exc.strerror or exc})"))
        return
    index = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) != 4:
                raise ValueError
            start, end = float(fields[0]), float(fields[1])
            if not (math.isfinite(start) and math.isfinite(end)) or start < 0:
                raise ValueError
            rec.segments.append(Segment(index, start, end, _FLAGS[fields[2]], _FLAGS[fields[3]]))
        except (ValueError, KeyError):
            rec.problems.append(rec.skip(index, f"malformed annotation line (line {lineno}: {line.strip()[:60]!r})"))
        index += 1
    if index == 0:
        rec.problems.append(rec.skip(None, "no cycles annotated (empty annotation file)"))


def _split_of(parts: tuple[str, ...]) -> str:
    """The split named by the innermost folder that names one: train_wav -> train, inter_test_json -> inter."""
    for part in reversed(parts):
        words = re.split(r"[^a-z]+", part.lower())
        for word, split in _SPLIT_WORDS:
            if word in words:
                return split
    return ""


def _find_sprsound(src: Path, files: list[Path]) -> tuple[list[Recording], list[Skip]]:
    annotations = [f for f in files if f.suffix.lower() == ".json"]
    audios = [f for f in files if f.suffix.lower() == ".wav"]
    if not annotations or not audios:
        raise _no_recordings("sprsound", src, files)
    skips: list[Skip] = []
    recordings = []
    for name, ann, wav in _pair(src, annotations, audios, skips):
        split = _split_of(ann.relative_to(src).parts[:-1]) or (
            _split_of(wav.relative_to(src).parts[:-1]) if wav else ""
        )
        columns = {"patient_id": name.split("_")[0], "split": split}
        recordings.append(_parsed_recording(src, name, ann, wav, columns, _parse_sprsound))
    return recordings, skips


def _parse_sprsound(rec: Recording) -> None:
    try:
        data = json.loads(rec.annotation.read_text(encoding="utf-8-sig"))
        events = data["event_annotation"]
        if not isinstance(events, list):
            raise TypeError("event_annotation is not a list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        detail = "no event_annotation" if isinstance(exc, KeyError) else str(exc).splitlines()[0][:80]
        rec.problems.append(rec.skip(None, f"malformed annotation ({detail})"))
        rec.columns["record_annotation"] = ""
        return
    record = data.get("record_annotation", data.get("recording_annotation", ""))
    rec.columns["record_annotation"] = str(record)
    for index, event in enumerate(events):
        try:
            start, end = float(event["start"]) / 1000, float(event["end"]) / 1000
            if not (math.isfinite(start) and math.isfinite(end)) or start < 0:
                raise ValueError
            kind = str(event["type"]).strip()
        except (KeyError, TypeError, ValueError):
            rec.problems.append(rec.skip(index, f"malformed event ({json.dumps(event)[:60]})"))
            continue
        flags = SPRSOUND_TYPES.get(" ".join(kind.split()).lower())
        if flags is None:
            rec.problems.append(rec.skip(index, f"unknown event type ({kind!r})"))
            continue
        rec.segments.append(Segment(index, round(start, 6), round(end, 6), *flags, event_type=kind))
    if not events:
        rec.problems.append(rec.skip(None, f"no events annotated (record_annotation: {record or 'none'})"))


def _plan(rec: Recording, frames: int, rate: int) -> tuple[list[tuple[Segment, str, int, int]], list[Skip]]:
    """The segments that can be cut from ``frames`` samples at ``rate``, with sample bounds; the others as skips."""
    planned, skips = [], []
    for seg in rec.segments:
        first, last = round(seg.start * rate), round(seg.end * rate)
        if last <= first:
            skips.append(rec.skip(seg.index, f"zero or negative length (start {seg.start:.3f} s, end {seg.end:.3f} s)"))
        elif last > frames:
            skips.append(rec.skip(seg.index, f"end beyond the recording ({seg.end:.3f} s > {frames / rate:.3f} s)"))
        else:
            planned.append((seg, f"{rec.name}_{seg.index:03d}.wav", first, last))
    return planned, skips


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _cut(job: _Job) -> _Done:
    """Cut one recording's clips, or reuse them when sources and clips are as the previous run left them."""
    import soundfile as sf

    rec, problems = job.recording, list(job.recording.problems)
    if rec.audio is None:
        rows = [seg.index for seg in rec.segments] or ([None] if not problems else [])
        return _Done([], problems + [rec.skip(i, "annotation without audio") for i in rows], None, False)
    if not rec.segments:
        return _Done([], problems, None, False)
    source = _stamp(rec.audio) + _stamp(rec.annotation)
    prev = job.previous
    if _reusable(prev, source, job.train_dir):
        planned, skips = _plan(rec, prev["frames"], prev["rate"])
        if {name for _, name, _, _ in planned} == set(prev["clips"]):
            return _Done([(seg, name) for seg, name, _, _ in planned], problems + skips, prev, True)
    try:
        data, rate = sf.read(str(rec.audio), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError, TypeError) as exc:
        detail = re.sub(r"^Error opening .*?: ", "", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        rows = [seg.index for seg in rec.segments] or [None]
        unreadable = [rec.skip(i, f"unreadable recording ({detail})", rec.audio_source) for i in rows]
        return _Done([], problems + unreadable, None, False)
    mono = data.mean(axis=1, dtype="float32") if data.shape[1] > 1 else data[:, 0]
    planned, skips = _plan(rec, len(mono), rate)
    clips = {}
    for _, name, first, last in planned:
        with atomic_path(job.train_dir / name) as tmp:
            sf.write(str(tmp), mono[first:last], rate, subtype="PCM_16", format="WAV")
        clips[name] = _stamp(job.train_dir / name)
    state = {"source": source, "frames": len(mono), "rate": int(rate), "clips": clips}
    return _Done([(seg, name) for seg, name, _, _ in planned], problems + skips, state, False)


def _reusable(prev: object, source: list[int], train_dir: Path) -> bool:
    """Whether the previous run's entry matches these sources and its clips are still as it wrote them."""
    try:
        return (
            prev["source"] == source
            and isinstance(prev["frames"], int)
            and isinstance(prev["rate"], int)
            and prev["rate"] > 0
            and all(_stamp(train_dir / name) == st for name, st in prev["clips"].items())
        )
    except (KeyError, TypeError, AttributeError, OSError):
        return False


def _load_state(path: Path, kind: str) -> dict:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(payload, dict) or payload.get("version") != _STATE_VERSION or payload.get("kind") != kind:
        return {}
    recordings = payload.get("recordings")
    return recordings if isinstance(recordings, dict) else {}


def _remove_stale_clips(train_dir: Path, old: dict, new: dict) -> None:
    """Delete clips an earlier run cut that this run no longer produces (annotation changed, recording gone)."""
    keep = {name for entry in new.values() for name in entry["clips"]}
    for entry in old.values():
        clips = entry.get("clips") if isinstance(entry, dict) else None
        for name in clips if isinstance(clips, dict) else ():
            if name not in keep and "/" not in name and "\\" not in name:
                (train_dir / name).unlink(missing_ok=True)


def _row(kind: str, rec: Recording, seg: Segment, filename: str) -> dict:
    row = {
        "filename": filename,
        "recording": rec.name,
        "cycle" if kind == "icbhi" else "event": seg.index,
        "start": seg.start,
        "end": seg.end,
        "duration": round(seg.end - seg.start, 6),
        "crackles": seg.crackles,
        "wheezes": seg.wheezes,
        "label": LABELS[seg.crackles + 2 * seg.wheezes],
        "event_type": seg.event_type,
    }
    return {**row, **rec.columns}
