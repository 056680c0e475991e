import json
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import build_corpus, make_signal, write_wav

from hmmclf.data.extraction import extract_corpus
from hmmclf.data.feature_store import load_feature_set, save_feature_set
from hmmclf.data.features import FeatureConfig
from hmmclf.utils.errors import BusyError, CacheError
from hmmclf.utils.files import directory_lock


def test_extract_round_trip_and_reuse(corpus, tmp_path):
    out = tmp_path / "features"
    first = extract_corpus(corpus / "train", corpus / "train.csv", out, n_jobs=1)
    assert len(first.features) == 32 and first.computed == 32 and first.reused == 0
    assert first.features.counts() == {"normal": 8, "crackle": 8, "wheeze": 8, "both": 8}
    assert set(first.features.original_rates.tolist()) == {4000, 8000, 16000, 44100}
    loaded = load_feature_set(out / "features.npz")
    assert loaded.complete and loaded.files == first.features.files
    for a, b in zip(loaded.sequences, first.features.sequences):
        np.testing.assert_array_equal(a, b)
    assert (out / "index.csv").exists() and (out / "skipped.csv").exists()

    # Change one clip: only it is recomputed.
    rng = np.random.default_rng(9)
    write_wav(corpus / "train" / "p0_normal_0.wav", make_signal("normal", 1.0, 4000, rng), 4000)
    second = extract_corpus(corpus / "train", corpus / "train.csv", out, n_jobs=1)
    assert (second.computed, second.reused) == (1, 31)

    # Another feature config recomputes everything.
    third = extract_corpus(corpus / "train", corpus / "train.csv", out, config=FeatureConfig(n_mfcc=10), n_jobs=1)
    assert third.computed == 32 and "feature config changed" in " ".join(third.notes)


def test_parallel_extraction_matches_serial(corpus, tmp_path):
    serial = extract_corpus(corpus / "train", corpus / "train.csv", tmp_path / "a", n_jobs=1).features
    parallel = extract_corpus(corpus / "train", corpus / "train.csv", tmp_path / "b", n_jobs=2, chunk_size=5).features
    assert serial.files == parallel.files
    for a, b in zip(serial.sequences, parallel.sequences):
        np.testing.assert_array_equal(a, b)


def test_unusable_clips_are_skipped_with_reasons(corpus, tmp_path):
    (corpus / "train" / "broken.wav").write_bytes(b"not a wav")
    (corpus / "train" / "empty.wav").write_bytes(b"")
    write_wav(corpus / "train" / "short.wav", make_signal("normal", 0.05, 4000, np.random.default_rng(0)), 4000)
    with open(corpus / "train.csv", "a") as fh:
        fh.write("broken.wav,P0,normal\nempty.wav,P0,normal\nshort.wav,P0,normal\nmissing.wav,P1,normal\n")
    result = extract_corpus(corpus / "train", corpus / "train.csv", tmp_path / "f", n_jobs=1)
    reasons = dict(zip(result.skipped["file"], result.skipped["reason"]))
    assert reasons["broken.wav"].startswith("cannot decode")
    assert reasons["empty.wav"] == "empty file (zero bytes)"
    assert reasons["short.wav"].startswith("too short")
    assert reasons["missing.wav"] == "missing file"
    assert len(result.features) == 32
    on_disk = (tmp_path / "f" / "skipped.csv").read_text()
    assert "broken.wav" in on_disk and "missing.wav" in on_disk


def test_damaged_and_foreign_caches_are_refused(corpus, tmp_path):
    out = tmp_path / "f"
    features = extract_corpus(corpus / "train", corpus / "train.csv", out, n_jobs=1).features
    path = out / "features.npz"
    data = path.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CacheError, match="damaged"):
        load_feature_set(tmp_path / "trunc.npz")
    np.savez(tmp_path / "foreign.npz", x=np.zeros(3))
    with pytest.raises(CacheError, match="not an hmmclf feature cache"):
        load_feature_set(tmp_path / "foreign.npz")
    np.savez(tmp_path / "objects.npz", frames=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CacheError):
        load_feature_set(tmp_path / "objects.npz")
    # Inconsistent lengths.
    features.sequences[0] = features.sequences[0][:, :5]
    with pytest.raises(ValueError):
        np.concatenate(features.sequences)
    with pytest.raises(CacheError, match="no feature cache"):
        load_feature_set(tmp_path / "none.npz")


def test_tampered_meta_and_nan_frames(corpus, tmp_path):
    out = tmp_path / "f"
    features = extract_corpus(corpus / "train", corpus / "train.csv", out, n_jobs=1).features
    arrays = dict(np.load(out / "features.npz", allow_pickle=False))
    meta = json.loads(str(arrays["meta"]))
    meta["config"]["n_mfcc"] = 20
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "meta.npz", **arrays)
    with pytest.raises(CacheError, match="fingerprint"):
        load_feature_set(tmp_path / "meta.npz")
    features.sequences[0] = features.sequences[0].copy()
    features.sequences[0][0, 0] = np.nan
    save_feature_set(features, tmp_path / "nan.npz")
    with pytest.raises(CacheError, match="non-finite"):
        load_feature_set(tmp_path / "nan.npz")


def test_directory_lock_refuses_a_second_writer(tmp_path):
    with directory_lock(tmp_path, "extract"):
        with pytest.raises(BusyError, match="another hmmclf extract"):
            with directory_lock(tmp_path, "extract"):
                pass
    with directory_lock(tmp_path, "extract"):  # released again
        pass


def test_kill_and_resume(tmp_path):
    """A killed extraction leaves a loadable checkpoint (or nothing) and the next run finishes."""
    root = build_corpus(tmp_path / "c", per_patient=6, patients=4, seconds=2.0)
    out = tmp_path / "f"
    script = (
        "import sys; from hmmclf.data.extraction import extract_corpus; "
        f"extract_corpus({str(root / 'train')!r}, {str(root / 'train.csv')!r}, {str(out)!r}, n_jobs=1, "
        "chunk_size=2, checkpoint_seconds=0.0)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    while not (out / "features.npz").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    checkpointed = 0
    if (out / "features.npz").exists():
        partial = load_feature_set(out / "features.npz")  # never half-written
        checkpointed = len(partial)
        assert checkpointed <= 96
    leftovers = [p.name for p in out.iterdir() if p.name.endswith(".tmp.npz")] if out.exists() else []
    for name in leftovers:  # a temp file may remain after kill -9; it is never read
        assert name.startswith(".features.npz.")
    result = extract_corpus(root / "train", root / "train.csv", out, n_jobs=1)
    assert len(result.features) == 96 and result.features.complete
    assert result.reused >= checkpointed  # resumed, not restarted
    assert result.reused + result.computed == 96


def test_unreadable_clip_is_skipped_with_its_reason(corpus, tmp_path, monkeypatch):
    import hmmclf.data.extraction as cache_module

    real_sha1 = cache_module.file_sha1

    def refuse_one(path):
        if str(path).endswith("p0_normal_0.wav"):
            raise PermissionError(13, "Permission denied")
        return real_sha1(path)

    monkeypatch.setattr(cache_module, "file_sha1", refuse_one)
    result = extract_corpus(corpus / "train", corpus / "train.csv", tmp_path / "f", n_jobs=1)
    skipped = dict(zip(result.skipped["file"], result.skipped["reason"]))
    assert skipped["p0_normal_0.wav"] == "cannot read: Permission denied"
    assert "p0_normal_0.wav" not in result.features.files and len(result.features) == 31
