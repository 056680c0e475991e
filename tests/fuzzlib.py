"""Seeded mutation fuzzing of hmmclf's input readers (shared by tests/test_fuzz.py and scripts/fuzz_inputs.py).

Every case is made from ``random.Random(f"{target}:{seed}:{index}")`` so that a
failure is replayed from its (target, seed, index) alone. The invariant of every
reader: it returns its result or raises an :class:`hmmclf.utils.errors.HmmclfError`
(one line at the CLI, exit 2); any other exception is a finding.

Targets
-------
labels  ``read_labels`` on mutated labels files (layouts, encodings, quoting, odd rows,
        huge fields, byte flips, truncation, NUL bytes) with a data folder and a groups choice.
model   ``load_model`` on mutated model files (byte flips, truncation, swapped or retyped
        arrays, edited JSON metadata); a model that loads must also predict one clip.
cache   ``load_feature_set`` on mutated feature caches (same mutations).
audio   ``clip_features`` (``load_clip`` + features) on mutated WAV headers and bodies.
"""

from __future__ import annotations

import io
import json
import random
import struct
import zipfile
from pathlib import Path

import numpy as np

from hmmclf.utils.errors import HmmclfError

# ---------------------------------------------------------------- generic byte mutations


def flip_bytes(rng: random.Random, data: bytes, n: int | None = None) -> bytes:
    if not data:
        return data
    b = bytearray(data)
    for _ in range(n or rng.randint(1, 8)):
        i = rng.randrange(len(b))
        b[i] = rng.choice([b[i] ^ (1 << rng.randrange(8)), rng.randrange(256), 0, 0xFF])
    return bytes(b)


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data) + 1)] if data else data


def insert_bytes(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data) + 1)
    junk = rng.choice(
        [b"\x00", b"\r", b"\n", b'"', b",", b";", b"\t", b"\xff\xfe", b"\xef\xbb\xbf", bytes([rng.randrange(256)])]
    )
    return data[:i] + junk * rng.randint(1, 4) + data[i:]


def byte_mutation(rng: random.Random, data: bytes) -> bytes:
    for _ in range(rng.randint(1, 3)):
        data = rng.choice([flip_bytes, truncate, insert_bytes])(rng, data)
    return data


# ---------------------------------------------------------------- labels files

LAYOUTS = {
    "label": (["filename", "patient_id", "label"], lambda f, p, c: [f, p, c]),
    "icbhi": (
        ["file", "crackles", "wheezes"],
        lambda f, p, c: [f, str(int(c in ("crackle", "both"))), str(int(c in ("wheeze", "both")))],
    ),
    "onehot": (
        ["fname", "normal", "wheeze", "crackle"],
        lambda f, p, c: [
            f,
            str(int(c == "normal")),
            str(int(c in ("wheeze", "both"))),
            str(int(c in ("crackle", "both"))),
        ],
    ),
}
ODD_NAMES = ["", " ", "../x.wav", "/etc/passwd", "C:\\x.wav", "a\x00b.wav", "dir.wav", "loop.wav", "fifo.wav",
             "dangling.wav", "sub/../a0.wav", "ä.wav", "a0.wav\n", "\ud800.wav", "a0.wav ", "\\\\srv\\share\\a.wav",
             "x" * 300 + ".wav", "y/" * 2100 + "a.wav", "é" * 200 + ".wav", "a0.wav/extra"]  # fmt: skip
ODD_LABELS = ["", "rhonchi", "normal+crackle", "both", "crackles & wheezes", "NaN", "None", "1", "wheeze;crackle;",
              "normal normal", "\u00a0normal", "crackle/wheeze/", "and", "+", "BOTH"]  # fmt: skip
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1", "cp1252"]
GROUPS = ["auto", "none", "infer", "regex:^a(\\d)", "regex:(", "regex:a", "patient_id", "nosuchcolumn", None]


def make_labels_dir(root: Path) -> tuple[Path, list[str]]:
    """A data folder with a few real (empty-body) files and the odd entries the ODD_NAMES point at."""
    import os

    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    names = [f"a{i}.wav" for i in range(6)]
    for n in names:
        (data / n).write_bytes(b"RIFF")
    (data / "dir.wav").mkdir(exist_ok=True)
    if not (data / "loop.wav").is_symlink():
        os.symlink("loop.wav", data / "loop.wav")
    if not (data / "dangling.wav").is_symlink():
        os.symlink("nothere.wav", data / "dangling.wav")
    if not (data / "fifo.wav").exists():
        os.mkfifo(data / "fifo.wav")
    return data, names


def labels_case(rng: random.Random, names: list[str]) -> tuple[bytes, str | None, str]:
    """(file bytes, groups choice, description) of one labels case."""
    layout = rng.choice(list(LAYOUTS))
    header, row_of = LAYOUTS[layout]
    header = list(header)
    rows = []
    for _ in range(rng.randint(0, 8)):
        name = rng.choice(names) if rng.random() < 0.7 else rng.choice(ODD_NAMES)
        cls = rng.choice(["normal", "crackle", "wheeze", "both"])
        row = row_of(name, f"P{rng.randint(0, 3)}", cls)
        if layout == "label" and rng.random() < 0.2:
            row[2] = rng.choice(ODD_LABELS)
        if rng.random() < 0.1:
            row[rng.randrange(len(row))] = rng.choice(
                ["x" * rng.choice([5000, 70000]), "1" * 5000, "", "2", "-1", "0.5"]
            )
        if rng.random() < 0.1:
            row = row[: rng.randrange(len(row) + 1)] if rng.random() < 0.5 else row + ["extra"] * rng.randint(1, 3)
        rows.append(row)
    if rng.random() < 0.1:
        header = [h.upper() if rng.random() < 0.5 else f" {h} " for h in header]
    if rng.random() < 0.05:
        header = header + header[:1]  # duplicate column name
    if rng.random() < 0.05:
        rng.shuffle(header)
    sep = rng.choice([",", ",", ",", ";", "\t", "|", " "])
    quote_all = rng.random() < 0.2

    def cell(v: str) -> str:
        if quote_all or sep in v or '"' in v or "\n" in v:
            return '"' + v.replace('"', '""') + '"'
        return v

    newline = rng.choice(["\n", "\r\n", "\r"])
    lines = [sep.join(cell(h) for h in header)] + [sep.join(cell(v) for v in r) for r in rows]
    if rng.random() < 0.1:
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(["", sep * 3, '"', '"unterminated' + sep, "#comment"]))
    text = newline.join(lines) + (newline if rng.random() < 0.8 else "")
    encoding = rng.choice(ENCODINGS) if rng.random() < 0.3 else "utf-8"
    data = text.encode(encoding, errors="surrogatepass" if encoding.startswith("utf") else "replace")
    how = f"{layout} sep={sep!r} enc={encoding} rows={len(rows)}"
    r = rng.random()
    if r < 0.3:
        data = byte_mutation(rng, data)
        how += " +bytes"
    elif r < 0.35:
        data = data[:0]
    elif r < 0.45:
        data = truncate(rng, data)
        how += " +truncated"
    return data, rng.choice(GROUPS), how


def run_labels_case(rng: random.Random, workdir: Path, data: Path, names: list[str]):
    from hmmclf.data.labels import check_relative_path, read_labels
    from hmmclf.task.classes import CLASSES

    content, groups, how = labels_case(rng, names)
    path = workdir / "labels.csv"
    path.write_bytes(content)
    try:
        table = read_labels(path, data, groups=groups)
    except HmmclfError:
        return None
    # What came out is usable: relative paths to regular files, known classes, one row per file.
    assert len(table.rows) > 0
    for f in table.rows["file"]:
        assert check_relative_path(f) == f
        assert (data / f).is_file()
    assert set(table.rows["class"]) <= set(CLASSES)
    assert not table.rows["file"].duplicated().any()
    return how


# ---------------------------------------------------------------- npz files (model and cache)


def read_npz(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def write_npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


JSON_VALUES = [
    None, True, 0, -1, 1, 2, 3, 1.5, 1e308, float("nan"), "", "x", "argmax", [], [1], {}, {"a": 1},
    10**20, -(10**20), "normal", ["normal"], ["normal", "crackle", "wheeze", "both"], 64, 4000, 0.0,
]  # fmt: skip


def mutate_json(rng: random.Random, obj):
    """Edit one randomly chosen place of a JSON document: drop, retype, or change a value."""
    if isinstance(obj, dict) and obj and rng.random() < 0.8:
        key = rng.choice(list(obj))
        obj = dict(obj)
        r = rng.random()
        if r < 0.15:
            del obj[key]
        elif r < 0.5:
            obj[key] = rng.choice(JSON_VALUES)
        else:
            obj[key] = mutate_json(rng, obj[key])
        return obj
    if isinstance(obj, list) and obj and rng.random() < 0.8:
        obj = list(obj)
        i = rng.randrange(len(obj))
        if rng.random() < 0.3:
            del obj[i]
        else:
            obj[i] = mutate_json(rng, obj[i])
        return obj
    return rng.choice(JSON_VALUES)


def mutate_arrays(rng: random.Random, arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], str]:
    arrays = dict(arrays)
    keys = sorted(arrays)
    r = rng.random()
    if r < 0.35:
        try:
            meta = json.loads(str(arrays.get("meta", "{}")))
        except ValueError:  # already edited into something else by an earlier mutation
            meta = {}
        for _ in range(rng.randint(1, 3)):
            meta = mutate_json(rng, meta)
        text = json.dumps(meta) if rng.random() < 0.9 else json.dumps(meta)[: rng.randrange(50)]
        arrays["meta"] = np.array(text)
        return arrays, "meta edited"
    if r < 0.5:
        a, b = rng.sample(keys, 2)
        arrays[a], arrays[b] = arrays[b], arrays[a]
        return arrays, f"swapped {a} {b}"
    if r < 0.6:
        del arrays[rng.choice(keys)]
        return arrays, "array deleted"
    key = rng.choice(keys)
    arr = arrays[key]
    choice = rng.randrange(9)
    if choice == 0:
        arrays[key] = arr.astype(np.float32) if arr.dtype.kind == "f" else np.zeros(arr.shape)
    elif choice == 1 and arr.size and arr.dtype.kind == "f":
        arr = arr.copy()
        arr.flat[rng.randrange(arr.size)] = rng.choice([np.nan, np.inf, -np.inf, 0.0, -1.0, 1e300])
        arrays[key] = arr
    elif choice == 2:
        arrays[key] = arr.reshape(-1) if arr.ndim != 1 else arr[: max(0, len(arr) - 1)]
    elif choice == 3:
        arrays[key] = np.array([], dtype=arr.dtype)
    elif choice == 4:
        arrays[key] = np.array(rng.choice(["x", 1, 1.5, True]))
    elif choice == 5 and arr.size and arr.dtype.kind in "iu":
        arr = arr.copy()
        arr.flat[rng.randrange(arr.size)] = rng.choice([0, -1, 2**40, np.iinfo(arr.dtype).max])
        arrays[key] = arr
    elif choice == 6:
        arrays[key] = np.concatenate([arr.reshape(-1), arr.reshape(-1)]) if arr.ndim else arr
    elif choice == 7:
        arrays[key] = arr.astype(str) if arr.dtype.kind != "U" else np.zeros(arr.shape, dtype=np.float64)
    else:
        arrays[key] = np.zeros((0,) + arr.shape[1:], dtype=arr.dtype) if arr.ndim else arr
    return arrays, f"array {key} op{choice}"


def npz_case(rng: random.Random, original: bytes, arrays: dict[str, np.ndarray]) -> tuple[bytes, str]:
    r = rng.random()
    if r < 0.15:
        return flip_bytes(rng, original), "byte flips"
    if r < 0.25:
        return truncate(rng, original), "truncated"
    if r < 0.3:
        # Flip bytes inside one member's data only (the zip directory stays valid, CRC may not).
        return flip_bytes(rng, original, 1), "one flip"
    mutated, how = arrays, []
    for _ in range(rng.randint(1, 3)):
        mutated, h = mutate_arrays(rng, mutated)
        how.append(h)
    return write_npz(mutated), "; ".join(how)


def run_model_case(rng: random.Random, workdir: Path, original: bytes, arrays, probe: list[np.ndarray]):
    from hmmclf.model.model_io import load_model

    content, how = npz_case(rng, original, arrays)
    path = workdir / "model.npz"
    path.write_bytes(content)
    try:
        model, config = load_model(path)
    except HmmclfError:
        return None
    # A model that loads must be usable: predictions for a clip of its feature width.
    x = [np.asarray(p[:, : model.n_features_in_], dtype=np.float32) for p in probe]
    if x[0].shape[1] == model.n_features_in_:
        model.predict(x)
    return how


def run_cache_case(rng: random.Random, workdir: Path, original: bytes, arrays):
    from hmmclf.data.feature_store import load_feature_set

    content, how = npz_case(rng, original, arrays)
    path = workdir / "features.npz"
    path.write_bytes(content)
    try:
        features = load_feature_set(path)
    except HmmclfError:
        return None
    assert len(features.sequences) == len(features.files)
    features.counts()
    features.describe_groups()
    return how


# ---------------------------------------------------------------- audio


def wav_bytes(rng: random.Random) -> bytes:
    import soundfile as sf

    sr = rng.choice([2000, 4000, 8000, 16000, 44100])
    n = int(sr * rng.choice([0.3, 1.0]))
    t = np.arange(n) / sr
    x = (
        0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(rng.randrange(1000)).standard_normal(n)
    ).astype(np.float32)
    channels = rng.choice([1, 2])
    if channels == 2:
        x = np.stack([x, x], axis=1)
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=rng.choice(["WAV", "WAV", "FLAC"]), subtype=rng.choice(["PCM_16", "PCM_16", "PCM_24"]))
    return buf.getvalue()


WAV_FIELDS = [(4, "<I"), (16, "<I"), (20, "<H"), (22, "<H"), (24, "<I"), (28, "<I"), (32, "<H"), (34, "<H"), (40, "<I")]


def audio_case(rng: random.Random) -> tuple[bytes, str]:
    data = wav_bytes(rng)
    r = rng.random()
    if r < 0.45 and data[:4] == b"RIFF":
        b = bytearray(data)
        offset, fmt = rng.choice(WAV_FIELDS)
        size = struct.calcsize(fmt)
        value = rng.choice([0, 1, 2, 3, 0xFFFF, 0xFFFFFFFF, 0x7FFFFFFF, 6, 8, 64, 96000, 10**6])
        b[offset : offset + size] = struct.pack(fmt, value & (0xFFFF if fmt == "<H" else 0xFFFFFFFF))
        return bytes(b), f"header field @{offset}={value}"
    if r < 0.7:
        return flip_bytes(rng, data[:64], rng.randint(1, 6)) + data[64:], "header flips"
    if r < 0.85:
        return truncate(rng, data), "truncated"
    return byte_mutation(rng, data), "bytes"


def run_audio_case(rng: random.Random, workdir: Path):
    from hmmclf.data.extraction import clip_features
    from hmmclf.data.features import FeatureConfig
    from hmmclf.utils.errors import AudioError

    content, how = audio_case(rng)
    path = workdir / "clip.wav"
    path.write_bytes(content)
    try:
        result = clip_features(str(path), FeatureConfig(), max_seconds=30)
    except AudioError:
        return None
    assert np.isfinite(result.features).all()
    return how


def zip_ok(data: bytes) -> bool:  # pragma: no cover - a helper for debugging findings
    try:
        zipfile.ZipFile(io.BytesIO(data)).testzip()
        return True
    except Exception:  # noqa: BLE001
        return False
