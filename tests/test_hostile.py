"""A hostile corpus driven through the CLI: every broken input is skipped or refused with a reason."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from click.testing import CliRunner
from conftest import build_corpus, make_signal, write_wav

from hmmclf.app.cli import main
from hmmclf.utils.files import directory_lock

EXPECTED_SKIPS = {
    "zero_bytes.wav": "empty file (zero bytes)",
    "truncated_header.wav": "cannot decode",
    "random_bytes.wav": "cannot decode",
    "text.wav": "cannot decode",
    "zero_samples.wav": "empty (zero samples)",
    "too_short.wav": "too short",
    "nan_samples.wav": "non-finite samples",
    "inf_samples.wav": "non-finite samples",
    "silent.wav": "silent",
    "ten_minutes.wav": "too long",
    "not_on_disk.wav": "missing file",
    "../outside.wav": "path leaves the data directory",
    "/etc/passwd": "absolute path",
    "unknown_label.wav": "unknown label 'rhonchi'",
    "contradictory.wav": "contradictory labels",
    "no_label.wav": "no label",
    "dup_conflict.wav": "duplicate rows with conflicting labels",
    "dup_same.wav": "duplicate row (first kept)",
}

UNUSUAL_BUT_VALID = [
    "pcm24.wav",
    "pcm32.wav",
    "float.wav",
    "stereo.wav",
    "six_channels.wav",
    "rate_2k.wav",
    "rate_48k.wav",
]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = build_corpus(tmp_path_factory.mktemp("hostile"), per_patient=2, patients=4)
    train = root / "train"
    rng = np.random.default_rng(5)
    (train / "zero_bytes.wav").write_bytes(b"")
    (train / "truncated_header.wav").write_bytes(b"RIFF\x24\x08\x00\x00WAVEfmt \x10\x00")
    (train / "random_bytes.wav").write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (train / "text.wav").write_text("this is a note, not audio\n" * 20)
    write_wav(train / "zero_samples.wav", np.zeros(0, dtype=np.float32), 4000)
    write_wav(train / "too_short.wav", make_signal("normal", 0.05, 4000, rng), 4000)
    bad = make_signal("normal", 1.0, 8000, rng)
    bad[100] = np.nan
    write_wav(train / "nan_samples.wav", bad, 8000, "FLOAT")
    bad = make_signal("normal", 1.0, 8000, rng)
    bad[5] = np.inf
    write_wav(train / "inf_samples.wav", bad, 8000, "FLOAT")
    write_wav(train / "silent.wav", np.zeros(8000, dtype=np.float32), 8000)
    with sf.SoundFile(str(train / "ten_minutes.wav"), "w", samplerate=4000, channels=1, subtype="PCM_16") as fh:
        for _ in range(60):
            fh.write(0.1 * rng.standard_normal(40000).astype(np.float32))
    write_wav(root / "outside.wav", make_signal("normal", 1.0, 4000, rng), 4000)
    for name in ("unknown_label.wav", "contradictory.wav", "no_label.wav", "dup_conflict.wav", "dup_same.wav"):
        write_wav(train / name, make_signal("normal", 1.0, 4000, rng), 4000)
    sig = make_signal("wheeze", 1.0, 16000, rng)
    write_wav(train / "pcm24.wav", sig, 16000, "PCM_24")
    write_wav(train / "pcm32.wav", sig, 16000, "PCM_32")
    write_wav(train / "float.wav", sig, 16000, "FLOAT")
    write_wav(train / "stereo.wav", np.stack([sig, sig], axis=1), 16000)
    write_wav(train / "six_channels.wav", np.stack([sig] * 6, axis=1), 16000)
    write_wav(train / "rate_2k.wav", make_signal("crackle", 1.0, 2000, rng), 2000)
    write_wav(train / "rate_48k.wav", make_signal("crackle", 1.0, 48000, rng), 48000)

    labels = pd.read_csv(root / "train.csv")
    extra = [
        (name, "P9", "normal")
        for name in [
            "zero_bytes.wav",
            "truncated_header.wav",
            "random_bytes.wav",
            "text.wav",
            "zero_samples.wav",
            "too_short.wav",
            "nan_samples.wav",
            "inf_samples.wav",
            "silent.wav",
            "ten_minutes.wav",
            "not_on_disk.wav",
            "../outside.wav",
            "/etc/passwd",
        ]
    ]
    extra += [
        ("unknown_label.wav", "P9", "rhonchi"),
        ("contradictory.wav", "P9", "normal+wheeze"),
        ("no_label.wav", "P9", ""),
        ("dup_conflict.wav", "P9", "normal"),
        ("dup_conflict.wav", "P9", "crackle"),
        ("dup_same.wav", "P9", "normal"),
        ("dup_same.wav", "P9", "normal"),
    ]
    extra += [(name, "P8", "wheeze" if "rate" not in name else "crackle") for name in UNUSUAL_BUT_VALID]
    labels = pd.concat([labels, pd.DataFrame(extra, columns=labels.columns)], ignore_index=True)
    # A BOM and ';' separators, as spreadsheets write them.
    text = labels.to_csv(index=False, sep=";")
    (root / "train.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    return root


def run(args, cwd):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, args)
    finally:
        os.chdir(old)


def test_extract_skips_every_broken_input_with_its_reason(hostile):
    result = run(["extract", "--jobs", "2"], hostile)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    skipped = pd.read_csv(hostile / "features" / "skipped.csv", keep_default_na=False)
    reasons = {}
    for file, reason in zip(skipped["file"], skipped["reason"]):
        reasons.setdefault(file, reason)
    for file, expected in EXPECTED_SKIPS.items():
        assert file in reasons, f"{file} not reported"
        assert reasons[file].startswith(expected), (file, reasons[file])
    index = pd.read_csv(hostile / "features" / "index.csv")
    for name in UNUSUAL_BUT_VALID + ["dup_same.wav"]:
        assert name in set(index["file"]), name
    assert len(index) == 32 + len(UNUSUAL_BUT_VALID) + 1
    from hmmclf.data.feature_store import load_feature_set

    features = load_feature_set(hostile / "features" / "features.npz")
    assert all(np.isfinite(s).all() for s in features.sequences)


def test_cv_train_and_predict_survive_the_hostile_corpus(hostile):
    result = run(["cv", "--folds", "2", "--states", "2", "--jobs", "1", "--out", "report"], hostile)
    assert result.exit_code == 0, result.output
    result = run(["train", "--states", "2"], hostile)
    assert result.exit_code == 0, result.output
    result = run(["predict", "train", "--format", "json"], hostile)
    assert result.exit_code == 1 and "Traceback" not in result.output
    entries = {os.path.basename(e["file"]): e for e in json.loads(result.stdout)}
    for name in ("zero_bytes.wav", "text.wav", "nan_samples.wav", "too_short.wav", "silent.wav", "ten_minutes.wav"):
        assert "error" in entries[name] and "class" not in entries[name], name
    for name in UNUSUAL_BUT_VALID:
        assert entries[name]["class"] in ("normal", "crackle", "wheeze", "both"), name
    # A path that does not exist is a user error (exit 2, one line naming it), not an error entry.
    result = run(["predict", "train/p0_normal_0.wav", "train/not_on_disk.wav", "--format", "json"], hostile)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == ["hmmclf: error: no such file or directory: train/not_on_disk.wav"]
    # A hostile directory: whatever is not audio is named on stderr, not predicted, not fatal.
    (hostile / "train" / "notes.txt").write_text("not audio")
    (hostile / "train" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    try:
        result = run(["predict", "train", "--format", "json"], hostile)
    finally:
        (hostile / "train" / "notes.txt").unlink()
        (hostile / "train" / ".DS_Store").unlink()
    assert result.exit_code == 1  # the broken clips
    names = {os.path.basename(e["file"]) for e in json.loads(result.stdout)}
    assert "notes.txt" not in names and ".DS_Store" not in names and "text.wav" in names
    assert "predict: skipped 1 file in train that is not audio (no extension libsndfile reads): notes.txt" in (
        result.stderr
    )
    assert "predict: skipped 1 hidden file in train (name starts with '.'): .DS_Store" in result.stderr


def test_tampered_models_through_the_cli(hostile, tmp_path):
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    np.savez(tmp_path / "evil.npz", meta=np.array([Payload()], dtype=object))
    result = run(["predict", "train/p0_normal_0.wav", "--model", str(tmp_path / "evil.npz")], hostile)
    assert result.exit_code == 2 and "model" in result.stderr and "Traceback" not in result.output
    assert not marker.exists()
    good = (hostile / "model.npz").read_bytes() if (hostile / "model.npz").exists() else None
    if good:
        (tmp_path / "truncated.npz").write_bytes(good[: len(good) // 3])
        result = run(["predict", "train/p0_normal_0.wav", "--model", str(tmp_path / "truncated.npz")], hostile)
        assert result.exit_code == 2 and "damaged" in result.stderr


def test_broken_label_files_are_one_line_errors(tmp_path):
    (tmp_path / "train").mkdir()
    for content, message in (
        (b"", "labels file is empty"),
        (b"\xef\xbb\xbfwho;what\nx;y\n", "no file column found (columns: who, what)"),
    ):
        (tmp_path / "train.csv").write_bytes(content)
        result = run(["extract"], tmp_path)
        assert result.exit_code == 2, result.output
        lines = [line for line in result.stderr.splitlines() if line.startswith("hmmclf: error:")]
        assert len(lines) == 1 and message in lines[0] and "train.csv" in lines[0]
        assert "Traceback" not in result.output


def test_a_second_extract_on_a_busy_directory_is_refused(hostile):
    with directory_lock(hostile / "busy", "extract"):
        result = run(["extract", "--out", "busy"], hostile)
    assert result.exit_code == 2 and "another hmmclf extract is writing here" in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train.csv").write_text("a,b\n1,2\n")
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(Exception, match="no file column"):
            CliRunner().invoke(main, ["--debug", "extract"], catch_exceptions=False)
    finally:
        os.chdir(old)
        os.environ.pop("HMMCLF_DEBUG", None)
