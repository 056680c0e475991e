import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from hmmclf.cli import main
from hmmclf.errors import HmmclfError
from hmmclf.experiment import load_experiment

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_experiment_configs_load(path):
    experiment = load_experiment(path)
    assert experiment.name == path.stem and experiment.description


@pytest.mark.parametrize(
    "text, message",
    [
        ("[features]\ncolour = 1\n", "unknown [features] keys"),
        ("[model]\nn_sates = 3\n", "unknown [model] keys"),
        ("[model]\ntopology = 'circular'\n", "topology"),
        ("[cv]\nfolds = 'five'\n", "[cv] takes integers"),
        ("[features]\nfmax = 9000.0\n", "invalid feature config"),
        ("name = \n", "invalid TOML"),
        ("[surprise]\n", "unknown top-level keys"),
    ],
)
def test_bad_configs_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(HmmclfError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_experiment(path)


def test_cv_with_config_repeats_and_compare(corpus):
    (corpus / "small.toml").write_text(
        'name = "small"\ndescription = "tiny"\n[features]\nn_mfcc = 8\n'
        "[model]\nn_states = 2\nn_iter = 3\n[cv]\nfolds = 2\nrepeats = 2\n"
    )
    runner = CliRunner()
    old = os.getcwd()
    os.chdir(corpus)
    try:
        result = runner.invoke(main, ["cv", "--config", "small.toml", "--jobs", "1", "--out", "r-small"])
        assert result.exit_code == 0, result.output
        result = runner.invoke(main, ["cv", "--folds", "2", "--states", "2", "--jobs", "1", "--out", "r-default"])
        assert result.exit_code == 0, result.output
        result = runner.invoke(main, ["compare", "r-small", "r-default/report.json", "--out", "board.md"])
        assert result.exit_code == 0, result.output
    finally:
        os.chdir(old)
    report = json.loads((corpus / "r-small" / "report.json").read_text())
    assert report["experiment"]["name"] == "small" and report["config"]["folds"] == 2
    assert report["config"]["feature_config"]["n_mfcc"] == 8
    assert len(report["repeats"]) == 2 and {r["seed"] for r in report["repeats"]} == {0, 1}
    assert (
        corpus
        / "features"
        / f"config-{__import__('hmmclf.features', fromlist=['x']).FeatureConfig(n_mfcc=8).fingerprint()}"
    ).is_dir()
    board = (corpus / "board.md").read_text()
    assert "| small |" in board and "| default |" in board
    assert "small" in result.output and "Score" in result.output
