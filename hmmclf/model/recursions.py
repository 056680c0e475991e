"""Scaled forward and backward recursions over many concatenated sequences, compiled with numba.

A corpus of respiratory cycles is thousands of short sequences (about 100
frames each). Called once per sequence, hmmlearn's compiled recursions
(``hmmlearn._hmmc``) spend more time entering and leaving Python than
recursing: in a cross-validation of 5,500 clips the per-clip calls were a
third of all Baum-Welch time. These kernels walk every sequence of the
concatenation in one call.

Each recursion is the textbook scaled one (Rabiner 1989), with the
operations in the order hmmlearn's kernels use, so that a fit gives the same
parameters to the last bit (``tests/test_baum_welch.py`` compares both):

- forward: ``alpha[t, j] = (sum_i alpha[t-1, i] * A[i, j]) * e[t, j]``, then
  each row is divided by its sum ``1 / c[t]``;
- backward: ``beta[T-1, i] = c[T-1]`` and
  ``beta[t, i] = c[t] * sum_j A[i, j] * e[t+1, j] * beta[t+1, j]``;
- the sequence's log-likelihood is ``-sum_t log c[t]``, summed in frame order.

A row sum below ``MIN_ROW_SUM`` means the scaled pass underflowed (a frame
improbable under every reachable state); the kernels report which sequence,
and the caller falls back to log space for it.

The functions are compiled on first use and cached on disk (numba's
``cache=True``), so later processes load them in a fraction of a second.
"""

from __future__ import annotations

import numba
import numpy as np

MIN_ROW_SUM = 1e-300
"""hmmlearn's underflow threshold for the sum of one scaled forward row."""


@numba.njit(cache=True, nogil=True)
def _normalise_row(alpha, scaling, t, total):  # pragma: no cover - compiled
    """Divide forward row ``t`` by its sum ``total`` (kept as ``scaling[t] = 1 / total``); False on underflow."""
    if total < MIN_ROW_SUM:
        return False
    scale = 1.0 / total
    scaling[t] = scale
    for j in range(alpha.shape[1]):
        alpha[t, j] *= scale
    return True


@numba.njit(cache=True, nogil=True)
def _forward_one(startprob, transmat, emission, a, b, alpha, scaling):  # pragma: no cover - compiled
    n_states = emission.shape[1]
    total = 0.0
    for i in range(n_states):
        alpha[a, i] = startprob[i] * emission[a, i]
        total += alpha[a, i]
    if not _normalise_row(alpha, scaling, a, total):
        return False
    for t in range(a + 1, b):
        total = 0.0
        for j in range(n_states):
            acc = 0.0
            for i in range(n_states):
                acc += alpha[t - 1, i] * transmat[i, j]
            alpha[t, j] = acc * emission[t, j]
            total += alpha[t, j]
        if not _normalise_row(alpha, scaling, t, total):
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _sequence_log_prob(scaling, a, b):  # pragma: no cover - compiled
    log_prob = 0.0
    for t in range(a, b):
        log_prob -= np.log(scaling[t])
    return log_prob


@numba.njit(cache=True, nogil=True)
def forward_all(startprob, transmat, emission, bounds, alpha, scaling, log_probs, ok):  # pragma: no cover
    """Scaled forward pass of every sequence ``emission[bounds[s]:bounds[s+1]]``.

    Writes the scaled forward variables into ``alpha`` (n_frames, n_states),
    the scaling factors ``c[t]`` into ``scaling`` (n_frames,), each
    sequence's log-likelihood into ``log_probs`` and whether its pass stayed
    clear of underflow into ``ok`` (both (n_sequences,)). Returns the number
    of sequences that underflowed; their outputs are undefined.
    """
    failed = 0
    for s in range(len(bounds) - 1):
        a, b = bounds[s], bounds[s + 1]
        ok[s] = _forward_one(startprob, transmat, emission, a, b, alpha, scaling)
        if ok[s]:
            log_probs[s] = _sequence_log_prob(scaling, a, b)
        else:
            failed += 1
    return failed


@numba.njit(cache=True, nogil=True)
def e_step_all(
    startprob, transmat, emission, bounds, posterior, pair_sums, occupancy, start_sums, log_probs
):  # pragma: no cover - compiled
    """One Baum-Welch E-step over every sequence, in one pass: state posteriors and expected counts.

    ``emission`` (n_frames, n_states) holds the emission probabilities, each
    frame's scaled by any positive factor (the posteriors do not depend on it;
    :func:`hmmclf.model.baum_welch.scaled_emissions` divides each by the
    frame's largest, which keeps the recursions from underflowing). Per
    sequence, the scaled forward pass writes ``alpha`` into ``posterior``; the
    backward pass then runs with two rows of ``beta`` only and, going back,
    adds ``alpha[t, i] * e[t+1, j] * beta[t+1, j]`` to ``pair_sums[i, j]``
    (the expected transition count is that times ``A[i, j]``) and overwrites
    each ``alpha[t]`` with the posterior ``alpha[t] * beta[t] / sum``, added
    to ``occupancy`` (and, for a sequence's first frame, to ``start_sums``).
    ``log_probs`` (n_sequences,) receives the log-likelihoods of the scaled
    emissions.

    The forward and backward variables and the log-likelihoods are those of
    :func:`forward_all` and hmmlearn's kernels to the bit; the posteriors and
    counts are the sums of the matrix products and reductions they replace, in
    another order, so they agree to rounding. Holding neither ``beta`` nor
    ``e * beta`` for all frames halves the E-step's memory traffic.

    Returns -1, or the index of the first sequence whose forward pass
    underflowed (the outputs are then incomplete).
    """
    n_frames, n_states = emission.shape
    scaling = np.empty(n_frames)
    beta_next = np.empty(n_states)
    beta_here = np.empty(n_states)
    weighted = np.empty(n_states)
    pair_sums[:, :] = 0.0
    occupancy[:] = 0.0
    start_sums[:] = 0.0
    for s in range(len(bounds) - 1):
        a, b = bounds[s], bounds[s + 1]
        if not _forward_one(startprob, transmat, emission, a, b, posterior, scaling):
            return s
        log_probs[s] = _sequence_log_prob(scaling, a, b)
        for i in range(n_states):
            beta_next[i] = scaling[b - 1]
        for t in range(b - 2, a - 1, -1):
            for i in range(n_states):
                acc = 0.0
                for j in range(n_states):
                    acc += transmat[i, j] * emission[t + 1, j] * beta_next[j]
                beta_here[i] = acc * scaling[t]
            for j in range(n_states):
                weighted[j] = emission[t + 1, j] * beta_next[j]
            for i in range(n_states):
                for j in range(n_states):
                    pair_sums[i, j] += posterior[t, i] * weighted[j]
            _posterior_row(posterior, beta_next, t + 1, occupancy)
            for i in range(n_states):
                beta_next[i] = beta_here[i]
        _posterior_row(posterior, beta_next, a, occupancy)
        for i in range(n_states):
            start_sums[i] += posterior[a, i]
    return -1


@numba.njit(cache=True, nogil=True)
def _posterior_row(posterior, beta, t, occupancy):  # pragma: no cover - compiled
    """``posterior[t] = alpha[t] * beta / sum``, in place of ``alpha[t]``, added to ``occupancy``."""
    total = 0.0
    for i in range(posterior.shape[1]):
        posterior[t, i] *= beta[i]
        total += posterior[t, i]
    for i in range(posterior.shape[1]):
        posterior[t, i] /= total
        occupancy[i] += posterior[t, i]
