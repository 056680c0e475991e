"""scripts/benchmark.py: the commands it times (the timing itself is the script's job, not a test's)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

from hmmclf.app.experiment import load_experiment
from hmmclf.app.pipeline import features_dir_for

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("hmmclf_benchmark_script", ROOT / "scripts" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _recording_run(calls: list[list[str]]):
    """A stand-in for the script's ``run``: records each command and writes the files the script reads."""

    def run(cmd: list[str], work: Path):
        calls.append(cmd)
        if "extract" in cmd:
            # Where hmmclf keeps the cache: a folder of its own for features other than the default's.
            config = cmd[cmd.index("--config") + 1] if "--config" in cmd else None
            cache = features_dir_for(work / "features", load_experiment(config).features if config else None)
            cache.mkdir(parents=True, exist_ok=True)
            (cache / "index.csv").write_text("file,duration\na.wav,2.0\nb.wav,3.0\n")
        if "cv" in cmd:
            (work / "report").mkdir(exist_ok=True)
            (work / "report" / "report.json").write_text(
                json.dumps({"score": 0.5, "sensitivity": 0.0, "specificity": 1.0})
            )
        return 1.0, 100.0, subprocess.CompletedProcess(cmd, 0, "file,labels\na.wav,normal\n", "")

    return run


@pytest.mark.parametrize("config", [None, "tuned-length", "plain-argmax"])  # the last has features of its own
def test_benchmark_runs_extract_cv_and_train_with_the_chosen_configuration(benchmark, monkeypatch, tmp_path, config):
    calls: list[list[str]] = []
    monkeypatch.setattr(benchmark, "run", _recording_run(calls))
    out = benchmark.bench_hmmclf(tmp_path, folds=5, jobs=2, predict=True, config=config)
    commands = {cmd[3]: cmd[4:] for cmd in calls if cmd[1:3] == ["-m", "hmmclf"]}
    assert {"extract", "cv", "train", "predict"} <= set(commands)
    for name in ("extract", "cv", "train"):
        given = commands[name]
        if config is None:
            assert "--config" not in given, name
        else:
            assert given[given.index("--config") + 1] == config, name
    assert "--config" not in commands["predict"]  # predict reads the model train wrote
    assert out["clips"] == 2 and out["audio_s"] == 5.0 and out["score"] == 0.5
