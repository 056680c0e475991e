"""Integration test on real ICBHI 2017 cycles, when ../shared/data/icbhi exists beside the checkout."""

import json
import os

import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import SHARED_ICBHI

from hmmclf.app.cli import main

pytestmark = pytest.mark.skipif(not (SHARED_ICBHI / "train.csv").exists(), reason="../shared/data/icbhi not present")


def test_extract_and_cv_on_a_patient_subset(tmp_path):
    labels = pd.read_csv(SHARED_ICBHI / "train.csv")
    # The 6 patients with the most abnormal cycles (456 clips), so every class is present in every fold.
    abnormal = labels[labels["label"] != "normal"].groupby("patient_id").size().sort_values(ascending=False)
    subset = labels[labels["patient_id"].isin(abnormal.index[:6])]
    assert set(subset["label"]) == {"normal", "crackle", "wheeze", "both"}
    subset.to_csv(tmp_path / "subset.csv", index=False)

    runner = CliRunner()
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        data = str(SHARED_ICBHI / "train")
        result = runner.invoke(
            main, ["extract", "--data", data, "--labels", "subset.csv", "--jobs", "1"], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        assert f"{len(subset)} clips usable" in result.output
        cv = ["cv", "--folds", "3", "--states", "2", "--out", "report", "--jobs", "1", "--errors", "2"]
        result = runner.invoke(main, cv, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    finally:
        os.chdir(old)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["groups"]["column"] == "patient_id" and report["groups"]["unit"] == "patients"
    groups = [set(f["test_groups"]) for f in report["folds"]]
    assert sum(len(g) for g in groups) == 6 and len(set.union(*groups)) == 6  # each patient tested once
    assert report["n_clips"] == len(subset)
    assert 0.0 <= report["score"] <= 1.0
    assert sum(map(sum, report["confusion_matrix"])) == len(subset)
