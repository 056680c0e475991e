import json

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.image import imread

from hmmclf import __version__
from hmmclf.app.cli import main
from hmmclf.app.explain import decision_thresholds, explain_clip, figure_title, format_explanation, plot_explanation
from hmmclf.app.pipeline import train_model
from hmmclf.data.audio import load_clip
from hmmclf.data.extraction import extract_corpus
from hmmclf.data.features import compute_features
from hmmclf.evaluation import figures
from hmmclf.evaluation.report_html import format_html
from hmmclf.evaluation.report_markdown import format_markdown
from hmmclf.evaluation.report_text import format_summary
from hmmclf.model.config import ModelConfig
from hmmclf.model.decision.offsets import TunedOffsetsRule
from hmmclf.model.model_io import load_model
from hmmclf.task.classes import CLASSES


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from conftest import build_corpus

    root = build_corpus(tmp_path_factory.mktemp("c"), per_patient=2, patients=4)
    features = extract_corpus(root / "train", root / "train.csv", root / "features", n_jobs=1).features
    _, model_path, _ = train_model(features, root / "model.npz", ModelConfig(n_states=3, n_iter=5, decision="argmax"))
    return root, model_path


def test_explain_segments_match_the_model_decode(trained):
    root, model_path = trained
    clip = root / "train" / "p1_wheeze_0.wav"
    explanation, samples = explain_clip(clip, model_path)
    model, config = load_model(model_path)
    frames = compute_features(load_clip(clip, config.sample_rate).samples, config)
    decoded = model.decode(frames)
    step = config.hop_length / config.sample_rate
    for state, (log_prob, path) in decoded.items():
        info = explanation["viterbi"][state]
        assert info["log_probability"] == pytest.approx(log_prob, abs=1e-3)
        rebuilt = np.concatenate(
            [[g["hidden_state"]] * round((g["end"] - g["start"]) / step) for g in info["segments"]]
        )
        np.testing.assert_array_equal(rebuilt, path)
    assert explanation["class"] == model.predict([frames])[0]
    assert len(explanation["log_likelihood_ratio"]["wheeze"]) == len(frames)
    assert sum(explanation["posterior"].values()) == pytest.approx(1.0, abs=1e-4)


def test_explain_cli_png_text_json_and_errors(trained, tmp_path):
    root, model_path = trained
    runner = CliRunner()
    png = tmp_path / "x.png"
    result = runner.invoke(
        main, ["explain", str(root / "train" / "p0_crackle_1.wav"), "--model", str(model_path), "--out", str(png)]
    )
    assert result.exit_code == 0, result.output
    assert "viterbi normal" in result.output and "crackle vs normal" in result.output
    image = imread(png)
    assert image.shape[0] >= 700 and image.shape[1] >= 1000 and png.stat().st_size > 20_000
    result = runner.invoke(
        main,
        [
            "explain",
            str(root / "train" / "p0_crackle_1.wav"),
            "--model",
            str(model_path),
            "--out",
            str(png),
            "--format",
            "json",
            "--true-label",
            "crackle",
        ],
    )
    data = json.loads(result.output)
    assert set(data["viterbi"]) == {"normal", "crackle", "wheeze", "both"} and data["figure"] == str(png)
    assert data["true_class"] == "crackle" and data["correct"] == (data["class"] == "crackle")
    clip = str(root / "train" / "p0_crackle_1.wav")
    result = runner.invoke(main, ["explain", clip, "--model", str(model_path), "--out", str(png), "--true-label", "x"])
    assert result.exit_code == 2 and "--true-label 'x'" in result.stderr
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"nope")
    result = runner.invoke(main, ["explain", str(broken), "--model", str(model_path), "--out", str(png)])
    assert result.exit_code == 2 and "cannot decode" in result.stderr and "Traceback" not in result.output


@pytest.fixture(scope="module")
def cv_report(trained, tmp_path_factory):
    root, _ = trained
    out = tmp_path_factory.mktemp("r") / "report"
    result = CliRunner().invoke(
        main,
        ["cv", "--features", str(root / "features"), "--folds", "2", "--states", "2", "--jobs", "1", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    return out


def test_cv_report_figures_and_html(cv_report):
    out = cv_report
    shapes = (("confusion.png", (400, 450)), ("tradeoff.png", (400, 450)), ("folds.png", (300, 600)))
    for name, min_shape in shapes + (("leakage.png", (300, 800)),):
        image = imread(out / name)
        assert image.shape[0] >= min_shape[0] and image.shape[1] >= min_shape[1], name
    page = (out / "report.html").read_text()
    assert page.count("<figure><img") == 5 and "<table>" in page and "http" not in page.replace("http-equiv", "")
    report = json.loads((out / "report.json").read_text())
    curve = report["tradeoff_curve"]
    assert len(curve["sensitivity"]) == len(curve["specificity"]) == len(curve["offset"])
    # The curve holds both ends: everything abnormal (Sp 0) and everything normal (Se 0, Sp 1).
    assert min(curve["specificity"]) == 0.0 and max(curve["specificity"]) == 1.0


def test_explain_title_separates_prediction_and_true_label(trained, tmp_path):
    root, model_path = trained
    explanation, samples = explain_clip(root / "train" / "p1_wheeze_0.wav", model_path, true_label="crackle+wheeze")
    assert explanation["true_class"] == "both" and explanation["correct"] == (explanation["class"] == "both")
    title = figure_title(explanation)
    assert f"predicted: {explanation['class']}" in title and "true label: both" in title
    # The true label is not inside the prediction's brackets: "normal (normal)" read as "true label normal".
    assert f"{explanation['class']} ({explanation['class']})" not in title
    without, _ = explain_clip(root / "train" / "p1_wheeze_0.wav", model_path)
    assert without["true_class"] is None and "true label: not given" in figure_title(without)
    png = plot_explanation(without, samples, tmp_path / "e.png", true_label="wheeze")
    assert imread(png).shape[0] >= 700
    assert "true label: wheeze" in format_explanation({**explanation, "true_class": "wheeze", "correct": False})
    with pytest.raises(ValueError, match="true label"):
        explain_clip(root / "train" / "p1_wheeze_0.wav", model_path, true_label="rhonchus")


def test_explain_text_says_why_viterbi_log_p_differs(trained):
    root, model_path = trained
    explanation, _ = explain_clip(root / "train" / "p0_crackle_1.wav", model_path)
    text = format_explanation(explanation)
    assert "single best path" in text and "sums over all paths" in text
    for name in CLASSES:  # the best path never beats the sum over all paths
        assert explanation["viterbi"][name]["log_probability"] <= explanation["log_likelihood"][name] + 1e-6


@pytest.mark.parametrize("offsets", [None, [0.0, 0.3, -0.2, 0.5]])
def test_explain_thresholds_reproduce_the_decision_against_normal(trained, offsets):
    root, model_path = trained
    model, config = load_model(model_path)
    if offsets is not None:
        model.decision_rule_ = TunedOffsetsRule(np.array(offsets))
    info = decision_thresholds(model)
    assert info["rule"] == ("tuned" if offsets else "argmax")
    shift = model.class_log_prior_ + (np.asarray(offsets) if offsets else 0.0)
    for k, name in enumerate(CLASSES[1:], start=1):
        assert info["thresholds"][name] == pytest.approx(shift[0] - shift[k], abs=1e-3)
    for clip in sorted((root / "train").glob("p2_*.wav")):
        frames = compute_features(load_clip(clip, config.sample_rate).samples, config)
        scored = model.score_clips([frames], frame_increments=True)
        ratio = scored.likelihoods.frame_increments[:, 1:] - scored.likelihoods.frame_increments[:, :1]
        for k, name in enumerate(CLASSES[1:], start=1):
            beats = scored.decision[0, k] > scored.decision[0, 0]
            assert (ratio[:, k - 1].mean() > info["thresholds"][name]) == beats, (clip.name, name)


def test_explain_says_when_no_single_threshold_applies(trained):
    _, model_path = trained
    model, _ = load_model(model_path)
    for name in ("stacked", "detectors"):
        model.decision_rule_ = type("Rule", (), {"name": name})()
        info = decision_thresholds(model)
        assert info["thresholds"] is None and "no single threshold" in info["note"]


def test_explain_draws_what_the_peak_detectors_decide_with(trained, tmp_path):
    from hmmclf.model.decision.detectors import PeakDetectorsRule
    from hmmclf.model.model_io import save_model

    root, model_path = trained
    model, config = load_model(model_path)
    # auto, having chosen peak-detectors, with thresholds that make this clip's detectors fire or not.
    chosen = PeakDetectorsRule(peak_frames=10, thresholds=np.array([0.0, 1e6]))
    model.decision_rule_ = type("Auto", (), {"name": "auto", "chosen": chosen})()
    info = decision_thresholds(model)
    assert info["rule"] == "auto, which chose peak-detectors" and info["detector_thresholds"] == {
        "crackle": 0.0,
        "wheeze": 1e6,
    }
    model.decision_rule_ = chosen
    saved = save_model(model, tmp_path / "peak.npz", config)
    explanation, samples = explain_clip(root / "train" / "p1_wheeze_0.wav", saved)
    curves = explanation["detector_evidence"]
    fires = [max(curves[name]) > explanation["decision"]["detector_thresholds"][name] for name in ("crackle", "wheeze")]
    expected = {(False, False): "normal", (True, False): "crackle", (False, True): "wheeze", (True, True): "both"}
    assert explanation["class"] == expected[tuple(fires)]  # the drawn curves reproduce the decision
    assert "wheeze detector" in format_explanation(explanation) and "does not fire" in format_explanation(explanation)
    plot_explanation(explanation, samples, tmp_path / "peak.png")
    assert (tmp_path / "peak.png").stat().st_size > 10_000


def test_explain_draws_what_the_boosted_rule_decides_with(trained, tmp_path):
    root, _ = trained
    features = extract_corpus(root / "train", root / "train.csv", root / "features", n_jobs=1).features
    # Four patients: two inner folds of two (three folds would need six patients).
    config = ModelConfig(n_states=3, n_iter=5, decision="boosted", features="all", inner_folds=2)
    _, model_path, _ = train_model(features, tmp_path / "boosted.npz", config)
    explanation, samples = explain_clip(root / "train" / "p1_wheeze_0.wav", model_path)
    decision = explanation["decision"]
    scores = {c: v for c, v in decision["class_scores"].items() if v is not None}
    # The drawn scores reproduce the decision: the predicted class scores highest (up to their rounding).
    assert scores[explanation["class"]] == pytest.approx(max(scores.values()), abs=2e-4)
    for c, value in scores.items():
        assert value == pytest.approx(decision["tree_log_probability"][c] + decision["offsets"][c], abs=2e-4)
    assert decision["thresholds"] is None and "class scores" in format_explanation(explanation)
    plot_explanation(explanation, samples, tmp_path / "boosted.png")
    assert (tmp_path / "boosted.png").stat().st_size > 10_000


def _captured_figures(monkeypatch):
    captured = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: captured.append(fig))
    return captured


def test_report_figures_are_in_percent_with_labelled_axes(cv_report, monkeypatch):
    import pandas as pd

    report = json.loads((cv_report / "report.json").read_text())
    captured = _captured_figures(monkeypatch)
    figures.plot_confusion(report["confusion_matrix"], "x.png")
    curve = figures.tradeoff_curve(pd.read_csv(cv_report / "predictions.csv"))
    figures.plot_tradeoff(curve, (report["sensitivity"], report["specificity"]), "x.png")
    figures.plot_folds(report, "x.png")
    confusion, tradeoff, folds = (fig.axes[0] for fig in captured)
    for ax in (confusion, tradeoff, folds):
        assert ax.get_xlabel() and ax.get_ylabel()
    assert captured[0].axes[1].get_ylim()[1] == pytest.approx(100)  # the colour bar
    assert "%" in captured[0].axes[1].get_ylabel()
    assert tradeoff.get_xlim()[1] > 100 and tradeoff.get_ylim()[1] > 100 and "%" in tradeoff.get_xlabel()
    chosen = [line for line in tradeoff.get_lines() if "choice" in str(line.get_label())][0]
    assert chosen.get_xdata()[0] == pytest.approx(100 * report["specificity"])
    assert folds.get_ylim()[1] > 100 and "percent" in folds.get_ylabel()
    ticks = " ".join(t.get_text() for t in folds.get_xticklabels())
    assert "patients" in ticks and "groups" not in ticks  # the demo corpus is grouped by its patient_id column


def test_folds_figure_says_groups_when_they_are_not_patients(cv_report, monkeypatch):
    report = json.loads((cv_report / "report.json").read_text())
    report["groups"] = {**report["groups"], "kind": "inferred", "column": None, "unit": "groups"}
    captured = _captured_figures(monkeypatch)
    figures.plot_folds(report, "x.png")
    ticks = " ".join(t.get_text() for t in captured[0].axes[0].get_xticklabels())
    assert "groups" in ticks and "patients" not in ticks


def test_report_header_config_and_the_always_normal_sentence(cv_report):
    report = json.loads((cv_report / "report.json").read_text())
    images = {name: cv_report / f"{name}.png" for name in ("confusion", "tradeoff", "folds")}
    report["data"] = {"data_dir": "/data/clips", "labels": "/data/train.csv"}
    report["score_interval"] = {"level": 0.95, "low": 0.42, "high": 0.61, "n_boot": 1000, "resampled": "groups"}
    page, markdown, summary = format_html(report, images), format_markdown(report), format_summary(report)
    sentence = "the interval includes 50: this result is not distinguishable from always answering normal"
    head = page[: page.index("<h2>")]
    for text in (__version__, report["created"][:10], "/data/clips", "/data/train.csv"):
        assert text in head and text in markdown, text
    assert all(sentence in text for text in (page, markdown, summary))
    config = page[page.index("<h2>Configuration</h2>") :]
    assert "50–1200 Hz" in config and "hidden states per class HMM" in config and "patients" in config
    assert "<details>" in config  # the raw JSON is still there, folded away
    for name in ("confusion", "tradeoff", "folds"):
        assert f"]({name}.png)" in markdown
    report["score_interval"].update(low=0.55, high=0.7)
    assert sentence not in format_html(report, images) and sentence not in format_summary(report)
    del report["data"], report["created"]  # an older report: nothing recorded, nothing breaks
    assert "not recorded" in format_markdown(report) and "date not recorded" in format_html(report, images)
