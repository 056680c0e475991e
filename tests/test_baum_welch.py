"""The all-frames Baum-Welch and forward scoring against hmmlearn's own."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hmmlearn.hmm import GaussianHMM

from hmmclf.model.baum_welch import (
    UnderflowError,
    fit_on_moments,
    frame_moments,
    gaussian_log_density,
    sequence_log_likelihoods,
)
from hmmclf.model.classifier import HMMClassifier


def sampled_sequences(seed: int = 0, n_sequences: int = 25, n_features: int = 3):
    """Sequences drawn from a 3-state HMM with well separated means."""
    rng = np.random.default_rng(seed)
    truth = GaussianHMM(n_components=3, covariance_type="diag", random_state=seed)
    truth.startprob_ = np.array([0.6, 0.3, 0.1])
    truth.transmat_ = np.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]])
    truth.means_ = rng.normal(scale=3.0, size=(3, n_features))
    truth.covars_ = rng.uniform(0.5, 1.5, size=(3, n_features))
    parts, lengths = [], []
    for i in range(n_sequences):
        frames, _ = truth.sample(int(rng.integers(5, 60)), random_state=seed * 1000 + i)
        parts.append(frames)
        lengths.append(len(frames))
    return np.concatenate(parts), np.array(lengths)


def hmmlearn_fit(frames, lengths, start, n_iter, tol):
    hmm = GaussianHMM(
        n_components=len(start[0]),
        covariance_type="diag",
        n_iter=n_iter,
        tol=tol,
        init_params="",
        params="stmc",
        implementation="scaling",
    )
    hmm.startprob_, hmm.transmat_, hmm.means_, hmm.covars_ = (np.array(a, dtype=float) for a in start)
    logger = logging.getLogger("hmmlearn.base")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        hmm.fit(frames, lengths)
    finally:
        logger.setLevel(level)
    return hmm


def starting_point(frames, topology="ergodic", n_states=3):
    rng = np.random.default_rng(1)
    means = frames[rng.choice(len(frames), n_states, replace=False)]
    variances = np.tile(frames.var(axis=0), (n_states, 1))
    if topology == "left-right":
        start = np.eye(n_states)[0]
        transmat = np.diag(np.full(n_states, 0.7)) + np.diag(np.full(n_states - 1, 0.3), k=1)
        transmat[-1, -1] = 1.0
    else:
        start = np.full(n_states, 1 / n_states)
        transmat = np.full((n_states, n_states), 0.1 / (n_states - 1))
        np.fill_diagonal(transmat, 0.9)
    return start, transmat, means, variances


@pytest.mark.parametrize("topology", ["ergodic", "left-right"])
def test_fit_matches_hmmlearn(topology):
    frames, lengths = sampled_sequences()
    start = starting_point(frames, topology)
    ours = fit_on_moments(frame_moments(frames), lengths, *start, n_iter=8, tol=-np.inf)
    ref = hmmlearn_fit(frames, lengths, start, n_iter=8, tol=-np.inf)
    assert ours.iterations == 8
    np.testing.assert_allclose(ours.history, ref.monitor_.history, rtol=1e-10)
    np.testing.assert_allclose(ours.startprob, ref.startprob_, atol=1e-10)
    np.testing.assert_allclose(ours.transmat, ref.transmat_, atol=1e-10)
    np.testing.assert_allclose(ours.means, ref.means_, atol=1e-9)
    np.testing.assert_allclose(ours.variances, ref._covars_, rtol=1e-9)
    if topology == "left-right":
        assert np.all(np.tril(ours.transmat, -1) == 0) and ours.startprob[0] == 1.0


def test_fit_stops_at_tolerance_like_hmmlearn():
    frames, lengths = sampled_sequences(seed=3)
    start = starting_point(frames)
    ours = fit_on_moments(frame_moments(frames), lengths, *start, n_iter=200, tol=1e-2)
    ref = hmmlearn_fit(frames, lengths, start, n_iter=200, tol=1e-2)
    assert 2 <= ours.iterations < 200
    assert ours.iterations == len(ref.monitor_.history)
    assert ours.history[-1] - ours.history[-2] < 1e-2
    # EM never loses likelihood (beyond rounding).
    assert np.all(np.diff(ours.history) > -1e-6)


def test_fit_rejects_lengths_that_do_not_add_up():
    frames, lengths = sampled_sequences()
    with pytest.raises(ValueError, match="lengths add up"):
        fit_on_moments(frame_moments(frames), lengths[:-1], *starting_point(frames))


def test_fit_reports_underflow():
    # State 1 is unreachable and the second frame is impossible under state 0.
    frames = np.array([[0.0], [1e6], [0.0]])
    start = (np.array([1.0, 0.0]), np.eye(2), np.array([[0.0], [1e6]]), np.array([[1e-6], [1.0]]))
    with pytest.raises(UnderflowError):
        fit_on_moments(frame_moments(frames), np.array([3]), *start, n_iter=2)


def test_sequence_log_likelihoods_match_hmmlearn_score_and_split_into_increments():
    frames, lengths = sampled_sequences(seed=5)
    start = starting_point(frames)
    hmm = hmmlearn_fit(frames, lengths, start, n_iter=3, tol=-np.inf)
    log_emission = gaussian_log_density(frames, hmm.means_, hmm._covars_)
    totals, increments = sequence_log_likelihoods(log_emission, lengths, hmm.startprob_, hmm.transmat_, per_frame=True)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    for i in range(len(lengths)):
        assert totals[i] == pytest.approx(hmm.score(frames[offsets[i] : offsets[i + 1]]), rel=1e-10)
    np.testing.assert_allclose(np.add.reduceat(increments, offsets[:-1]), totals, rtol=1e-10)


def test_sequence_log_likelihoods_fall_back_to_log_space():
    # Under state 0 alone the middle frame is ~1e12 nats improbable: the scaled pass
    # underflows, the log-space pass gives the finite answer.
    log_emission = np.array([[0.0, 0.0], [-1e12, 0.0], [0.0, 0.0]])
    startprob, transmat = np.array([1.0, 0.0]), np.eye(2)
    totals, increments = sequence_log_likelihoods(log_emission, np.array([3]), startprob, transmat, per_frame=True)
    assert totals[0] == pytest.approx(-1e12)
    np.testing.assert_allclose(increments, [0.0, -1e12, 0.0])


def test_classifier_falls_back_to_log_space_fit(monkeypatch):
    import hmmclf.model.label_hmm as model_module

    def always_underflow(*args, **kwargs):
        raise UnderflowError("forced for the test")

    rng = np.random.default_rng(0)
    X = [rng.normal(size=(30, 2)) + k for k in range(4) for _ in range(6)]
    y = [s for s in ("normal", "crackle", "wheeze", "both") for _ in range(6)]
    monkeypatch.setattr(model_module, "fit_on_moments", always_underflow)
    model = HMMClassifier(n_states=2, n_iter=3, decision="argmax").fit(X, y)
    assert {r["implementation"] for r in model.fit_report_.values()} == {"log"}
    assert model.predict(X).shape == (24,)


def test_classifier_scaling_and_log_give_the_same_models():
    rng = np.random.default_rng(2)
    X = [rng.normal(size=(int(rng.integers(20, 40)), 3)) + k for k in range(4) for _ in range(8)]
    y = [s for s in ("normal", "crackle", "wheeze", "both") for _ in range(8)]
    fast = HMMClassifier(n_states=2, n_iter=5, tol=0.0, decision="argmax").fit(X, y)
    slow = HMMClassifier(n_states=2, n_iter=5, tol=0.0, decision="argmax", implementation="log").fit(X, y)
    assert {r["implementation"] for r in fast.fit_report_.values()} == {"scaling"}
    for a, b in zip(fast.hmms_, slow.hmms_):
        np.testing.assert_allclose(a.means_, b.means_, atol=1e-7)
        np.testing.assert_allclose(a.transmat_, b.transmat_, atol=1e-7)
    np.testing.assert_allclose(fast.log_likelihood(X), slow.log_likelihood(X), rtol=1e-8)


def test_compiled_recursions_equal_hmmlearns_kernels():
    from hmmlearn import _hmmc

    from hmmclf.model.recursions import e_step_all, forward_all

    rng = np.random.default_rng(5)
    n_states = 4
    startprob = rng.dirichlet(np.ones(n_states))
    transmat = rng.dirichlet(np.ones(n_states), size=n_states)
    lengths = rng.integers(1, 80, size=40)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    emission = rng.random((bounds[-1], n_states)) + 1e-3
    posterior, pair_sums = np.empty_like(emission), np.empty((n_states, n_states))
    occupancy, start_sums, log_probs = np.empty(n_states), np.empty(n_states), np.empty(len(lengths))
    assert (
        e_step_all(startprob, transmat, emission, bounds, posterior, pair_sums, occupancy, start_sums, log_probs) == -1
    )
    scaling, totals, ok = np.empty(len(emission)), np.empty(len(lengths)), np.zeros(len(lengths), dtype=bool)
    alpha = np.empty_like(emission)
    assert forward_all(startprob, transmat, emission, bounds, alpha, scaling, totals, ok) == 0
    expected_pairs = np.zeros((n_states, n_states))
    for s, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        ref_log_prob, ref_alpha, ref_scaling = _hmmc.forward_scaling(startprob, transmat, emission[a:b])
        ref_beta = _hmmc.backward_scaling(startprob, transmat, emission[a:b], ref_scaling)
        # The forward pass and the log-likelihoods are hmmlearn's to the bit.
        assert log_probs[s] == ref_log_prob and totals[s] == ref_log_prob and ok[s]
        assert np.array_equal(alpha[a:b], ref_alpha) and np.array_equal(scaling[a:b], ref_scaling)
        # Posteriors and transition counts: the same sums, in another order.
        gamma = ref_alpha * ref_beta
        np.testing.assert_allclose(posterior[a:b], gamma / gamma.sum(axis=1, keepdims=True), rtol=1e-12)
        expected_pairs += ref_alpha[:-1].T @ (emission[a + 1 : b] * ref_beta[1:])
    np.testing.assert_allclose(pair_sums, expected_pairs, rtol=1e-12)
    np.testing.assert_allclose(occupancy, posterior.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(start_sums, posterior[bounds[:-1]].sum(axis=0), rtol=1e-12)


def test_compiled_forward_names_the_sequence_that_underflows():
    from hmmclf.model.recursions import e_step_all, forward_all

    startprob, transmat = np.array([1.0, 0.0]), np.array([[1.0, 0.0], [0.0, 1.0]])
    emission = np.array([[1.0, 1.0], [1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])  # 2nd sequence: state 0 impossible
    bounds = np.array([0, 2, 4])
    empty = np.empty_like(emission)
    pair_sums, occupancy, start_sums, log_probs = np.empty((2, 2)), np.empty(2), np.empty(2), np.empty(2)
    failed = e_step_all(startprob, transmat, emission, bounds, empty, pair_sums, occupancy, start_sums, log_probs)
    assert failed == 1
    ok = np.zeros(2, dtype=bool)
    assert forward_all(startprob, transmat, emission, bounds, empty, np.empty(4), np.empty(2), ok) == 1
    assert ok.tolist() == [True, False]
