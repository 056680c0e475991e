"""Diagonal-Gaussian HMM numerics: emission densities, Baum-Welch EM and forward scoring.

hmmlearn's ``GaussianHMM.fit`` walks the training sequences one at a time in
Python: for each it evaluates the emission density, runs the compiled
forward and backward passes, and accumulates the sufficient statistics.  With
a few hundred short respiratory cycles per label state, that per-sequence
Python work costs more than the recursions themselves.  Here the emission
densities, posteriors, expected transition counts and sufficient statistics
are computed for all frames at once with a few matrix products, and the
forward and backward recursions of all sequences run in one compiled call
(:mod:`hmmclf.model.recursions`, the same operations as hmmlearn's kernels).  The
update is hmmlearn's, prior terms included, so a fit gives the same
parameters as ``GaussianHMM(covariance_type="diag", implementation="scaling")``
to rounding (``tests/test_baum_welch.py`` checks this), in about a third of the time.

Emission probabilities are divided by their per-frame maximum before the
scaled recursions (the log of the maximum is added back), which leaves the
posteriors unchanged and keeps the recursions from underflowing on frames
that are improbable under every state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hmmlearn import _hmmc

from .recursions import e_step_all, forward_all

# hmmlearn's GaussianHMM defaults for the diagonal covariance update:
# covars_prior=1e-2, covars_weight=1 (no weight term), means_weight=0.
COVARS_PRIOR = 1e-2


class UnderflowError(ValueError):
    """The scaled forward pass found a frame improbable under every reachable state."""


def gaussian_log_density(frames: np.ndarray, means: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """Log-density of each frame under each diagonal Gaussian state.

    Parameters
    ----------
    frames : (n_frames, n_features) array
    means, variances : (n_states, n_features) arrays

    Returns
    -------
    (n_frames, n_states) array
    """
    weights, const = density_weights(means, variances)
    n_features = frames.shape[1]
    return const + frames @ weights[:n_features] + (frames**2) @ weights[n_features:]


def density_weights(means: np.ndarray, variances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(2*n_features, n_states) weights and (n_states,) constants such that
    ``[x, x**2] @ weights + const`` is each frame's log-density under each diagonal Gaussian state:
    the one definition of the density, for Baum-Welch, scoring and :func:`gaussian_log_density`."""
    precision = 1.0 / variances
    const = -0.5 * (
        means.shape[1] * np.log(2 * np.pi) + np.log(variances).sum(axis=1) + (means**2 * precision).sum(axis=1)
    )
    return np.vstack([(means * precision).T, -0.5 * precision.T]), const


def scaled_emissions(log_emission: np.ndarray, overwrite: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Emission probabilities divided by each frame's largest, and the log of that largest.

    Parameters
    ----------
    log_emission : (n_frames, n_states) float64 array
    overwrite : bool
        Compute the probabilities in ``log_emission``'s memory.

    Returns
    -------
    emission : (n_frames, n_states) array, each row's maximum is 1
    log_frame_max : (n_frames,) array
    """
    # Column-wise maximum: numpy's reduction along a short last axis is several times slower.
    log_frame_max = np.maximum.reduce([log_emission[:, k] for k in range(log_emission.shape[1])])
    log_frame_max = np.where(np.isfinite(log_frame_max), log_frame_max, 0.0)
    out = log_emission if overwrite else None
    emission = np.subtract(log_emission, log_frame_max[:, None], out=out)
    return np.exp(emission, out=emission), log_frame_max


def _bounds(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.asarray(lengths, dtype=np.int64))])


def sequence_log_likelihoods(
    log_emission: np.ndarray,
    lengths: np.ndarray,
    startprob: np.ndarray,
    transmat: np.ndarray,
    per_frame: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Total log-likelihood of each sequence by the forward algorithm.

    Runs the compiled scaled forward pass over all sequences at once
    (:func:`~hmmclf.model.recursions.forward_all`); a sequence on which it
    underflows is recomputed with hmmlearn's log-space pass.

    Parameters
    ----------
    log_emission : (sum(lengths), n_states) array
        Frame log-densities of the concatenated sequences.
    lengths : (n_sequences,) int array
    startprob : (n_states,) array
    transmat : (n_states, n_states) array
    per_frame : bool
        Also return each frame's increment log p(x_t | x_1..x_{t-1}); the
        increments of a sequence sum to its total.

    Returns
    -------
    totals : (n_sequences,) array
    increments : (sum(lengths),) array, only when ``per_frame``
    """
    bounds = _bounds(lengths)
    emission, log_frame_max = scaled_emissions(log_emission)
    startprob = np.ascontiguousarray(startprob, dtype=float)
    transmat = np.ascontiguousarray(transmat, dtype=float)
    n_sequences = len(bounds) - 1
    totals = np.empty(n_sequences)
    scaling = np.ones(len(log_emission))
    ok = np.zeros(n_sequences, dtype=np.bool_)
    with np.errstate(all="ignore"):
        forward_all(startprob, transmat, emission, bounds, np.empty_like(emission), scaling, totals, ok)
        ok &= np.isfinite(totals)
        increments = -np.log(scaling) if per_frame else None
    # The few sequences on which the scaled pass underflowed are redone in log space.
    for i in np.flatnonzero(~ok).tolist():
        a, b = int(bounds[i]), int(bounds[i + 1])
        with np.errstate(divide="ignore", invalid="ignore"):
            log_prob, fwd = _hmmc.forward_log(startprob, transmat, log_emission[a:b] - log_frame_max[a:b, None])
        totals[i] = log_prob
        if per_frame:
            steps = np.logaddexp.reduce(fwd, axis=1)
            increments[a:b] = np.diff(steps, prepend=0.0)
    totals += np.add.reduceat(log_frame_max, bounds[:-1]) if len(totals) else 0.0
    if per_frame:
        increments += log_frame_max
        return totals, increments
    return totals


@dataclass
class EMResult:
    """Parameters after Baum-Welch and the log-likelihood before each update."""

    startprob: np.ndarray
    transmat: np.ndarray
    means: np.ndarray
    variances: np.ndarray
    history: list[float] = field(default_factory=list)

    @property
    def iterations(self) -> int:
        return len(self.history)


def frame_moments(frames: np.ndarray) -> np.ndarray:
    """``[x, x**2]`` of every frame, shape (n_frames, 2 * n_features), float64.

    Baum-Welch needs both in every iteration (densities and statistics are
    each one matrix product with them). A caller that builds this array first
    and works on its left half (``moments[:, :n_features]``, a view) holds the
    frames once instead of twice.
    """
    frames = np.asarray(frames, dtype=np.float64)
    moments = np.empty((len(frames), 2 * frames.shape[1]))
    moments[:, : frames.shape[1]] = frames
    np.square(frames, out=moments[:, frames.shape[1] :])
    return moments


def fit_on_moments(
    moments: np.ndarray,
    lengths: np.ndarray,
    startprob: np.ndarray,
    transmat: np.ndarray,
    means: np.ndarray,
    variances: np.ndarray,
    n_iter: int = 10,
    tol: float = 1e-2,
    covars_prior: float = COVARS_PRIOR,
) -> EMResult:
    """Baum-Welch EM of a diagonal-covariance Gaussian HMM from given starting parameters.

    Each iteration is hmmlearn's: an E-step under the current parameters, then
    the M-step (start and transition probabilities that were zero stay zero,
    which keeps a left-right topology; variances get hmmlearn's
    ``covars_prior``). It stops after ``n_iter`` iterations or when an
    iteration gains less than ``tol`` in total log-likelihood, as
    hmmlearn's ``ConvergenceMonitor`` does.

    Parameters
    ----------
    moments : (n_frames, 2 * n_features) array
        :func:`frame_moments` of the concatenated training sequences.
    lengths : (n_sequences,) int array
    startprob, transmat, means, variances : arrays
        Starting parameters, shapes (K,), (K, K), (K, n_features), (K, n_features).
    n_iter : int
    tol : float
        On the total (not per-frame) log-likelihood.
    covars_prior : float

    Returns
    -------
    EMResult

    Raises
    ------
    UnderflowError
        When the scaled recursions underflow; the caller may refit in log space.
    ValueError
        When ``lengths`` does not add up to the number of frames.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.sum() != len(moments) or np.any(lengths < 1):
        raise ValueError(
            f"lengths add up to {lengths.sum()} (min {lengths.min(initial=0)}) but there are {len(moments)} frames"
        )
    n_features = moments.shape[1] // 2
    bounds = _bounds(lengths)
    startprob, transmat = np.array(startprob, dtype=float), np.array(transmat, dtype=float)
    means, variances = np.array(means, dtype=float), np.array(variances, dtype=float)
    n_states = len(startprob)
    history: list[float] = []
    posterior = np.empty((len(moments), n_states))
    pair_sums, occupancy, start_sums = np.empty((n_states, n_states)), np.empty(n_states), np.empty(n_states)
    seq_log_probs = np.empty(len(bounds) - 1)
    for _ in range(n_iter):
        weights, const = density_weights(means, np.maximum(variances, np.finfo(float).tiny))
        log_emission = moments @ weights
        log_emission += const
        emission, log_frame_max = scaled_emissions(log_emission, overwrite=True)
        with np.errstate(all="ignore"):
            failed = e_step_all(
                startprob, transmat, emission, bounds, posterior, pair_sums, occupancy, start_sums, seq_log_probs
            )
        if failed >= 0:
            raise UnderflowError(f"the scaled forward pass underflowed on sequence {failed}")
        log_prob = float(seq_log_probs.sum()) + float(log_frame_max.sum())
        if not np.isfinite(log_prob):
            raise UnderflowError("non-finite log-likelihood in the scaled forward pass")
        del emission, log_emission
        history.append(log_prob)

        # M-step (hmmlearn's, with startprob_prior = transmat_prior = 1). With the scaled forward and
        # backward variables, the expected transition count is xi_t(i, j) = alpha_t(i) a_ij e_t+1(j)
        # beta_t+1(j), summed over the frames of every clip: a_ij times pair_sums[i, j].
        xi_sum = transmat * np.maximum(pair_sums, 0.0)
        start = np.where(startprob == 0, 0.0, np.maximum(start_sums, 0.0))
        startprob = start / start.sum()
        trans = np.where(transmat == 0, 0.0, np.maximum(xi_sum, 0.0))
        row_sums = trans.sum(axis=1, keepdims=True)
        transmat = np.divide(trans, row_sums, out=np.zeros_like(trans), where=row_sums > 0)
        sums = posterior.T @ moments
        obs, obs_sq = sums[:, :n_features], sums[:, n_features:]
        state_frames = occupancy[:, None]
        means = obs / state_frames
        variances = (covars_prior + obs_sq - 2 * means * obs + means**2 * state_frames) / np.maximum(state_frames, 1e-5)
        if len(history) >= 2 and history[-1] - history[-2] < tol:
            break
    return EMResult(startprob, transmat, means, variances, history)
