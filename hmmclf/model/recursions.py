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
def forward_backward_all(startprob, transmat, emission, bounds, alpha, beta, log_probs):  # pragma: no cover
    """Scaled forward and backward passes of every sequence, for one E-step.

    ``alpha`` and ``beta`` (n_frames, n_states) receive the scaled forward
    and backward variables, ``log_probs`` (n_sequences,) the log-likelihoods.
    Returns -1, or the index of the first sequence whose forward pass
    underflowed (the outputs are then incomplete).
    """
    n_states = emission.shape[1]
    scaling = np.empty(emission.shape[0])
    for s in range(len(bounds) - 1):
        a, b = bounds[s], bounds[s + 1]
        if not _forward_one(startprob, transmat, emission, a, b, alpha, scaling):
            return s
        log_probs[s] = _sequence_log_prob(scaling, a, b)
        for i in range(n_states):
            beta[b - 1, i] = scaling[b - 1]
        for t in range(b - 2, a - 1, -1):
            for i in range(n_states):
                acc = 0.0
                for j in range(n_states):
                    acc += transmat[i, j] * emission[t + 1, j] * beta[t + 1, j]
                beta[t, i] = acc * scaling[t]
    return -1
