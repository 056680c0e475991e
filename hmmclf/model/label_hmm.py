"""The HMM of one label class: a diagonal Gaussian HMM, its initialisation, fitting and scoring.

Each label class (normal, crackle, wheeze, both) gets one such HMM, fitted on
the standardised frames of that class's clips. Its hidden *states* are
unobserved sound regimes (e.g. inspiration, expiration, a wheeze's tone); they
are not label classes.

Training does not go through hmmlearn's per-clip Python loop: emission
densities and sufficient statistics of all frames are matrix products, and
only the forward-backward recursions run per clip, in hmmlearn's compiled
kernels (see :mod:`hmmclf.model.baum_welch`). An emission model other than one
diagonal Gaussian per state belongs in this module alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from hmmlearn.hmm import GaussianHMM

from ..utils.files import checked_array
from .baum_welch import (
    UnderflowError,
    density_weights,
    fit_on_moments,
    frame_moments,
    gaussian_log_density,
    sequence_log_likelihoods,
)
from .config import ModelConfig


class FastDiagGaussianHMM(GaussianHMM):
    """hmmlearn's GaussianHMM with a faster emission density for diagonal covariances.

    hmmlearn evaluates the diagonal Gaussian log-density by broadcasting an
    (n_frames, n_states, n_features) array; the matrix-product form of
    :func:`~hmmclf.model.baum_welch.gaussian_log_density` gives the same numbers
    (tested) in a fraction of the time. It serves the log-space fallback fit,
    Viterbi decoding and hmmlearn's own ``score``; everything else is hmmlearn's.
    """

    def _compute_log_likelihood(self, X):
        return gaussian_log_density(X, self.means_, np.maximum(self._covars_, np.finfo(float).tiny))


def rebuild_hmm(
    startprob: np.ndarray, transmat: np.ndarray, means: np.ndarray, variances: np.ndarray
) -> FastDiagGaussianHMM:
    """A fitted-looking HMM from its parameter arrays (no further fitting)."""
    hmm = FastDiagGaussianHMM(n_components=len(startprob), covariance_type="diag", init_params="", params="")
    hmm.n_features = means.shape[1]
    hmm.startprob_ = startprob
    hmm.transmat_ = transmat
    hmm.means_ = means
    hmm.covars_ = variances
    return hmm


WARM_START_ITERATIONS = 3
"""EM iterations (at most ``n_iter``) of a fit that starts from an HMM already fitted to part of the
same clips (an inner fold's), instead of k-means and ``n_iter`` iterations. On the design half of
each shared database, 2, 3 and 5 iterations scored alike (within the seed spread) and alike the
cold start of hmmclf 0.8.0; 3 is the middle one."""


@dataclass(frozen=True)
class RawHMM:
    """An HMM's parameters with its Gaussians in the unstandardised feature units, so that a fit
    standardised differently can start from it (see :func:`raw_parameters`)."""

    startprob: np.ndarray
    transmat: np.ndarray
    means: np.ndarray
    variances: np.ndarray


def raw_parameters(hmm: GaussianHMM, feature_mean: np.ndarray, feature_scale: np.ndarray) -> RawHMM:
    """``hmm``'s parameters, its Gaussians taken back from standardised to feature units."""
    return RawHMM(
        np.array(hmm.startprob_, dtype=np.float64),
        np.array(hmm.transmat_, dtype=np.float64),
        np.asarray(hmm.means_) * feature_scale + feature_mean,
        np.asarray(hmm._covars_) * feature_scale**2,
    )


def fit_label_hmm(
    sequences: list[np.ndarray],
    feature_mean: np.ndarray,
    feature_scale: np.ndarray,
    settings: ModelConfig,
    seed: tuple[int, int],
    start: RawHMM | None = None,
) -> tuple[FastDiagGaussianHMM, dict[str, Any]]:
    """Fit the HMM of one label class on its clips' frames.

    Parameters
    ----------
    sequences : list of (n_frames, n_features) arrays
        The class's clips, unstandardised (float32 or float64).
    feature_mean, feature_scale : (n_features,) arrays
        Standardisation applied to every frame before fitting.
    settings : ModelConfig
        The fields n_states, topology, n_iter, tol, min_covar, init_frames,
        kmeans_restarts, fit_frames and implementation are read.
    seed : (int, int)
        Seeds the clip subsample, the frame subsample and k-means initialisation
        (the classifier passes ``(random_state, class index)``).
    start : RawHMM, optional
        An HMM of this class already fitted to part of these clips (an inner
        fold's): EM starts from it and runs at most :data:`WARM_START_ITERATIONS`
        iterations, without k-means. Ignored (a cold start) when its number
        of states or features differs from this fit's, with the log-space
        implementation, and when EM from it loses a state altogether.

    Returns
    -------
    hmm : FastDiagGaussianHMM
    report : dict
        Clips fitted on and available, frames, hidden states used, EM
        iterations, convergence, implementation and final log-likelihood per
        frame.
    """
    rng = np.random.default_rng(list(seed))
    n_available = len(sequences)
    sequences = _clip_subsample(sequences, settings.fit_frames, rng)
    lengths = np.array([len(s) for s in sequences])
    # One float64 array [x, x^2] (what Baum-Welch reads), with the standardised
    # frames x as its left half: the whole training set is never held in
    # float64 at once, nor this class's frames twice.
    n_features = sequences[0].shape[1]
    moments = np.empty((int(lengths.sum()), 2 * n_features))
    frames = moments[:, :n_features]
    np.concatenate(sequences, out=frames, casting="same_kind")
    frames -= feature_mean
    frames /= feature_scale
    np.square(frames, out=moments[:, n_features:])
    # Each hidden state's Gaussian needs several frames per dimension to be estimated.
    n_states = int(max(1, min(settings.n_states, len(frames) // (2 * n_features))))
    # hmmlearn's tol is on the total log-likelihood, which grows with the
    # number of frames; a per-frame tolerance means the same for every class.
    tol = settings.tol * len(frames)
    hmm = None
    # The log-space implementation (asked for by name) always starts cold.
    warm = start is not None and settings.implementation == "scaling" and start.means.shape == (n_states, n_features)
    if warm:
        limit = min(WARM_START_ITERATIONS, settings.n_iter)
        em = _scaled_em(moments, lengths, _warm_initial(start, feature_mean, feature_scale, settings), limit, tol)
        if em is not None:
            hmm, history, implementation = *em, "scaling"
        else:
            # A state the start hardly enters can lose every frame here: start afresh instead.
            warm = False
    if hmm is None:
        limit = settings.n_iter
        initial = _cold_initial(frames, lengths, n_states, settings, rng)
        log_space_seed = int(rng.integers(2**31 - 1))
        implementation = settings.implementation
        em = _scaled_em(moments, lengths, initial, limit, tol) if implementation == "scaling" else None
        if em is not None:
            hmm, history = em
        else:
            # The scaled recursions work in probability space and fail when a
            # frame is improbable under every reachable state; the log-space
            # variant cannot underflow.
            implementation = "log"
            hmm, history = _fit_log_space(frames, lengths, initial, settings, tol, log_space_seed)
    _repair_transitions(hmm)
    if not _finite(hmm.means_, hmm._covars_):
        raise ValueError("the HMM diverged to non-finite parameters")
    # Converged means the last EM step gained less than tol per frame (hmmlearn
    # also calls a run that used up n_iter "converged").
    converged = len(history) >= 2 and abs(history[-1] - history[-2]) < tol
    report = {
        "clips": len(sequences),
        "clips_available": n_available,
        "frames": int(len(frames)),
        "n_states": n_states,
        "iterations": len(history),
        "converged": bool(converged),
        "implementation": implementation,
        "log_likelihood_per_frame": float(history[-1] / len(frames)) if history else None,
        "iteration_limit": limit,
        "warm_start": bool(warm),
    }
    if n_states < settings.n_states:
        report["note"] = f"reduced from {settings.n_states} states: only {len(frames)} frames"
    return hmm, report


Initial = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""Start probabilities, transition matrix, means and variances (standardised units) EM starts from."""
WARM_PROBABILITY_FLOOR = 1e-3
"""Least start and transition probability of a warm start, so that a state the inner fold's HMM
never entered can still take frames (with none at all, its Gaussian would be 0 / 0)."""


def _cold_initial(
    frames: np.ndarray, lengths: np.ndarray, n_states: int, settings: ModelConfig, rng: np.random.Generator
) -> Initial:
    """k-means (ergodic) or equal time segments (left-right) and the usual transitions."""
    if settings.topology == "left-right":
        clips = np.split(frames, np.cumsum(lengths)[:-1])
        means, variances = _flat_start(clips, n_states, settings.min_covar)
        startprob = np.zeros(n_states)
        startprob[0] = 1.0
        transmat = np.diag(np.full(n_states, 0.8)) + np.diag(np.full(n_states - 1, 0.2), k=1)
        transmat[-1, -1] = 1.0
        return startprob, transmat, means, variances
    means, variances = _kmeans_start(
        frames, n_states, settings.init_frames, settings.min_covar, rng, settings.kmeans_restarts
    )
    startprob = np.full(n_states, 1.0 / n_states)
    transmat = np.full((n_states, n_states), 0.2 / max(1, n_states - 1)) if n_states > 1 else np.ones((1, 1))
    np.fill_diagonal(transmat, 0.8 if n_states > 1 else 1.0)
    return startprob, transmat, means, variances


def _warm_initial(start: RawHMM, feature_mean: np.ndarray, feature_scale: np.ndarray, settings: ModelConfig) -> Initial:
    """``start`` in this fit's standardised units, its probabilities floored at :data:`WARM_PROBABILITY_FLOOR`.

    A left-right start keeps its zeros: its topology forbids those transitions.
    """
    startprob, transmat = start.startprob, start.transmat
    if settings.topology != "left-right":
        startprob = np.maximum(startprob, WARM_PROBABILITY_FLOOR)
        startprob = startprob / startprob.sum()
        transmat = np.maximum(transmat, WARM_PROBABILITY_FLOOR)
        transmat = transmat / transmat.sum(axis=1, keepdims=True)
    means = (start.means - feature_mean) / feature_scale
    variances = np.maximum(start.variances / feature_scale**2, settings.min_covar)
    return startprob, transmat, means, variances


def _scaled_em(
    moments: np.ndarray, lengths: np.ndarray, initial: Initial, n_iter: int, tol: float
) -> tuple[FastDiagGaussianHMM, list[float]] | None:
    """Scaled-recursion EM from ``initial``; None when it underflows or ends non-finite."""
    try:
        with np.errstate(all="ignore"):
            em = fit_on_moments(moments, lengths, *initial, n_iter, tol)
    except (UnderflowError, ValueError):
        return None
    if not _finite(em.startprob, em.transmat, em.means, em.variances):
        return None
    return rebuild_hmm(em.startprob, em.transmat, em.means, em.variances), em.history


def _clip_subsample(sequences: list[np.ndarray], max_frames: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Whole clips drawn at random until ``max_frames`` frames are reached (all clips when they hold
    no more than that, or ``max_frames`` is 0); ``rng`` is drawn from only when clips are left out."""
    total = sum(len(s) for s in sequences)
    if max_frames <= 0 or total <= max_frames:
        return sequences
    order = rng.permutation(len(sequences))
    counts = np.cumsum([len(sequences[i]) for i in order])
    keep = int(np.searchsorted(counts, max_frames, side="right"))
    return [sequences[i] for i in np.sort(order[: max(1, keep)])]


def _finite(*arrays: np.ndarray) -> bool:
    return all(np.isfinite(a).all() for a in arrays)


def _fit_log_space(
    frames: np.ndarray,
    lengths: np.ndarray,
    initial: Initial,
    settings: ModelConfig,
    tol: float,
    seed: int,
) -> tuple[FastDiagGaussianHMM, list[float]]:
    """hmmlearn's own EM in log space (slower, but it cannot underflow)."""
    startprob, transmat, means, variances = initial
    hmm = FastDiagGaussianHMM(
        n_components=len(startprob),
        covariance_type="diag",
        min_covar=settings.min_covar,
        n_iter=settings.n_iter,
        tol=tol,
        random_state=seed,
        init_params="",
        params="stmc",
        implementation="log",
    )
    hmm.n_features = frames.shape[1]
    hmm.startprob_ = startprob
    hmm.transmat_ = transmat
    hmm.means_ = means
    hmm.covars_ = variances
    # hmmlearn logs a warning whenever an EM step loses likelihood (a
    # rounding-level event near convergence); the fit report records the
    # convergence instead of flooding the terminal from every worker.
    logger = logging.getLogger("hmmlearn.base")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with np.errstate(all="ignore"):
            hmm.fit(frames, lengths)
    finally:
        logger.setLevel(level)
    return hmm, list(hmm.monitor_.history)


def _kmeans_start(
    frames: np.ndarray, n_states: int, init_frames: int, min_covar: float, rng: np.random.Generator, restarts: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Means and variances of k-means clusters of a frame subsample."""
    from sklearn.cluster import KMeans

    sample = frames if len(frames) <= init_frames else frames[rng.choice(len(frames), init_frames, replace=False)]
    km = KMeans(n_clusters=n_states, n_init=restarts, random_state=int(rng.integers(2**31 - 1))).fit(sample)
    global_var = sample.var(axis=0) + min_covar
    variances = np.empty((n_states, frames.shape[1]))
    for k in range(n_states):
        members = sample[km.labels_ == k]
        # A cluster of one or two frames has no usable variance: borrow the global one.
        variances[k] = members.var(axis=0) + min_covar if len(members) > 2 else global_var
    return km.cluster_centers_.astype(float), variances


def _flat_start(sequences: list[np.ndarray], n_states: int, min_covar: float) -> tuple[np.ndarray, np.ndarray]:
    """Means and variances of equal time segments: the usual left-right initialisation."""
    buckets: list[list[np.ndarray]] = [[] for _ in range(n_states)]
    for seq in sequences:
        bounds = np.linspace(0, len(seq), n_states + 1).round().astype(int)
        for k in range(n_states):
            buckets[k].append(seq[bounds[k] : bounds[k + 1]])
    all_frames = np.concatenate(sequences)
    means = np.empty((n_states, all_frames.shape[1]))
    variances = np.empty_like(means)
    for k, parts in enumerate(buckets):
        block = np.concatenate(parts) if parts else all_frames
        if len(block) < 3:
            block = all_frames
        means[k] = block.mean(axis=0)
        variances[k] = block.var(axis=0) + min_covar
    return means, variances


def _repair_transitions(hmm: GaussianHMM) -> None:
    """Give every hidden state a valid outgoing distribution after EM.

    hmmlearn leaves an all-zero row for a state that no training frame visited,
    and then refuses to score; such a state is made to stay put (it is never
    entered, so this changes no likelihood).
    """
    transmat = np.array(hmm.transmat_, dtype=float)
    dead = transmat.sum(axis=1) <= 0
    if dead.any():
        for k in np.flatnonzero(dead):
            transmat[k] = 0.0
            transmat[k, k] = 1.0
        hmm.transmat_ = transmat
    startprob = np.array(hmm.startprob_, dtype=float)
    if startprob.sum() <= 0:
        startprob = np.zeros(len(startprob))
        startprob[0] = 1.0
        hmm.startprob_ = startprob


def log_likelihoods(
    hmms: list[GaussianHMM | None], frames: np.ndarray, lengths: np.ndarray, per_frame: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Forward log-likelihood of every clip under every HMM.

    Parameters
    ----------
    hmms : list of fitted HMMs (or None), one per label class
        A class without an HMM gets log-likelihood -inf.
    frames : (sum(lengths), n_features) array
        Standardised frames of all clips, concatenated.
    lengths : (n_clips,) array
    per_frame : bool
        Also return the per-frame increments log p(x_1..x_t) - log p(x_1..x_{t-1}).

    Returns
    -------
    totals : (n_clips, n_hmms) array
    increments : (sum(lengths), n_hmms) array, or None
    """
    totals = np.empty((len(lengths), len(hmms)))
    increments = np.empty((len(frames), len(hmms))) if per_frame else None
    fitted = [k for k, hmm in enumerate(hmms) if hmm is not None]
    if fitted:
        # The log-densities of every state of every HMM in one matrix product with [x, x**2]:
        # the frames are read once, not twice per HMM.
        blocks = [density_weights(hmms[k].means_, hmms[k]._covars_) for k in fitted]
        log_emission_all = frame_moments(frames) @ np.hstack([weights for weights, _ in blocks])
        log_emission_all += np.concatenate([const for _, const in blocks])
    column = 0
    for k, hmm in enumerate(hmms):
        if hmm is None:
            totals[:, k] = -np.inf
            if per_frame:
                increments[:, k] = -np.inf
            continue
        log_emission = log_emission_all[:, column : column + hmm.n_components]
        column += hmm.n_components
        if per_frame:
            totals[:, k], increments[:, k] = sequence_log_likelihoods(
                log_emission, lengths, hmm.startprob_, hmm.transmat_, per_frame=True
            )
        else:
            totals[:, k] = sequence_log_likelihoods(log_emission, lengths, hmm.startprob_, hmm.transmat_)
    return totals, increments


def hmm_to_arrays(hmm: GaussianHMM, prefix: str) -> dict[str, np.ndarray]:
    """The HMM's parameters as float64 arrays named ``<prefix>.<parameter>``."""
    return {
        f"{prefix}.startprob": np.asarray(hmm.startprob_, dtype=np.float64),
        f"{prefix}.transmat": np.asarray(hmm.transmat_, dtype=np.float64),
        f"{prefix}.means": np.asarray(hmm.means_, dtype=np.float64),
        f"{prefix}.variances": np.asarray(hmm._covars_, dtype=np.float64),
    }


def hmm_from_arrays(arrays: Mapping[str, np.ndarray], prefix: str, n_features: int) -> FastDiagGaussianHMM:
    """Rebuild an HMM saved by :func:`hmm_to_arrays`, validating every array.

    Raises
    ------
    ValueError
        For a missing array, a wrong dtype or shape, non-finite values, or
        probabilities that are not probabilities.
    """
    if f"{prefix}.startprob" not in arrays:
        raise ValueError(f"missing HMM {prefix!r}")
    k = arrays[f"{prefix}.startprob"].shape[0] if arrays[f"{prefix}.startprob"].ndim == 1 else -1
    if k < 1:
        raise ValueError(f"{prefix}.startprob must be 1-D")
    startprob = checked_array(arrays, f"{prefix}.startprob", (k,))
    transmat = checked_array(arrays, f"{prefix}.transmat", (k, k))
    means = checked_array(arrays, f"{prefix}.means", (k, n_features))
    variances = checked_array(arrays, f"{prefix}.variances", (k, n_features))
    if (startprob < 0).any() or not np.isclose(startprob.sum(), 1.0):
        raise ValueError(f"{prefix}.startprob is not a probability vector")
    if (transmat < 0).any() or not np.allclose(transmat.sum(axis=1), 1.0):
        raise ValueError(f"{prefix}.transmat rows are not probability vectors")
    if (variances <= 0).any():
        raise ValueError(f"{prefix}.variances must be positive")
    return rebuild_hmm(startprob, transmat, means, variances)


ABSENT_REPORT = {
    "clips": 0,
    "frames": 0,
    "n_states": 0,
    "iterations": 0,
    "converged": True,
    "note": "no training clips: no HMM for this class",
}


@dataclass
class LabelHMMTask:
    """What a worker needs to fit one label class's HMM (see :func:`fit_label_hmm`)."""

    sequences: list[np.ndarray]
    feature_mean: np.ndarray
    feature_scale: np.ndarray
    config: ModelConfig
    seed: tuple[int, int]
    start: RawHMM | None = None


def fit_label_hmm_task(task: LabelHMMTask) -> tuple[Any, dict[str, Any]]:
    """Worker: :func:`fit_label_hmm` on one class's clips."""
    return fit_label_hmm(task.sequences, task.feature_mean, task.feature_scale, task.config, task.seed, task.start)
