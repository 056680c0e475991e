import json

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.image import imread

from hmmclf.audio import load_clip
from hmmclf.cli import main
from hmmclf.explain import explain_clip
from hmmclf.extraction import extract_corpus
from hmmclf.features import compute_features
from hmmclf.model_io import load_model
from hmmclf.pipeline import train_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from conftest import build_corpus

    root = build_corpus(tmp_path_factory.mktemp("c"), per_patient=2, patients=4)
    features = extract_corpus(root / "train", root / "train.csv", root / "features", n_jobs=1).features
    _, model_path, _ = train_model(features, root / "model.npz", {"n_states": 3, "n_iter": 5, "decision": "argmax"})
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
        ],
    )
    data = json.loads(result.output)
    assert set(data["viterbi"]) == {"normal", "crackle", "wheeze", "both"} and data["figure"] == str(png)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"nope")
    result = runner.invoke(main, ["explain", str(broken), "--model", str(model_path), "--out", str(png)])
    assert result.exit_code == 2 and "cannot decode" in result.stderr and "Traceback" not in result.output


def test_cv_report_figures_and_html(trained, tmp_path):
    root, _ = trained
    runner = CliRunner()
    out = tmp_path / "report"
    result = runner.invoke(
        main,
        ["cv", "--features", str(root / "features"), "--folds", "2", "--states", "2", "--jobs", "1", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    for name, min_shape in (("confusion.png", (400, 450)), ("tradeoff.png", (400, 450)), ("folds.png", (300, 600))):
        image = imread(out / name)
        assert image.shape[0] >= min_shape[0] and image.shape[1] >= min_shape[1], name
    page = (out / "report.html").read_text()
    assert (
        page.count("data:image/png;base64,") == 3 and "<table>" in page and "http" not in page.replace("http-equiv", "")
    )
    report = json.loads((out / "report.json").read_text())
    curve = report["tradeoff_curve"]
    assert len(curve["sensitivity"]) == len(curve["specificity"]) == len(curve["offset"])
    # The curve holds both ends: everything abnormal (Sp 0) and everything normal (Se 0, Sp 1).
    assert min(curve["specificity"]) == 0.0 and max(curve["specificity"]) == 1.0
