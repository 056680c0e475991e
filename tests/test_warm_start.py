"""The final HMMs start from the inner folds' HMMs (a few EM iterations instead of k-means and a full run)."""

import numpy as np
import pytest

from hmmclf.model.classifier import HMMClassifier
from hmmclf.model.config import ModelConfig
from hmmclf.model.label_hmm import WARM_START_ITERATIONS, RawHMM, fit_label_hmm, raw_parameters
from hmmclf.task.classes import CLASSES


def two_regime_clips(seed: int, n_clips: int = 12, dims: int = 3) -> list[np.ndarray]:
    """Clips that alternate between two well separated regimes, in feature units far from standard."""
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(n_clips):
        regime = np.repeat(rng.integers(0, 2, 8), 6)
        frames = rng.standard_normal((len(regime), dims)) + 4.0 * regime[:, None]
        clips.append((50.0 + 10.0 * frames).astype(np.float32))
    return clips


def standardisation(clips: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    frames = np.concatenate(clips).astype(float)
    return frames.mean(axis=0), frames.std(axis=0)


def test_raw_parameters_carry_an_hmm_into_another_standardisation():
    clips = two_regime_clips(0)
    settings = ModelConfig(n_states=2, n_iter=10)
    mean, scale = standardisation(clips[:6])
    hmm, _ = fit_label_hmm(clips[:6], mean, scale, settings, (0, 0))
    raw = raw_parameters(hmm, mean, scale)
    # Frames in feature units: the raw Gaussians give each frame the density the standardised HMM gives it,
    # less the log of the scaling's Jacobian.
    frames = np.concatenate(clips[:6]).astype(float)
    standard = (frames - mean) / scale
    log_density_standard = hmm._compute_log_likelihood(standard)
    diff = frames[:, None, :] - raw.means[None]
    log_density_raw = -0.5 * np.sum(diff**2 / raw.variances + np.log(2 * np.pi * raw.variances), axis=2)
    np.testing.assert_allclose(log_density_raw + np.log(scale).sum(), log_density_standard, rtol=1e-9, atol=1e-9)


def test_a_warm_fit_runs_few_iterations_from_the_start_and_reaches_the_cold_fit():
    clips = two_regime_clips(1, n_clips=24)
    settings = ModelConfig(n_states=2, n_iter=10, tol=0.0)
    inner_mean, inner_scale = standardisation(clips[:12])
    inner, _ = fit_label_hmm(clips[:12], inner_mean, inner_scale, settings, (0, 0))
    mean, scale = standardisation(clips)
    warm, warm_report = fit_label_hmm(
        clips, mean, scale, settings, (0, 0), raw_parameters(inner, inner_mean, inner_scale)
    )
    cold, cold_report = fit_label_hmm(clips, mean, scale, settings, (0, 0))
    assert warm_report["warm_start"] and not cold_report["warm_start"]
    assert warm_report["iterations"] == WARM_START_ITERATIONS < cold_report["iterations"]
    # The same optimum, up to the order of the states.
    assert warm_report["log_likelihood_per_frame"] == pytest.approx(cold_report["log_likelihood_per_frame"], abs=1e-3)
    order = np.argsort(warm.means_[:, 0]), np.argsort(cold.means_[:, 0])
    np.testing.assert_allclose(warm.means_[order[0]], cold.means_[order[1]], atol=0.02)


def test_a_start_that_does_not_fit_is_not_used():
    clips = two_regime_clips(2)
    settings = ModelConfig(n_states=2, n_iter=4, tol=0.0)
    mean, scale = standardisation(clips)
    hmm, _ = fit_label_hmm(clips, mean, scale, settings, (0, 0))
    start = raw_parameters(hmm, mean, scale)
    # Three states where this fit has two: a cold start.
    three = RawHMM(
        np.full(3, 1 / 3), np.full((3, 3), 1 / 3), np.vstack([start.means, start.means[:1]]), np.ones((3, 3))
    )
    assert not fit_label_hmm(clips, mean, scale, settings, (0, 0), three)[1]["warm_start"]
    # A state no frame can reach (its Gaussian is far from every frame and needle-thin) loses every frame
    # under EM, which would leave its Gaussian 0 / 0: the fit starts cold instead and is finite.
    lost = RawHMM(start.startprob, start.transmat, start.means.copy(), start.variances.copy())
    lost.means[1] = 1e6
    lost.variances[1] = 1e-9
    refit, report = fit_label_hmm(clips, mean, scale, settings, (0, 0), lost)
    assert not report["warm_start"] and report["iterations"] == settings.n_iter
    assert np.isfinite(refit.means_).all()
    # The log-space implementation always starts cold.
    log_space = ModelConfig(n_states=2, n_iter=4, implementation="log")
    assert not fit_label_hmm(clips, mean, scale, log_space, (0, 0), start)[1]["warm_start"]


def test_the_final_hmms_start_from_the_inner_folds_only_when_the_rule_has_inner_folds():
    rng = np.random.default_rng(3)
    X, y, groups = [], [], []
    for patient in range(16):
        for k, name in enumerate(CLASSES):
            frames = rng.standard_normal((40, 3))
            frames[:, k % 3] += 2.0 if k else 0.0
            X.append(frames.astype(np.float32))
            y.append(name)
            groups.append(f"p{patient}")
    boosted = HMMClassifier(n_states=2, n_iter=5).fit(X, y, groups=groups)
    assert all(boosted.fit_report_[name]["warm_start"] for name in CLASSES)
    assert all(boosted.fit_report_[name]["iterations"] <= WARM_START_ITERATIONS for name in CLASSES)
    argmax = HMMClassifier(n_states=2, n_iter=5, decision="argmax").fit(X, y, groups=groups)
    assert not any(argmax.fit_report_[name]["warm_start"] for name in CLASSES)


def test_the_fit_report_says_which_fits_started_from_an_inner_fold():
    from hmmclf.app.output import format_fit_report

    report = {
        name: {"clips": 4, "frames": 100, "n_states": 5, "iterations": 10, "iteration_limit": 10, "converged": True}
        for name in CLASSES
    }
    report["wheeze"].update(iterations=3, iteration_limit=3, converged=False, warm_start=True)
    lines = format_fit_report(report).splitlines()
    assert "3 EM iterations from an inner fold, NOT converged (limit reached)" in lines[2]
    assert "from an inner fold" not in lines[0]
    assert lines[-1].strip().startswith("NOT converged means EM stopped at its limit of 3 iterations")
    assert f"at most {WARM_START_ITERATIONS} 'from an inner fold'" in lines[-1]
