import json
import os
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest
from click.testing import CliRunner

from hmmclf.app.cli import main
from hmmclf.app.experiment import load_experiment, run_names, shipped_experiment_names
from hmmclf.evaluation.leaderboard import leaderboard
from hmmclf.task.classes import CLASSES
from hmmclf.utils.errors import HmmclfError

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "hmmclf" / "app" / "experiments"


def invoke(args, cwd):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, args, catch_exceptions=False)
    finally:
        os.chdir(old)


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_experiment_configs_load(path):
    experiment = load_experiment(path)
    assert experiment.name == path.stem and experiment.description
    assert load_experiment(path.stem) == experiment  # by name, as shipped


def test_experiments_ship_as_package_data():
    names = sorted(p.stem for p in EXPERIMENTS.glob("*.toml"))
    assert len(names) >= 10 and shipped_experiment_names() == names
    assert all(files("hmmclf.app").joinpath("experiments", f"{name}.toml").is_file() for name in names)
    assert not (ROOT / "experiments").exists(), "the experiments live in hmmclf/app/experiments/ now"
    setup_cfg = (ROOT / "setup.cfg").read_text()
    assert "[options.package_data]" in setup_cfg and "experiments/*.toml" in setup_cfg


def test_experiments_command_lists_every_shipped_experiment(tmp_path):
    result = invoke(["experiments"], tmp_path)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == shipped_experiment_names()
    for line in lines:
        name = line.split()[0]
        assert line.split(None, 1)[1] == load_experiment(name).description
    result = invoke(["experiments", "--names"], tmp_path)
    assert result.stdout.splitlines() == shipped_experiment_names()


def test_unknown_or_moved_config_is_a_one_line_error_naming_the_shipped_ones(tmp_path):
    result = invoke(["cv", "--config", "band-50-999", "--jobs", "1"], tmp_path)
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("hmmclf: error: band-50-999: no such experiment config file, nor a shipped experiment")
    assert all(name in line for name in shipped_experiment_names())
    # The README's old spelling, from a folder without experiments/: a hint, not a traceback.
    result = invoke(["train", "--config", "experiments/band-50-1000.toml"], tmp_path)
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert "did you mean the shipped experiment (--config band-50-1000)" in line


@pytest.mark.parametrize(
    "text, message",
    [
        ("[features]\ncolour = 1\n", "unknown [features] keys"),
        ("[model]\nn_sates = 3\n", "unknown [model] keys"),
        ("[model]\ntopology = 'circular'\n", "topology"),
        ("[cv]\nfolds = 'five'\n", "[cv] takes integers"),
        ("[cv]\nseed = -1\n", "seed >= 0, repeats >= 1; got seed = -1"),
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


def test_a_negative_seed_is_refused_before_any_work(tmp_path):
    for command in (["cv", "--seed", "-1"], ["demo", str(tmp_path / "demo"), "--seed", "-1"]):
        result = invoke(command, tmp_path)
        assert result.exit_code == 2
        assert "Invalid value for '--seed': -1 is not in the range x>=0" in result.stderr
    assert not (tmp_path / "demo").exists()


def test_cv_with_config_repeats_and_compare(corpus):
    assert not (corpus / "experiments").exists()
    (corpus / "small.toml").write_text(
        'name = "small"\ndescription = "tiny"\n[features]\nn_mfcc = 8\n'
        "[model]\nn_states = 2\nn_iter = 3\n[cv]\nfolds = 2\nrepeats = 2\n"
    )
    quick = ["--folds", "2", "--states", "2", "--jobs", "1"]
    for args in (
        ["--config", "small.toml", "--jobs", "1", "--out", "r-small"],
        [*quick, "--out", "r-default"],
        [*quick, "--seed", "1", "--out", "r-seed1"],
        # A shipped experiment by name, from a data folder without an experiments/ folder.
        ["--config", "band-50-1000", *quick, "--out", "r-band"],
    ):
        result = invoke(["cv", "--errors", "0", *args], corpus)  # the Errors section is tested elsewhere
        assert result.exit_code == 0, result.output
    result = invoke(["compare", "r-small", "r-default/report.json", "r-seed1", "r-band", "--out", "board.md"], corpus)
    assert result.exit_code == 0, result.output
    band = json.loads((corpus / "r-band" / "report.json").read_text())
    assert band["experiment"]["name"] == "band-50-1000" and band["config"]["feature_config"]["fmax"] == 1000.0
    report = json.loads((corpus / "r-small" / "report.json").read_text())
    assert report["experiment"]["name"] == "small" and report["config"]["folds"] == 2
    assert report["config"]["feature_config"]["n_mfcc"] == 8
    assert len(report["repeats"]) == 2 and {r["seed"] for r in report["repeats"]} == {0, 1}
    # How alike the two repeats' folds were, from the predictions of each (seed 1 deals apart from seed 0).
    assert -1.0 <= report["repeat_fold_agreement"] < 1.0
    agreement = f"adjusted Rand index of {report['repeat_fold_agreement']:.2f}"
    assert agreement in (corpus / "r-small" / "report.md").read_text()
    page = (corpus / "r-small" / "report.html").read_text()
    assert "Repeated CV" in page and agreement in page and page.count("<td>mean ± std</td>") == 1
    assert set(report["baseline_repeat_mean_std"]) == {"always_normal", "prior_random", "gbm_clip_stats"}
    assert report["baseline_repeat_mean_std"]["always_normal"] == {"mean": 0.5, "std": 0.0}
    assert (
        corpus
        / "features"
        / f"config-{__import__('hmmclf.data.features', fromlist=['x']).FeatureConfig(n_mfcc=8).fingerprint()}"
    ).is_dir()
    board = (corpus / "board.md").read_text()
    rows = {line.split(" | ")[0].lstrip("| "): line for line in board.splitlines()[2:]}
    assert set(rows) == {
        "small repeats=2 n_iter=3 n_mfcc=8",
        "default",
        "default seed=1",
        "band-50-1000 n_mels=26 fmax=1000",
    }, board
    assert "small" in result.output and "Score" in result.output

    # An existing leaderboard is not overwritten silently.
    before = (corpus / "board.md").read_text()
    result = invoke(["compare", "r-default", "r-seed1", "--out", "board.md"], corpus)
    assert result.exit_code == 2 and (corpus / "board.md").read_text() == before
    (line,) = result.stderr.strip().splitlines()
    assert line == "hmmclf: error: board.md: already exists; give --force to overwrite it, or another --out"
    result = invoke(["compare", "r-default", "r-seed1", "--out", "board.md", "--force"], corpus)
    assert result.exit_code == 0 and (corpus / "board.md").read_text() != before


def _fake_report(folder: Path, name: str, seed: int = 0, repeats: int = 1, **model) -> Path:
    """A minimal report.json, as cv writes it, with the settings the names are made of."""
    from hmmclf.data.features import FeatureConfig
    from hmmclf.model.classifier import HMMClassifier

    params = {**HMMClassifier().get_params(), **model}
    report = {
        "score": 0.5,
        "sensitivity": 0.2,
        "specificity": 0.8,
        "per_class": {c: {"recall": 0.5} for c in CLASSES},
        "experiment": {"name": name},
        "config": {
            "folds": 5,
            "seed": seed,
            "grouped": True,
            "group_column": "patient_id",
            "feature_config": FeatureConfig().to_dict(),
            "model_params": {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()},
        },
    }
    if repeats > 1:
        report["repeats"] = [{"seed": seed + r, "score": 0.5} for r in range(repeats)]
        report["repeat_mean_std"] = {"score": {"mean": 0.5, "std": 0.0}}
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps(report))
    return folder


def test_compared_runs_are_named_by_what_differs(tmp_path):
    default = _fake_report(tmp_path / "a" / "default", "default")
    seed1 = _fake_report(tmp_path / "seed1", "default", seed=1)
    left_right = _fake_report(tmp_path / "lr", "left-right", topology="left-right")
    repeated = _fake_report(tmp_path / "rep", "default", repeats=3)
    again = _fake_report(tmp_path / "b" / "default", "default")  # the same configuration, run twice
    reports = [json.loads((p / "report.json").read_text()) for p in (default, seed1, left_right, repeated)]
    assert run_names(reports) == ["default", "default seed=1", "left-right topology=left-right", "default repeats=3"]
    assert run_names(reports[:1]) == ["default"]
    assert run_names([reports[0], reports[2]]) == ["default", "left-right topology=left-right"]

    _, markdown = leaderboard([default, seed1, left_right, repeated, again], name_rows=run_names)
    names = [line.split(" | ")[0].lstrip("| ") for line in markdown.splitlines()[2:]]
    assert len(set(names)) == len(names) == 5, names
    assert {f"default [{default}]", f"default [{again}]"} <= set(names)
    with pytest.raises(HmmclfError, match="given twice"):
        leaderboard([default, default / "report.json"], name_rows=run_names)


def test_run_experiments_script_runs_every_shipped_experiment(tmp_path):
    """scripts/run_experiments.sh with a stand-in hmmclf that records the cv and compare calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "hmmclf"
    stub.write_text(
        "#!/usr/bin/env bash\n"
        f'if [ "$1" = experiments ]; then exec {sys.executable} -m hmmclf.app.cli "$@"; fi\n'
        f'echo "$*" >> {tmp_path / "calls.log"}\n'
    )
    stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    work = tmp_path / "data"
    work.mkdir()
    subprocess.run(["bash", str(ROOT / "scripts" / "run_experiments.sh")], cwd=work, env=env, check=True)
    calls = (tmp_path / "calls.log").read_text().splitlines()
    names = shipped_experiment_names()
    assert calls[: len(names)] == [f"cv --config {n} --out reports/exp-{n}" for n in names]
    assert calls[-1] == (
        "compare reports/default "
        + " ".join(f"reports/exp-{n}" for n in names)
        + " --out reports/leaderboard.md --force"
    )
