"""hmmclf prepare: ICBHI 2017 and SPRSound releases -> train/ + train.csv.

Generated recordings with hostile annotations, and the real samples when present.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from hmmclf.data.labels import read_labels
from hmmclf.data.prepare import ICBHI_COLUMNS, SPRSOUND_COLUMNS, format_prepare_summary, prepare_corpus
from hmmclf.utils.errors import HmmclfError

FORMATS = Path("/work/shared/data/formats")
SR = 4000


def _wav(path: Path, seconds: float, sr: int = SR, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A noise recording written as 16-bit PCM; returns the samples as read back (float)."""
    rng = np.random.default_rng(seed)
    data = (0.3 * rng.standard_normal((int(seconds * sr), channels))).clip(-0.9, 0.9)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sr, subtype="PCM_16")
    return sf.read(str(path), always_2d=True)[0]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def icbhi(tmp_path: Path) -> Path:
    """An ICBHI-style release: 2 good recordings (one stereo), hostile rows and files, metadata files."""
    src = tmp_path / "icbhi"
    db = src / "ICBHI_final_database"
    _wav(db / "101_1b1_Al_sc_Meditron.wav", 3.0)
    _write(
        db / "101_1b1_Al_sc_Meditron.txt",
        "0.1\t1.0\t0\t0\n1.0 2.0 1 0\n\n2.0\t2.9\t0\t1\n2.9\t3.5\t1\t1\n1.5\t1.5\t0\t0\n0.5 abc 0 0\n",
    )
    _wav(db / "102_1b1_Ar_sc_Litt3200.wav", 2.0, sr=8000, channels=2, seed=1)
    _write(db / "102_1b1_Ar_sc_Litt3200.txt", "0.0 1.0 1 1\r\n1.0 2.0 0 0\r\n")
    _wav(db / "103_1b1_Tc_mc_AKGC417L.wav", 1.0)  # audio without annotation
    _write(db / "104_1b1_Pr_sc_Meditron.txt", "0.1 0.5 0 0\n0.5 0.9 0 1\n")  # annotation without audio
    (db / "105_1b1_Al_sc_Meditron.wav").write_bytes(b"RIFF not really a wave file")
    _write(db / "105_1b1_Al_sc_Meditron.txt", "0.1 0.5 0 0\n")  # unreadable recording
    _write(db / "101_1b1_Al_sc_Meditron_events.txt", "0.2 0.3 crackle\n")  # not a cycle annotation: ignored
    _write(src / "README.txt", "not an annotation\n")
    _write(src / "ICBHI_Challenge_diagnosis.txt", "101\tURTI\n102\tHealthy\n")
    # As in the release, one recording is listed with another device name.
    _write(src / "ICBHI_challenge_train_test.txt", "101_1b1_Al_sc_Meditron\ttrain\r\n102_1b1_Ar_sc_Meditron\ttest\r\n")
    return src


def _event(start: int, end: int, kind: str) -> dict:
    return {"start": str(start), "end": str(end), "type": kind}


@pytest.fixture
def sprsound(tmp_path: Path) -> Path:
    """A SPRSound-style release: train and inter/intra test folders, hostile events and files."""
    src = tmp_path / "sprsound"
    events = [
        _event(100, 900, "Normal"),
        _event(1000, 1500, "Fine Crackle"),
        _event(1500, 2000, "Rhonchi"),
        _event(2000, 2500, "Wheeze+Crackle"),
        _event(2500, 2900, "Stridor"),
        _event(300, 600, "Squeak"),
        _event(2500, 3500, "Normal"),
        _event(1000, 1000, "Normal"),
        {"start": "x", "type": "Normal"},
    ]
    recordings = [
        ("train_json", "11111111_5.0_0_p1_1", "CAS & DAS", events),
        ("train_json", "22222222_3.0_1_p2_2", "Poor Quality", []),
        ("test_json/inter_test_json", "33333333_4.0_0_p3_3", "DAS", [_event(200, 1200, "Coarse Crackle")]),
        ("test_json/intra_test_json", "11111111_5.0_0_p1_4", "CAS", [_event(500, 1700, "Wheeze")]),
    ]
    for seed, (folder, name, record, evs) in enumerate(recordings):
        _write(src / folder / f"{name}.json", json.dumps({"record_annotation": record, "event_annotation": evs}))
        _wav(src / ("train_wav" if folder == "train_json" else "test_wav") / f"{name}.wav", 3.0, seed=seed)
    _wav(src / "train_wav" / "44444444_1.0_0_p1_5.wav", 1.0)  # audio without annotation
    _write(
        src / "train_json" / "55555555_1.0_0_p1_6.json",
        json.dumps({"record_annotation": "Normal", "event_annotation": [_event(0, 500, "Normal")]}),
    )
    _wav(src / "train_wav" / "66666666_1.0_0_p1_7.wav", 1.0)
    _write(src / "train_json" / "66666666_1.0_0_p1_7.json", "{not json")
    return src


def _reasons(out: Path) -> list[tuple[str, object, str]]:
    skipped = pd.read_csv(out / "skipped.csv", dtype=str, keep_default_na=False)
    return [(r.recording, r.row, r.reason.split(" (")[0]) for r in skipped.itertuples()]


def _check_clips(out: Path, src_audio: dict[str, tuple[np.ndarray, int]]) -> None:
    """Every clip: 16-bit mono wav, duration end - start within one sample, samples equal to the source's."""
    table = pd.read_csv(out / "train.csv")
    for row in table.itertuples():
        data, rate = sf.read(str(out / "train" / row.filename), always_2d=True)
        assert sf.info(str(out / "train" / row.filename)).subtype == "PCM_16" and data.shape[1] == 1
        assert abs(len(data) / rate - (row.end - row.start)) <= 1 / rate
        source, source_rate = src_audio[row.recording]
        assert rate == source_rate
        first = round(row.start * rate)
        expected = source[first : first + len(data)].mean(axis=1)
        assert np.abs(data[:, 0] - expected).max() <= 1 / 32768 + 1e-9


def test_icbhi_clips_columns_labels_and_skips(icbhi: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    calls = []
    result = prepare_corpus("icbhi", icbhi, out, n_jobs=1, progress=lambda *a: calls.append(a))
    table = pd.read_csv(out / "train.csv", dtype=str, keep_default_na=False)
    assert list(table.columns) == list(ICBHI_COLUMNS) + ["diagnosis", "split"]
    assert table["filename"].tolist() == [f"101_1b1_Al_sc_Meditron_00{i}.wav" for i in range(3)] + [
        "102_1b1_Ar_sc_Litt3200_000.wav",
        "102_1b1_Ar_sc_Litt3200_001.wav",
    ]
    assert table["label"].tolist() == ["normal", "crackle", "wheeze", "both", "normal"]
    assert table["cycle"].tolist() == ["0", "1", "2", "0", "1"]
    assert table[["diagnosis", "split"]].drop_duplicates().values.tolist() == [["URTI", "train"], ["Healthy", "test"]]
    assert table.iloc[3][["patient_id", "device", "chest_location", "acquisition_mode"]].tolist() == [
        "102",
        "Litt3200",
        "Ar",
        "sc",
    ]
    assert sorted(os.listdir(out / "train")) == sorted(table["filename"])
    assert _reasons(out) == [
        ("101_1b1_Al_sc_Meditron", "3", "end beyond the recording"),
        ("101_1b1_Al_sc_Meditron", "4", "zero or negative length"),
        ("101_1b1_Al_sc_Meditron", "5", "malformed annotation line"),
        ("103_1b1_Tc_mc_AKGC417L", "", "audio without annotation"),
        ("104_1b1_Pr_sc_Meditron", "0", "annotation without audio"),
        ("104_1b1_Pr_sc_Meditron", "1", "annotation without audio"),
        ("105_1b1_Al_sc_Meditron", "0", "unreadable recording"),
    ]
    db = icbhi / "ICBHI_final_database"
    _check_clips(
        out,
        {
            n: sf.read(str(db / f"{n}.wav"), always_2d=True)
            for n in ("101_1b1_Al_sc_Meditron", "102_1b1_Ar_sc_Litt3200")
        },
    )
    assert (result.recordings, result.cut, result.reused) == (4, 2, 0)
    assert calls[0] == ("prepare", 0, 4) and calls[-1] == ("prepare", 4, 4) and len(calls) == 5
    summary = format_prepare_summary(result)
    assert "5 clips from 4 recordings" in summary and "normal 2, crackle 1, wheeze 1, both 1" in summary
    assert "1 end beyond the recording" in summary and "2 annotation without audio" in summary

    labels = read_labels(out / "train.csv", data_dir=out / "train")
    assert labels.grouping.column == "patient_id" and labels.layout == "label"
    assert len(labels.rows) == 5 and labels.skipped.empty
    assert sorted(set(labels.rows["group"])) == ["101", "102"]


def test_sprsound_mapping_splits_and_skips(sprsound: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = prepare_corpus("sprsound", sprsound, out, n_jobs=1)
    table = pd.read_csv(out / "train.csv", dtype=str, keep_default_na=False)
    assert list(table.columns) == list(SPRSOUND_COLUMNS)
    got = table[["recording", "event", "label", "event_type", "split"]].values.tolist()
    assert got == [
        ["11111111_5.0_0_p1_1", "0", "normal", "Normal", "train"],
        ["11111111_5.0_0_p1_1", "1", "crackle", "Fine Crackle", "train"],
        ["11111111_5.0_0_p1_1", "2", "wheeze", "Rhonchi", "train"],
        ["11111111_5.0_0_p1_1", "3", "both", "Wheeze+Crackle", "train"],
        ["11111111_5.0_0_p1_1", "4", "wheeze", "Stridor", "train"],
        ["11111111_5.0_0_p1_4", "0", "wheeze", "Wheeze", "intra"],
        ["33333333_4.0_0_p3_3", "0", "crackle", "Coarse Crackle", "inter"],
    ]
    assert table["patient_id"].tolist() == ["11111111"] * 6 + ["33333333"]
    assert table.loc[1, ["start", "end", "duration", "record_annotation"]].tolist() == [
        "1.0",
        "1.5",
        "0.5",
        "CAS & DAS",
    ]
    assert _reasons(out) == [
        ("11111111_5.0_0_p1_1", "5", "unknown event type"),
        ("11111111_5.0_0_p1_1", "6", "end beyond the recording"),
        ("11111111_5.0_0_p1_1", "7", "zero or negative length"),
        ("11111111_5.0_0_p1_1", "8", "malformed event"),
        ("22222222_3.0_1_p2_2", "", "no events annotated"),
        ("44444444_1.0_0_p1_5", "", "audio without annotation"),
        ("55555555_1.0_0_p1_6", "0", "annotation without audio"),
        ("66666666_1.0_0_p1_7", "", "malformed annotation"),
    ]
    skipped = pd.read_csv(out / "skipped.csv", dtype=str, keep_default_na=False)
    assert "no events annotated (record_annotation: Poor Quality)" in skipped["reason"].tolist()
    assert skipped["source"].iloc[0] == "train_json/11111111_5.0_0_p1_1.json"
    audio = {n: sf.read(str(p), always_2d=True) for p in sprsound.rglob("*.wav") for n in [p.stem]}
    _check_clips(out, audio)
    assert result.recordings == 6  # every annotation file, with or without audio
    assert read_labels(out / "train.csv", data_dir=out / "train").grouping.column == "patient_id"


def test_rerun_reuses_finished_recordings_and_writes_the_same_table(icbhi: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare_corpus("icbhi", icbhi, out, n_jobs=1)
    first = {name: (out / name).read_bytes() for name in ("train.csv", "skipped.csv")}
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "train").iterdir()}
    again = prepare_corpus("icbhi", icbhi, out, n_jobs=1)
    assert (again.cut, again.reused) == (0, 2)
    assert {name: (out / name).read_bytes() for name in first} == first
    assert {p.name: p.stat().st_mtime_ns for p in (out / "train").iterdir()} == stamps

    # A changed annotation re-cuts that recording only; its clip that is no longer annotated goes away.
    ann = icbhi / "ICBHI_final_database" / "102_1b1_Ar_sc_Litt3200.txt"
    ann.write_text("0.0 1.0 1 1\n")
    os.utime(ann, ns=(1, 1))
    third = prepare_corpus("icbhi", icbhi, out, n_jobs=1)
    assert (third.cut, third.reused) == (1, 1)
    assert not (out / "train" / "102_1b1_Ar_sc_Litt3200_001.wav").exists()
    assert (out / "train" / "101_1b1_Al_sc_Meditron_000.wav").stat().st_mtime_ns == stamps[
        "101_1b1_Al_sc_Meditron_000.wav"
    ]
    assert len(third.clips) == 4

    # A clip deleted by hand is cut again.
    (out / "train" / "101_1b1_Al_sc_Meditron_001.wav").unlink()
    fourth = prepare_corpus("icbhi", icbhi, out, n_jobs=1)
    assert (out / "train" / "101_1b1_Al_sc_Meditron_001.wav").exists() and fourth.reused == 1


@pytest.mark.parametrize("inside", ["prepared", "."])
def test_output_inside_the_source_is_not_read_back(sprsound: Path, inside: str) -> None:
    out = sprsound / inside
    first = prepare_corpus("sprsound", sprsound, out, n_jobs=1)
    again = prepare_corpus("sprsound", sprsound, out, n_jobs=1)
    assert again.recordings == 6 and again.reused == 3 and again.clips.equals(first.clips)
    assert again.skipped.equals(first.skipped)


def test_a_source_with_neither_format_is_refused(tmp_path: Path, icbhi: Path, sprsound: Path) -> None:
    empty = tmp_path / "nothing"
    _write(empty / "notes.txt", "hello\n")
    _wav(empty / "sound.wav", 0.5)
    for kind in ("icbhi", "sprsound"):
        with pytest.raises(HmmclfError, match=f"{empty}: no (ICBHI 2017|SPRSound) recordings found"):
            prepare_corpus(kind, empty, tmp_path / "out")
    with pytest.raises(HmmclfError, match="looks like SPRSound data"):
        prepare_corpus("icbhi", sprsound, tmp_path / "out")
    with pytest.raises(HmmclfError, match="looks like ICBHI 2017 data"):
        prepare_corpus("sprsound", icbhi, tmp_path / "out")
    with pytest.raises(HmmclfError, match="no such directory"):
        prepare_corpus("icbhi", tmp_path / "missing", tmp_path / "out")
    with pytest.raises(HmmclfError, match="unknown database"):
        prepare_corpus("respiratory", icbhi, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not FORMATS.is_dir(), reason="/work/shared/data/formats not present")
def test_the_real_release_samples(tmp_path: Path) -> None:
    icbhi = prepare_corpus("icbhi", FORMATS / "icbhi", tmp_path / "icbhi", n_jobs=1)
    assert icbhi.clips["label"].value_counts().to_dict() == {"normal": 19, "wheeze": 14, "crackle": 4, "both": 1}
    assert icbhi.skipped.empty and icbhi.clips["patient_id"].nunique() == 4
    assert icbhi.clips.groupby("recording")["split"].first().to_dict() == {
        "101_1b1_Al_sc_Meditron": "test",
        "103_2b2_Ar_mc_LittC2SE": "train",
        "104_1b1_Ar_sc_Litt3200": "test",
        "151_3p2_Al_mc_AKGC417L": "test",
    }
    assert set(icbhi.clips["diagnosis"]) == {"URTI", "Asthma", "COPD"}
    spr = prepare_corpus("sprsound", FORMATS / "sprsound", tmp_path / "spr", n_jobs=1)
    assert spr.clips["label"].value_counts().to_dict() == {"normal": 11, "crackle": 3}
    assert set(spr.clips["split"]) == {"train"} and spr.clips["patient_id"].nunique() == 5
    assert spr.skipped["reason"].tolist() == ["no events annotated (record_annotation: Poor Quality)"]
    for result in (icbhi, spr):
        for row in result.clips.itertuples():
            info = sf.info(str(result.out / "train" / row.filename))
            assert abs(info.frames / info.samplerate - (row.end - row.start)) <= 1 / info.samplerate
