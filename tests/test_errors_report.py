"""The Errors section of report.html, per-group results, and ``hmmclf errors``."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from click.testing import CliRunner
from conftest import build_corpus

from hmmclf.app.cli import main
from hmmclf.evaluation.mistakes import select_clips
from hmmclf.evaluation.per_group import group_rows
from hmmclf.evaluation.report_errors import build_errors_section
from hmmclf.task.classes import CLASSES

_SHARED: dict[str, object] = {}


def shared_report(tmp_path_factory) -> tuple[Path, object, Path]:
    """One small cv report with an Errors section (2 mistakes per cell), made once for this module and
    tests/test_browser.py: (report folder, CVResult, clip folder)."""
    if "report" not in _SHARED:
        from hmmclf.data.extraction import extract_corpus
        from hmmclf.evaluation.cv import cross_validate
        from hmmclf.evaluation.report import write_cv_report
        from hmmclf.model.classifier import HMMClassifier

        root = build_corpus(tmp_path_factory.mktemp("errors") / "corpus", per_patient=1, patients=3, seconds=0.6)
        from hmmclf.data.features import FeatureConfig

        # The cepstra alone: with the spectral-shape features the toy classes leave no mistake to show.
        config = FeatureConfig(extra=())
        features = extract_corpus(root / "train", root / "train.csv", root / "features", config=config, n_jobs=1)
        features = features.features
        model = HMMClassifier(n_states=2, n_iter=2)
        result = cross_validate(features, model, n_folds=3, n_jobs=1, leakage=False, baselines=False, errors=2)
        out = root / "report"
        write_cv_report(result, out, errors=2, clip_folder=root / "train")
        _SHARED["report"] = (out, result, root / "train")
    return _SHARED["report"]


@pytest.fixture
def made(tmp_path_factory):
    return shared_report(tmp_path_factory)


def test_selection_is_the_most_confident_per_cell_and_fold_candidates_cover_it():
    rng = np.random.default_rng(0)
    n = 400
    true = rng.choice(CLASSES, n)
    predicted = rng.choice(CLASSES, n)
    conf = np.round(rng.choice([0.5, 0.7, 0.9, 1.0], n), 6)  # many ties: broken by row order
    chosen = select_clips(true, predicted, conf, top=3, n_correct=2)
    for t in CLASSES:
        for p in CLASSES:
            rows = [r for r, k in chosen if true[r] == t and predicted[r] == p]
            cell = [r for r in range(n) if true[r] == t and predicted[r] == p]
            best = sorted(cell, key=lambda r: (-conf[r], r))[: (2 if t == p else 3)]
            assert rows == best
    # Each fold's candidates (the same selection on its test rows) cover the pooled selection.
    folds = np.array_split(rng.permutation(n), 4)
    covered = set()
    for test in folds:
        test = np.sort(test)
        covered |= {int(test[r]) for r, _ in select_clips(true[test], predicted[test], conf[test], 3, 2)}
    assert {r for r, _ in chosen} <= covered
    assert select_clips(true, predicted, conf, top=0) == []


def test_per_group_rates_are_na_without_clips_to_measure_them():
    table = pd.DataFrame(
        {
            "group": ["a", "a", "b", "b", "c"],
            "true": ["crackle", "wheeze", "normal", "crackle", "normal"],
            "predicted": ["normal", "wheeze", "crackle", "normal", "normal"],
            "fold": [0, 0, 1, 1, 1],
        }
    )
    rows = {r["group"]: r for r in group_rows(table)}
    assert rows["a"]["specificity"] is None and rows["a"]["score"] is None and rows["a"]["sensitivity"] == 0.5
    assert rows["c"]["sensitivity"] is None and rows["c"]["specificity"] == 1.0
    assert rows["b"]["score"] == 0.0 and rows["b"]["errors"] == 2
    assert [r["group"] for r in group_rows(table)][:2] == ["b", "a"]  # worst first
    assert group_rows(table.assign(group="")) == []


def test_report_page_json_and_groups_csv(made):
    out, result, _ = made
    report = json.loads((out / "report.json").read_text())
    page = (out / "report.html").read_text()
    info = report["errors"]
    mistakes = [c for c in info["clips"] if c["kind"] == "mistake"]
    confusion = np.array(report["confusion_matrix"])
    cells = {(c["true"], c["predicted"]) for c in mistakes}
    # Every off-diagonal cell with a mistake shows one, none shows more than --errors.
    expected = {(t, p) for i, t in enumerate(CLASSES) for j, p in enumerate(CLASSES) if i != j and confusion[i, j]}
    assert cells == expected
    assert all(sum(1 for c in mistakes if (c["true"], c["predicted"]) == cell) <= 2 for cell in cells)
    players = re.findall(r'<audio controls preload="metadata" src="data:audio/flac;base64,([^"]+)"', page)
    assert len(players) == sum(c["playable"] for c in info["clips"]) > 0
    samples, rate = sf.read(io.BytesIO(base64.b64decode(players[0])))
    assert rate == 4000 and samples.ndim == 1 and 0 < len(samples) <= 10 * rate
    assert len(page.encode()) < 15_000_000 and info["section_bytes"] <= info["budget_bytes"]
    groups = pd.read_csv(out / "groups.csv")
    assert len(groups) == len(report["per_group"]) == 3 and groups["clips"].sum() == report["n_clips"]
    assert "id='groups'" in page and (out / "groups.png").is_file()
    # The evidence came from the fold workers, for the shown clips only.
    assert {c["file"] for c in info["clips"]} <= {result.predictions["file"][r] for r in result.evidence}


def test_report_drawn_by_two_processes_is_the_same(made, tmp_path):
    from hmmclf.evaluation.report import write_cv_report

    out, result, clips = made
    write_cv_report(result, tmp_path / "two", errors=2, clip_folder=clips, n_jobs=2)
    for name in ("report.json", "report.html", "confusion.png", "tradeoff.png", "folds.png", "leakage.png"):
        one, two = (out / name).read_bytes(), (tmp_path / "two" / name).read_bytes()
        if name.startswith("report"):  # the report names when it was written
            one, two = (re.sub(rb"20\d\d-\d\d-\d\dT?[ \d:+]+", b"", x) for x in (one, two))
        assert one == two, name


def test_budget_and_off(made):
    _, result, clips = made
    from hmmclf.data.features import FeatureConfig

    tight = build_errors_section(result.predictions, result.evidence, 2, clips, FeatureConfig(), budget=1)
    assert tight.html.count("<audio") == 1 and tight.info["over_budget"] == len(tight.info["clips"]) - 1
    assert "size budget" in tight.html
    assert build_errors_section(result.predictions, result.evidence, 0, clips, FeatureConfig()).html == ""


def test_errors_command_lists_the_page_clips_and_copies_them(made, tmp_path):
    out, _, _ = made
    report = json.loads((out / "report.json").read_text())
    shown = [c["file"] for c in report["errors"]["clips"] if c["kind"] == "mistake"]
    runner = CliRunner()
    listed = runner.invoke(main, ["errors", str(out)])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.strip().splitlines()
    assert lines[0].split()[:5] == ["file", "true", "predicted", "posterior", "group"]
    assert [line.split()[0] for line in lines[1:]] == shown
    wheeze = runner.invoke(main, ["errors", str(out), "--class", "wheeze", "--top", "1", "--copy", str(tmp_path / "c")])
    assert wheeze.exit_code == 0, wheeze.output
    # The runner mixes stderr ("errors: 1 clips copied ...") into the output.
    rows = [line.split() for line in wheeze.output.strip().splitlines()[1:] if not line.startswith("errors:")]
    assert rows and all(r[1] == "wheeze" for r in rows)
    copied = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert len(copied) == len(rows) and copied[0].startswith("01_wheeze-as-")
    again = runner.invoke(main, ["errors", str(out), "--class", "wheeze", "--top", "1", "--copy", str(tmp_path / "c")])
    assert again.exit_code == 2 and "already exists" in again.output


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: None, "no such report folder"),
        (lambda p: p.mkdir(), "no report.json"),
        (lambda p: (p.mkdir(), (p / "report.json").write_text("{}")), "not an hmmclf cv report"),
    ],
)
def test_errors_command_refuses_missing_or_foreign_folders(tmp_path, setup, message):
    folder = tmp_path / "rep"
    setup(folder)
    result = CliRunner().invoke(main, ["errors", str(folder)])
    assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1


def test_fold_without_abnormal_clips_has_no_score_and_too_few_groups_names_the_folds(tmp_path):
    from hmmclf.evaluation.cv import _fold_result

    class Features:
        classes = np.array(["normal"] * 4)
        groups = np.array(["a", "a", "b", "b"])

    model = {"predicted": np.array(["crackle"] * 2), "fit_seconds": 0.0, "fit_report": {}}
    fold = _fold_result(0, Features(), np.array([0, 1]), np.array([2, 3]), model, {})
    assert np.isnan(fold.metrics["score"]) and np.isnan(fold.metrics["sensitivity"])

    root = build_corpus(tmp_path / "c", per_patient=1, patients=3, seconds=0.3)
    result = CliRunner().invoke(main, ["cv", "--data", str(root / "train"), "--labels", str(root / "train.csv"),
                                       "--features", str(tmp_path / "f"), "--folds", "5", "--jobs", "1",
                                       "--out", str(tmp_path / "r")])  # fmt: skip
    assert result.exit_code == 2 and "use --folds 3 or fewer" in result.output
