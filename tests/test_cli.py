import json
import os

import pandas as pd
import pytest
from click.testing import CliRunner

from hmmclf.cli import main


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
    assert report["grouped"] and report["folds"][0]["test_groups"]
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
    result = invoke(runner, ["cv", "--folds", "2", "--states", "2", "--jobs", "1"], corpus)
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
    result = invoke(runner, ["cv", "--folds", "2", "--states", "2", "--jobs", "1", "--out", "r"], corpus)
    assert result.exit_code == 0, result.output
    assert "inferred from the recording signature" in result.output
    report = json.loads((corpus / "r" / "report.json").read_text())
    assert report["group_source"] == "inferred" and report["groups"]["n_groups"] >= 2
    assert set(pd.read_csv(corpus / "r" / "predictions.csv")["group_source"]) == {"inferred"}
    assert report["leakage"]["grouped"] and "score_plain_folds" in report["leakage"]
    # The cache exists now; --groups none must still take effect.
    result = invoke(
        runner, ["cv", "--folds", "2", "--states", "2", "--jobs", "1", "--groups", "none", "--out", "r2"], corpus
    )
    assert result.exit_code == 0, result.output
    assert "NOT grouped" in result.output and "LEAKAGE" in result.output
    assert "NOT grouped" in (corpus / "r2" / "report.md").read_text()
    assert json.loads((corpus / "r2" / "report.json").read_text())["grouped"] is False


def test_demo_is_far_above_chance(runner, tmp_path):
    result = invoke(runner, ["demo", "demo", "--jobs", "2"], tmp_path)
    assert result.exit_code == 0, result.output
    reports = list((tmp_path / "demo" / "reports").glob("cv-*/report.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    # Chance (class-prior random) is about 25; always-normal is 50.
    assert report["score"] > 0.7 and report["sensitivity"] > 0.45 and report["specificity"] > 0.6
    assert report["score"] > report["baseline"]["score"] + 0.2
    assert "broken_000.wav" in (tmp_path / "demo" / "features" / "skipped.csv").read_text()
    assert "ERROR: cannot decode" in result.output
