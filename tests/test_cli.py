import json
import os
import re

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from click.testing import CliRunner
from conftest import build_corpus, make_signal

from hmmclf.app.cli import main
from hmmclf.app.output import format_fit_report
from hmmclf.app.pipeline import audio_suffixes, list_clips
from hmmclf.task.classes import CLASSES


@pytest.fixture
def runner():
    return CliRunner()


def invoke(runner, args, cwd):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(main, args, catch_exceptions=False)
    finally:
        os.chdir(old)


def test_end_to_end_in_the_take_home_layout(runner, corpus):
    (corpus / "train" / "broken.wav").write_bytes(b"garbage")
    with open(corpus / "train.csv", "a") as fh:
        fh.write("broken.wav,P0,normal\n")
    result = invoke(runner, ["extract", "--jobs", "1"], corpus)
    assert result.exit_code == 0, result.output
    assert "32 clips usable" in result.output and "1 skipped" in result.output
    skipped = pd.read_csv(corpus / "features" / "skipped.csv")
    assert skipped["file"].tolist() == ["broken.wav"]

    result = invoke(runner, ["cv", "--folds", "2", "--states", "2", "--jobs", "1", "--out", "reports/r1"], corpus)
    assert result.exit_code == 0, result.output
    report = json.loads((corpus / "reports" / "r1" / "report.json").read_text())
    for key in ("score", "sensitivity", "specificity", "per_class", "confusion_matrix", "folds", "baseline", "config"):
        assert key in report
    assert report["groups"]["kind"] != "none" and report["folds"][0]["test_groups"]
    assert report["baseline"]["score"] == 0.5
    for name in ("report.md", "confusion.png", "predictions.csv"):
        assert (corpus / "reports" / "r1" / name).stat().st_size > 100
    assert "Score" in result.output and "always normal" in result.output
    # Reports are never overwritten.
    again = invoke(runner, ["cv", "--folds", "2", "--out", "reports/r1"], corpus)
    assert again.exit_code == 2 and "never overwritten" in again.output

    result = invoke(runner, ["train", "--states", "2"], corpus)
    assert result.exit_code == 0, result.output
    assert (corpus / "model.npz").exists() and (corpus / "model.json").exists()

    result = invoke(runner, ["predict", "train/p0_wheeze_0.wav", "--format", "json"], corpus)
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.output)
    assert set(entry) == {"file", "labels", "class", "log_likelihood", "posterior"}
    assert sum(entry["posterior"].values()) == pytest.approx(1.0, abs=1e-4)

    result = invoke(runner, ["predict", "train", "--format", "json"], corpus)
    assert result.exit_code == 1  # the broken clip
    entries = json.loads(result.stdout)
    assert len(entries) == 33
    broken = [e for e in entries if "error" in e]
    assert len(broken) == 1 and broken[0]["file"].endswith("broken.wav")
    classes = {e["class"] for e in entries if "class" in e}
    assert classes <= {"normal", "crackle", "wheeze", "both"}

    result = invoke(runner, ["predict", "train/p1_both_0.wav", "--format", "csv"], corpus)
    assert result.output.splitlines()[0].startswith("file,labels,class")
    result = invoke(runner, ["predict", "train/p1_both_0.wav"], corpus)
    assert "p1_both_0.wav" in result.output


def test_cv_extracts_when_the_cache_is_missing(runner, corpus):
    result = invoke(runner, ["cv", "--folds", "2", "--states", "2", "--jobs", "1", "--errors", "0"], corpus)
    assert result.exit_code == 0, result.output
    assert (corpus / "features" / "features.npz").exists()
    assert len(list((corpus / "reports").glob("cv-*/report.json"))) == 1


def test_user_errors_are_one_line(runner, tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train.csv").write_text("name,foo\na,b\n")
    result = invoke(runner, ["extract"], tmp_path)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("hmmclf: error:")]
    assert len(errors) == 1 and "no file column" in errors[0] and "train.csv" in errors[0]
    assert "Traceback" not in result.output

    (tmp_path / "x.wav").write_bytes(b"RIFF")  # exists: the model is what is missing
    result = invoke(runner, ["predict", "x.wav", "--model", "nope.npz"], tmp_path)
    assert result.exit_code == 2 and "no model file" in result.output

    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04garbage")
    result = invoke(runner, ["predict", "x.wav", "--model", "bad.npz"], tmp_path)
    assert result.exit_code == 2 and "damaged" in result.output and "Traceback" not in result.output

    result = invoke(runner, ["extract", "--data", "nowhere"], tmp_path)
    assert result.exit_code == 2 and "data directory not found" in result.output


def test_without_patients_groups_are_inferred_and_none_warns_loudly(runner, corpus):
    labels = pd.read_csv(corpus / "train.csv").drop(columns=["patient_id"])
    labels.to_csv(corpus / "train.csv", index=False)
    result = invoke(
        runner, ["cv", "--folds", "2", "--states", "2", "--jobs", "1", "--errors", "0", "--out", "r"], corpus
    )
    assert result.exit_code == 0, result.output
    assert "from the audio, by clustering the clips' recording signatures" in result.output
    report = json.loads((corpus / "r" / "report.json").read_text())
    assert report["groups"]["kind"] == "inferred" and report["groups"]["n_groups"] >= 2
    assert set(pd.read_csv(corpus / "r" / "predictions.csv")["group_source"]) == {"inferred"}
    assert report["leakage"]["grouped"] and "score_plain_folds" in report["leakage"]
    # The cache exists now; --groups none must still take effect.
    result = invoke(
        runner,
        ["cv", "--folds", "2", "--states", "2", "--jobs", "1", "--errors", "0", "--groups", "none", "--out", "r2"],
        corpus,
    )
    assert result.exit_code == 0, result.output
    assert "NOT grouped" in result.output and "LEAKAGE" in result.output
    assert "NOT grouped" in (corpus / "r2" / "report.md").read_text()
    assert json.loads((corpus / "r2" / "report.json").read_text())["groups"]["kind"] == "none"


def test_demo_is_far_above_chance(runner, tmp_path):
    result = invoke(runner, ["demo", "demo", "--jobs", "1"], tmp_path)
    assert result.exit_code == 0, result.output
    # The training line gives the training step alone, not the time since the demo started.
    trained = float(re.search(r"model trained on all clips in ([0-9.]+) s", result.output).group(1))
    done = re.search(r"demo: done in ([0-9.]+) s \(([^)]*)\)", result.output)
    stages = {name: float(value) for name, value in re.findall(r"(\w+) ([0-9.]+) s", done.group(2))}
    assert set(stages) == {"synthesis", "extract", "cv", "train", "predict"}
    assert trained == stages["train"]
    assert trained <= float(done.group(1)) - stages["cv"] - stages["extract"] + 0.15
    assert sum(stages.values()) <= float(done.group(1)) + 0.3
    reports = list((tmp_path / "demo" / "reports").glob("cv-*/report.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    # Chance (class-prior random) is about 25; always-normal is 50.
    assert report["score"] > 0.7 and report["sensitivity"] > 0.45 and report["specificity"] > 0.6
    assert report["score"] > report["baseline"]["score"] + 0.2
    assert "broken_000.wav" in (tmp_path / "demo" / "features" / "skipped.csv").read_text()
    assert "ERROR: cannot decode" in result.output


# ---------------------------------------------------------------- predict: listing, exit codes


def test_every_format_libsndfile_reads_is_listed():
    suffixes = audio_suffixes()
    for name in sf.available_formats():
        if name != "RAW":  # header-less: not decodable without being told its format
            assert f".{name.lower()}" in suffixes, name
    for alias in (".wav", ".wave", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".au", ".w64", ".rf64"):
        assert alias in suffixes, alias
    if "MP3" in sf.available_formats():
        assert {".mp3", ".mpeg"} <= suffixes
    if "OPUS" in sf.available_subtypes("OGG"):
        assert ".opus" in suffixes
    for other in (".txt", ".png", ".csv", ".raw", ".m4a", ".npz", ""):
        assert other not in suffixes, other


def test_a_directory_listing_names_what_it_skipped_and_why(tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile reads no MP3")
    folder = tmp_path / "clips"
    (folder / "sub").mkdir(parents=True)
    # Names only: the listing is checked, not the decoding.
    for name in ("b.mp3", "a.WAV", "c.aiff", "d.ogg", "e.wave", "f.flac", "notes.txt", "x.png", "README", ".DS_Store"):
        (folder / name).write_bytes(b"not decoded here")
    given = tmp_path / "given.txt"
    given.write_text("a file given by name is kept as given")
    listing = list_clips([folder, given])
    assert [p.name for p in listing.clips] == ["a.WAV", "b.mp3", "c.aiff", "d.ogg", "e.wave", "f.flac", "given.txt"]
    not_audio = "that are not audio (no extension libsndfile reads)"
    assert listing.notes() == [
        f"predict: skipped 3 files in {folder} {not_audio}: README, notes.txt, x.png",
        f"predict: skipped 1 hidden file in {folder} (name starts with '.'): .DS_Store",
        f"predict: skipped 1 folder in {folder} (not searched: give a folder as a path of its own): sub/",
    ]
    assert list_clips([folder / "a.WAV"]).notes() == []


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A corpus with a model trained by the CLI with n_iter = 1 (fast; never "converged")."""
    root = build_corpus(tmp_path_factory.mktemp("trained"))
    (root / "quick.toml").write_text('name = "quick"\ndescription = "one EM step"\n[model]\nn_states = 2\nn_iter = 1\n')
    result = invoke(CliRunner(), ["train", "--config", "quick.toml", "--jobs", "1"], root)
    assert result.exit_code == 0, result.output
    return root, result


def _write_formats(folder, rng):
    """The same kind of clip in several formats; MP3 when this libsndfile writes it, else AIFF."""
    folder.mkdir()
    signal = make_signal("wheeze", 1.0, 16000, rng)
    written = []
    for name, options in (
        ("clip.mp3", {"format": "MP3"}),
        ("clip.ogg", {"format": "OGG"}),
        ("clip.flac", {"format": "FLAC"}),
        ("clip.aiff", {"format": "AIFF"}),
    ):
        try:
            sf.write(str(folder / name), signal, 16000, **options)
        except (sf.LibsndfileError, ValueError, TypeError):
            continue
        written.append(name)
    return written


def test_predict_reads_every_audio_file_in_a_directory_and_says_what_it_skipped(trained, tmp_path):
    root, _ = trained
    written = _write_formats(root / "mixed", np.random.default_rng(3))
    assert {"clip.flac", "clip.ogg"} <= set(written)
    (root / "mixed" / "notes.txt").write_text("not audio")
    (root / "mixed" / "x.png").write_bytes(b"\x89PNG")
    result = invoke(CliRunner(), ["predict", "mixed", "--format", "json", "--jobs", "1"], root)
    assert result.exit_code == 0, result.output
    entries = {os.path.basename(e["file"]): e for e in json.loads(result.stdout)}
    assert sorted(entries) == sorted(written)
    for name in written:
        assert entries[name]["class"] in CLASSES, entries[name]
    assert (
        "predict: skipped 2 files in mixed that are not audio (no extension libsndfile reads): notes.txt, x.png"
        in result.stderr
    )
    if "clip.mp3" in written:  # a directory now reads what a single path always did
        single = invoke(CliRunner(), ["predict", "mixed/clip.mp3", "--format", "json"], root)
        assert single.exit_code == 0 and json.loads(single.stdout)[0]["class"] == entries["clip.mp3"]["class"]


def test_predict_missing_path_is_a_user_error_and_an_undecodable_clip_an_error_entry(trained):
    root, _ = trained
    result = invoke(CliRunner(), ["predict", "train/p0_normal_0.wav", "nosuch.wav", "--format", "json"], root)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == ["hmmclf: error: no such file or directory: nosuch.wav"]

    (root / "broken.wav").write_bytes(b"RIFF garbage")
    result = invoke(CliRunner(), ["predict", "train/p0_normal_0.wav", "broken.wav", "--format", "json"], root)
    assert result.exit_code == 1
    good, broken = json.loads(result.stdout)
    assert good["class"] in CLASSES and broken["error"].startswith("cannot decode")
    assert "1 of 2 clips could not be read" in result.stderr

    empty = root / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    result = invoke(CliRunner(), ["predict", "empty"], root)
    assert result.exit_code == 2 and "no audio files found in empty" in result.stderr
    assert "notes.txt" in result.stderr

    text = " ".join(invoke(CliRunner(), ["predict", "--help"], root).output.split())
    assert "exit code 2" in text and "exit code is 1" in text and "not recursively" in text


# ---------------------------------------------------------------- train, cv and demo texts


def test_train_explains_not_converged(trained):
    _, result = trained
    assert "NOT converged (limit reached)" in result.stderr
    assert "NOT converged means EM stopped at its limit of 1 iterations" in result.stderr
    assert "already reflects it" in result.stderr


def test_fit_report_explains_not_converged_only_when_a_class_did_not_converge():
    def fit_report(converged):
        return {
            name: {"clips": 4, "frames": 100, "n_states": 5, "iterations": 10 if not ok else 6, "converged": ok}
            for name, ok in zip(CLASSES, converged)
        }

    text = format_fit_report(fit_report([True, False, True, True]))
    lines = text.splitlines()
    assert len(lines) == len(CLASSES) + 1 and "NOT converged (limit reached)" in lines[1]
    assert lines[-1].strip().startswith("NOT converged means EM stopped at its limit of 10 iterations")
    assert "10 by default" in lines[-1] and "held-out" in lines[-1] and "already reflects it" in lines[-1]
    assert "NOT converged means" not in format_fit_report(fit_report([True] * len(CLASSES)))
    assert "fit_frames" not in format_fit_report(fit_report([True] * len(CLASSES)))


def test_fit_report_says_when_a_class_was_fitted_on_a_draw_of_its_clips():
    report = {name: {"clips": 4, "frames": 100, "n_states": 5, "iterations": 6, "converged": True} for name in CLASSES}
    report["normal"].update(clips=1500, clips_available=4128, frames=60000)
    lines = format_fit_report(report).splitlines()
    assert "normal    1500 of 4128 clips" in lines[0] and " of " not in lines[1]
    assert "fit_frames" in lines[-1] and "prior still counts all" in lines[-1]


def test_help_texts_say_what_the_commands_write_and_run(runner, tmp_path):
    cv_help = " ".join(invoke(runner, ["cv", "--help"], tmp_path).output.split())
    for name in ("report.json", "report.md", "report.html", "predictions.csv", "confusion.png", "tradeoff.png"):
        assert name in cv_help, name
    assert "folds.png" in cv_help
    demo_help = " ".join(invoke(runner, ["demo", "--help"], tmp_path).output.split())
    assert "extract, cv, train and predict" in demo_help and "all of the above" not in demo_help
    compare_help = " ".join(invoke(runner, ["compare", "--help"], tmp_path).output.split())
    assert "--force" in compare_help and "never overwritten silently" in compare_help
