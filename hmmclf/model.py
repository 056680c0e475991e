"""The classifier: one Gaussian HMM per label state, compared by log-likelihood.

:class:`HMMClassifier` follows scikit-learn's estimator API. ``X`` is a sequence
of clips, each a (n_frames, n_features) array; ``y`` holds label states
(``normal``, ``crackle``, ``wheeze``, ``both``). Training fits one diagonal
:class:`hmmlearn.hmm.GaussianHMM` per state on the frames of that state's
clips; a clip is assigned the state whose model gives the highest
*length-normalised* log-likelihood (per frame, so long clips do not dominate)
plus the state's log-prior and an optional offset.

Training and scoring do not go through hmmlearn's per-clip Python loop:
emission densities and sufficient statistics of all frames are matrix
products, and only the forward-backward recursions run per clip, in
hmmlearn's compiled kernels (see :mod:`hmmclf.baum_welch`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from hmmlearn.hmm import GaussianHMM
from sklearn.base import BaseEstimator, ClassifierMixin

from . import __version__
from ._atomic import atomic_write_text, load_npz, save_npz
from .baum_welch import UnderflowError, fit_on_moments, gaussian_log_density, sequence_log_likelihoods
from .errors import ModelFileError
from .labels import LABEL_STATES

MODEL_FORMAT = "hmmclf-model"
MODEL_FORMAT_VERSION = 1
TOPOLOGIES = ("ergodic", "left-right")
DECISIONS = ("tuned", "argmax", "stacked", "detectors")
N_STACK_FEATURES = 10
SCALE_FLOOR = 1e-6
MIN_GROUPS_PER_INNER_FOLD = 2


def _as_sequences(X: Sequence[np.ndarray], n_features: int | None = None) -> list[np.ndarray]:
    """Validate a sequence of 2-D frame arrays.

    Floating-point arrays keep their precision (a float32 feature cache is not
    copied to float64 as a whole: each label state's frames are converted
    when its HMM is fitted); other dtypes become float64.
    """
    if isinstance(X, np.ndarray) and X.ndim == 2:
        raise ValueError("X must be a sequence of (n_frames, n_features) arrays, one per clip, not one 2-D array")
    sequences = []
    for i, seq in enumerate(X):
        arr = np.asarray(seq)
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float64)
        if arr.ndim != 2 or arr.shape[0] < 1:
            raise ValueError(f"clip {i}: expected a (n_frames, n_features) array, got shape {arr.shape}")
        if n_features is not None and arr.shape[1] != n_features:
            raise ValueError(f"clip {i}: has {arr.shape[1]} features, the model expects {n_features}")
        if not np.isfinite(arr).all():
            raise ValueError(f"clip {i}: holds non-finite values")
        sequences.append(arr)
    if not sequences:
        raise ValueError("X holds no clips")
    return sequences


class FastDiagGaussianHMM(GaussianHMM):
    """hmmlearn's GaussianHMM with a faster emission density for diagonal covariances.

    hmmlearn evaluates the diagonal Gaussian log-density by broadcasting an
    (n_frames, n_states, n_features) array; the matrix-product form of
    :func:`~hmmclf.baum_welch.gaussian_log_density` gives the same numbers
    (tested) in a fraction of the time. It serves the log-space fallback fit,
    Viterbi decoding and hmmlearn's own ``score``; everything else is hmmlearn's.
    """

    def _compute_log_likelihood(self, X):
        return gaussian_log_density(X, self.means_, np.maximum(self._covars_, np.finfo(float).tiny))


class HMMClassifier(ClassifierMixin, BaseEstimator):
    """One Gaussian HMM per label state; the clip's state is the best-scoring model.

    Parameters
    ----------
    n_states : int
        Hidden states per HMM. Reduced (and reported in ``fit_report_``) for a
        label state whose frames are too few to estimate that many Gaussians.
    topology : {"ergodic", "left-right"}
        Ergodic HMMs may move between any states; left-right ones only stay
        or advance, and start in the first state.
    n_iter : int
        Most EM iterations per HMM.
    tol : float
        EM stops when an iteration gains less than this in log-likelihood per frame.
    min_covar : float
        Floor added to every variance (features are standardised first), so
        a state that captures near-identical frames cannot collapse.
    init_frames : int
        Frames sampled per label state for the k-means initialisation; k-means
        on all frames costs more than the EM itself and gains nothing.
    kmeans_restarts : int
        k-means runs (from different k-means++ seeds) per initialisation; the
        one with the lowest inertia is kept.
    standardize : bool
        Scale every feature to zero mean and unit variance with statistics of
        the training frames.
    class_prior : {"empirical", "uniform"}
        Log-prior added to each state's score: training clip frequencies, or equal.
    class_offsets : tuple of 4 floats, optional
        Extra additive offsets per state (order of ``LABEL_STATES``), e.g. tuned
        on inner folds to trade sensitivity against specificity.
    decision : {"tuned", "argmax", "stacked", "detectors"}
        "argmax" takes the best per-frame log-likelihood + log-prior + offset.
        "tuned" adds per-state offsets learnt from the training data alone:
        the training clips are split into ``inner_folds`` grouped folds, HMMs
        fitted on each inner training part score its held-out part, and the
        offsets of crackle, wheeze and both (normal stays 0) that maximise the
        ICBHI Score on those held-out scores are kept (``tuned_offsets_``).
        Per-frame likelihood differences between states are small next to the
        log-priors, so without such a calibration the rule answers "normal"
        almost always. "stacked" feeds :meth:`likelihood_statistics` of the
        held-out inner clips to a class-balanced multinomial logistic
        regression (the HMM log-likelihoods as features, calibrated), then
        tunes its offsets the same way on inner held-out predictions.
        "detectors" reads the same four HMMs as two detectors composed into
        the label set: crackle evidence = log(p_crackle + p_both) -
        log(p_normal + p_wheeze) per frame, wheeze evidence likewise, each
        compared with a threshold tuned on inner folds (two parameters
        instead of three offsets, each decided on twice the clips).
    stack_c : float
        Inverse L2 regularisation of the "stacked" logistic regression.
    inner_folds : int
        Inner folds of the "tuned" decision; with groups, each needs at least
        two groups, or the decision falls back to "argmax". Two by default:
        on the ICBHI dev set (5-fold CV, seeds 0-2) three gave the same Score
        within seed noise (51.3 +- 1.8 against 51.1 +- 0.8) for a third more
        HMM fitting.
    implementation : {"scaling", "log"}
        Forward-backward variant for training. "scaling" runs
        :func:`~hmmclf.baum_welch.fit_diag_gaussian_hmm` (hmmlearn's scaled
        recursions with all-frame statistics, several times faster than
        hmmlearn's log-space fit); a fit it cannot carry out (underflow) is
        redone with "log", hmmlearn's ``GaussianHMM`` in log space.
    random_state : int
        Seed of the k-means initialisation and the frame subsample.
    n_jobs : int
        Label-state models fitted in parallel.

    Attributes
    ----------
    classes_ : ndarray of str
        The label states, in the order of the columns of :meth:`predict_proba`.
    hmms_ : list of hmmlearn.hmm.GaussianHMM
    feature_mean_, feature_scale_ : ndarray
        Standardisation statistics of the training frames.
    class_log_prior_ : ndarray
    tuned_offsets_ : ndarray
        Offsets learnt by the "tuned" decision (zeros for "argmax").
    fit_report_ : dict
        Per state: clips, frames, states used, EM iterations, convergence;
        under ``"decision"`` how the offsets were tuned.
    n_features_in_ : int
    """

    def __init__(
        self,
        n_states: int = 5,
        topology: str = "ergodic",
        n_iter: int = 10,
        tol: float = 1e-3,
        min_covar: float = 1e-3,
        init_frames: int = 5000,
        kmeans_restarts: int = 3,
        standardize: bool = True,
        class_prior: str = "empirical",
        class_offsets: tuple[float, ...] | None = None,
        decision: str = "tuned",
        inner_folds: int = 2,
        stack_c: float = 1.0,
        implementation: str = "scaling",
        random_state: int = 0,
        n_jobs: int = 1,
    ) -> None:
        self.n_states = n_states
        self.topology = topology
        self.n_iter = n_iter
        self.tol = tol
        self.min_covar = min_covar
        self.init_frames = init_frames
        self.kmeans_restarts = kmeans_restarts
        self.standardize = standardize
        self.class_prior = class_prior
        self.class_offsets = class_offsets
        self.decision = decision
        self.inner_folds = inner_folds
        self.stack_c = stack_c
        self.implementation = implementation
        self.random_state = random_state
        self.n_jobs = n_jobs

    # ----------------------------------------------------------------- fitting
    def _check_params(self) -> None:
        problems = []
        if not isinstance(self.n_states, (int, np.integer)) or self.n_states < 1:
            problems.append(f"n_states must be a positive integer, got {self.n_states!r}")
        if self.topology not in TOPOLOGIES:
            problems.append(f"topology must be one of {TOPOLOGIES}, got {self.topology!r}")
        if self.n_iter < 1:
            problems.append(f"n_iter must be >= 1, got {self.n_iter}")
        if self.tol < 0 or self.min_covar <= 0:
            problems.append("tol must be >= 0 and min_covar > 0")
        if self.init_frames < 10:
            problems.append(f"init_frames must be >= 10, got {self.init_frames}")
        if not isinstance(self.kmeans_restarts, (int, np.integer)) or self.kmeans_restarts < 1:
            problems.append(f"kmeans_restarts must be a positive integer, got {self.kmeans_restarts!r}")
        if self.class_prior not in ("empirical", "uniform"):
            problems.append(f"class_prior must be 'empirical' or 'uniform', got {self.class_prior!r}")
        if self.class_offsets is not None and len(self.class_offsets) != len(LABEL_STATES):
            problems.append(f"class_offsets must have {len(LABEL_STATES)} values (one per state), got {self.class_offsets!r}")
        if self.decision not in DECISIONS:
            problems.append(f"decision must be one of {DECISIONS}, got {self.decision!r}")
        if not self.stack_c > 0:
            problems.append(f"stack_c must be positive, got {self.stack_c!r}")
        if not isinstance(self.inner_folds, (int, np.integer)) or self.inner_folds < 2:
            problems.append(f"inner_folds must be an integer >= 2, got {self.inner_folds!r}")
        if self.implementation not in ("log", "scaling"):
            problems.append(f"implementation must be 'log' or 'scaling', got {self.implementation!r}")
        if problems:
            raise ValueError("; ".join(problems))

    def fit(self, X: Sequence[np.ndarray], y: Sequence[str], groups: Sequence[str] | None = None) -> HMMClassifier:
        """Fit one HMM per label state (and, for ``decision="tuned"``, the offsets).

        Parameters
        ----------
        X : sequence of (n_frames, n_features) arrays
        y : sequence of str
            Label state of each clip.
        groups : sequence of str, optional
            Patient (or recording) of each clip: the inner folds of the
            "tuned" decision keep each group on one side, as the outer CV does.

        Raises
        ------
        ValueError
            For invalid parameters or input, or when a label state has no clip.
        """
        from .parallel import parallel_map

        self._check_params()
        sequences = _as_sequences(X)
        y = np.asarray(y, dtype=str)
        if len(y) != len(sequences):
            raise ValueError(f"X has {len(sequences)} clips but y has {len(y)} labels")
        unknown = sorted(set(y.tolist()) - set(LABEL_STATES))
        if unknown:
            raise ValueError(f"unknown label states {unknown}; expected {list(LABEL_STATES)}")
        empty = [s for s in LABEL_STATES if not np.any(y == s)]
        if empty:
            raise ValueError(f"label state(s) {', '.join(empty)} have no training clips; every state needs some")
        n_features = sequences[0].shape[1]
        sequences = _as_sequences(sequences, n_features)
        all_frames = np.concatenate(sequences)
        if self.standardize:
            self.feature_mean_ = all_frames.mean(axis=0, dtype=np.float64)
            self.feature_scale_ = np.maximum(all_frames.std(axis=0, dtype=np.float64), SCALE_FLOOR)
        else:
            self.feature_mean_ = np.zeros(n_features)
            self.feature_scale_ = np.ones(n_features)
        del all_frames
        self.classes_ = np.array(LABEL_STATES)
        self.n_features_in_ = n_features
        counts = np.array([np.sum(y == s) for s in LABEL_STATES], dtype=float)
        if self.class_prior == "empirical":
            self.class_log_prior_ = np.log(counts / counts.sum())
        else:
            self.class_log_prior_ = np.full(len(LABEL_STATES), -np.log(len(LABEL_STATES)))

        tasks = []
        for k, state in enumerate(LABEL_STATES):
            tasks.append((state, [sequences[i] for i in np.flatnonzero(y == state)], k))
        fitted = parallel_map(self._fit_state, tasks, n_jobs=self.n_jobs)
        self.hmms_ = [hmm for hmm, _ in fitted]
        self.fit_report_ = {state: report for (state, _, _), (_, report) in zip(tasks, fitted)}
        self.tuned_offsets_ = np.zeros(len(LABEL_STATES))
        self.stacker_ = None
        self.detector_thresholds_ = None
        if self.decision in ("tuned", "stacked", "detectors"):
            self.tuned_offsets_, self.fit_report_["decision"] = self._tune_offsets(sequences, y, groups)
        return self

    def _tune_offsets(
        self, sequences: list[np.ndarray], y: np.ndarray, groups: Sequence[str] | None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Offsets maximising the ICBHI Score of inner-fold held-out scores (training data only)."""
        from sklearn.base import clone

        from .evaluation import make_folds

        groups = None if groups is None else np.asarray(groups, dtype=str)
        n_groups = 0 if groups is None else len(set(groups.tolist()))
        if groups is not None and n_groups < MIN_GROUPS_PER_INNER_FOLD * self.inner_folds:
            # Offsets tuned on the clips of a single patient fit that patient, not the task.
            return np.zeros(len(LABEL_STATES)), {
                "rule": "argmax",
                "note": f"offsets not tuned: {n_groups} groups, fewer than {MIN_GROUPS_PER_INNER_FOLD} per inner fold",
            }
        try:
            folds = make_folds(y, groups, self.inner_folds, seed=self.random_state)
        except ValueError as exc:
            return np.zeros(len(LABEL_STATES)), {"rule": "argmax", "note": f"offsets not tuned: {exc}"}
        width = N_STACK_FEATURES if self.decision == "stacked" else len(LABEL_STATES)
        held_out = np.full((len(y), width), np.nan)
        for train, test in folds:
            if len(set(y[train].tolist())) < len(LABEL_STATES):
                return np.zeros(len(LABEL_STATES)), {
                    "rule": "argmax",
                    "note": "offsets not tuned: an inner training fold lacks a label state",
                }
            inner = clone(self).set_params(decision="argmax", n_jobs=1)
            inner.fit([sequences[i] for i in train], y[train])
            test_seqs = [sequences[i] for i in test]
            held_out[test] = inner.likelihood_statistics(test_seqs) if self.decision == "stacked" else inner.decision_scores(test_seqs)
        if self.decision == "stacked":
            # The regression's own held-out scores, over the same inner folds, tune the offsets.
            stacked_scores = np.empty((len(y), len(LABEL_STATES)))
            for train, test in folds:
                stacked_scores[test] = _fit_stacker(held_out[train], y[train], self.stack_c).scores(held_out[test])
            self.stacker_ = _fit_stacker(held_out, y, self.stack_c)
            held_out = stacked_scores
        if self.decision == "detectors":
            thresholds, score = search_thresholds(held_out, y)
            self.detector_thresholds_ = thresholds
            return np.zeros(len(LABEL_STATES)), {
                "rule": "detectors",
                "inner_folds": self.inner_folds,
                "grouped": groups is not None,
                "thresholds": [round(float(v), 6) for v in thresholds],
                "offsets": [0.0] * len(LABEL_STATES),
                "inner_score": round(float(score), 6),
            }
        offsets, score = search_offsets(held_out, y)
        return offsets, {
            "rule": self.decision,
            "inner_folds": self.inner_folds,
            "grouped": groups is not None,
            "offsets": [round(float(v), 6) for v in offsets],
            "inner_score": round(float(score), 6),
        }

    def _standardize(self, frames: np.ndarray) -> np.ndarray:
        return (frames - self.feature_mean_) / self.feature_scale_

    def _fit_state(self, task: tuple[str, list[np.ndarray], int]):
        """Fit the HMM of one label state; return it with a report of the fit."""

        state, raw_sequences, k = task
        lengths = np.array([len(s) for s in raw_sequences])
        # One float64 array per state, [x, x^2] (what Baum-Welch reads), with the
        # standardised frames x as its left half: the whole training set is
        # never held in float64 at once, nor this state's frames twice.
        n_features = raw_sequences[0].shape[1]
        moments = np.empty((int(lengths.sum()), 2 * n_features))
        frames = moments[:, :n_features]
        np.concatenate(raw_sequences, out=frames, casting="same_kind")
        frames -= self.feature_mean_
        frames /= self.feature_scale_
        np.square(frames, out=moments[:, n_features:])
        sequences = np.split(frames, np.cumsum(lengths)[:-1])
        # Each state's Gaussian needs several frames per dimension to be estimated.
        n_states = int(max(1, min(self.n_states, len(frames) // (2 * n_features))))
        rng = np.random.default_rng([self.random_state, k])
        if self.topology == "left-right":
            means, variances = _flat_start(sequences, n_states, self.min_covar)
            startprob = np.zeros(n_states)
            startprob[0] = 1.0
            transmat = np.diag(np.full(n_states, 0.8)) + np.diag(np.full(n_states - 1, 0.2), k=1)
            transmat[-1, -1] = 1.0
        else:
            means, variances = _kmeans_start(frames, n_states, self.init_frames, self.min_covar, rng, self.kmeans_restarts)
            startprob = np.full(n_states, 1.0 / n_states)
            transmat = np.full((n_states, n_states), 0.2 / max(1, n_states - 1)) if n_states > 1 else np.ones((1, 1))
            np.fill_diagonal(transmat, 0.8 if n_states > 1 else 1.0)

        def fit_log_space() -> tuple[FastDiagGaussianHMM, list[float]]:
            hmm = FastDiagGaussianHMM(
                n_components=n_states,
                covariance_type="diag",
                min_covar=self.min_covar,
                n_iter=self.n_iter,
                tol=tol,
                random_state=seed,
                init_params="",
                params="stmc",
                implementation="log",
            )
            hmm.n_features = n_features
            hmm.startprob_ = startprob
            hmm.transmat_ = transmat
            hmm.means_ = means
            hmm.covars_ = variances
            # hmmlearn logs a warning whenever an EM step loses likelihood (a
            # rounding-level event near convergence); fit_report_ records the
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

        def finite(*arrays: np.ndarray) -> bool:
            return all(np.isfinite(a).all() for a in arrays)

        seed = int(rng.integers(2**31 - 1))
        # hmmlearn's tol is on the total log-likelihood, which grows with the
        # number of frames; a per-frame tolerance means the same for every state.
        tol = self.tol * len(frames)
        implementation = self.implementation
        hmm = None
        if implementation == "scaling":
            try:
                with np.errstate(all="ignore"):
                    em = fit_on_moments(moments, lengths, startprob, transmat, means, variances, self.n_iter, tol)
                if finite(em.startprob, em.transmat, em.means, em.variances):
                    hmm, history = _rebuild_hmm(em.startprob, em.transmat, em.means, em.variances), em.history
            except (UnderflowError, ValueError):
                pass
            if hmm is None:
                # The scaled recursions work in probability space and fail when a
                # frame is improbable under every reachable state; the log-space
                # variant cannot underflow.
                implementation = "log"
        if hmm is None:
            hmm, history = fit_log_space()
        _repair_transitions(hmm, self.topology)
        if not finite(hmm.means_, hmm._covars_):
            raise ValueError(f"the HMM of state {state!r} diverged to non-finite parameters")
        # Converged means the last EM step gained less than tol per frame (hmmlearn
        # also calls a run that used up n_iter "converged").
        converged = len(history) >= 2 and abs(history[-1] - history[-2]) < tol
        report = {
            "clips": len(sequences),
            "frames": int(len(frames)),
            "n_states": n_states,
            "iterations": len(history),
            "converged": bool(converged),
            "implementation": implementation,
            "log_likelihood_per_frame": float(history[-1] / len(frames)) if history else None,
        }
        if n_states < self.n_states:
            report["note"] = f"reduced from {self.n_states} states: only {len(frames)} frames"
        return hmm, report

    # ----------------------------------------------------------------- scoring
    def _check_fitted(self) -> None:
        if not hasattr(self, "hmms_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this HMMClassifier is not fitted yet; call fit first")

    def log_likelihood(self, X: Sequence[np.ndarray]) -> np.ndarray:
        """Total log-likelihood of each clip under each state's HMM, shape (n_clips, 4)."""
        return self._forward(X, per_frame=False)[0]

    def _forward(self, X: Sequence[np.ndarray], per_frame: bool = True) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Totals (n_clips, 4), per-frame increments (n_frames_total, 4) or None, and clip lengths."""
        self._check_fitted()
        sequences = _as_sequences(X, self.n_features_in_)
        lengths = np.array([len(s) for s in sequences])
        frames = self._standardize(np.concatenate(sequences))
        totals = np.empty((len(sequences), len(self.hmms_)))
        increments = np.empty((len(frames), len(self.hmms_))) if per_frame else None
        for k, hmm in enumerate(self.hmms_):
            log_emission = gaussian_log_density(frames, hmm.means_, hmm._covars_)
            if per_frame:
                totals[:, k], increments[:, k] = sequence_log_likelihoods(
                    log_emission, lengths, hmm.startprob_, hmm.transmat_, per_frame=True
                )
            else:
                totals[:, k] = sequence_log_likelihoods(log_emission, lengths, hmm.startprob_, hmm.transmat_)
        return totals, increments, lengths

    def likelihood_statistics(self, X: Sequence[np.ndarray]) -> np.ndarray:
        """Clip descriptors built from the HMM likelihoods, shape (n_clips, 10).

        Per state, the per-frame log-likelihood (4 columns); per abnormal state,
        the 90th percentile and the maximum of its 100 ms moving-average
        per-frame log-likelihood ratio against ``normal`` (6 columns). The
        percentiles see a short wheeze or a burst of crackles that the clip
        average dilutes. They feed the "stacked" decision.
        """
        totals, increments, lengths = self._forward(X)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        out = np.empty((len(lengths), 10))
        out[:, :4] = totals / lengths[:, None]
        ratio = increments[:, 1:] - increments[:, :1]
        for i in range(len(lengths)):
            clip = ratio[offsets[i] : offsets[i + 1]]
            width = min(5, len(clip))
            smooth = np.apply_along_axis(lambda c: np.convolve(c, np.ones(width) / width, mode="valid"), 0, clip)
            out[i, 4:7] = np.percentile(clip, 90, axis=0)
            out[i, 7:10] = smooth.max(axis=0)
        return out

    def _offsets(self) -> np.ndarray:
        user = np.zeros(len(LABEL_STATES)) if self.class_offsets is None else np.asarray(self.class_offsets, float)
        return user + getattr(self, "tuned_offsets_", 0.0)

    def decision_scores(self, X: Sequence[np.ndarray], log_likelihood: np.ndarray | None = None) -> np.ndarray:
        """Per-frame log-likelihood + log-prior + offset of each state, shape (n_clips, 4).

        ``log_likelihood`` from :meth:`log_likelihood` may be passed to avoid
        scoring the clips twice.
        """
        if getattr(self, "stacker_", None) is not None:
            return self.stacker_.scores(self.likelihood_statistics(X)) + self._offsets()
        if log_likelihood is None:
            log_likelihood = self.log_likelihood(X)
        lengths = np.array([len(s) for s in X], dtype=float)
        scores = log_likelihood / lengths[:, None] + self.class_log_prior_ + self._offsets()
        if getattr(self, "detector_thresholds_", None) is not None:
            return detector_scores(scores, self.detector_thresholds_)
        return scores

    def decision_function(self, X: Sequence[np.ndarray]) -> np.ndarray:
        """Same as :meth:`decision_scores` (scikit-learn's name)."""
        return self.decision_scores(X)

    def predict_proba(self, X: Sequence[np.ndarray]) -> np.ndarray:
        """Posterior of each state: softmax of :meth:`decision_scores`."""
        return softmax(self.decision_scores(X))

    def predict(self, X: Sequence[np.ndarray]) -> np.ndarray:
        """Label state of each clip."""
        return self.classes_[np.argmax(self.decision_scores(X), axis=1)]

    def score(self, X: Sequence[np.ndarray], y: Sequence[str], sample_weight: Any = None) -> float:
        """ICBHI Score, (sensitivity + specificity) / 2, of the predictions for ``X``.

        Replaces accuracy, which rewards always answering ``normal``.
        """
        from .evaluation import icbhi_metrics

        return icbhi_metrics(np.asarray(y, dtype=str), self.predict(X))["score"]

    def decode(self, frames: np.ndarray) -> dict[str, tuple[float, np.ndarray]]:
        """Viterbi path of one clip under every state's HMM.

        Returns
        -------
        dict
            state -> (Viterbi log-probability, hidden-state index per frame).
        """
        self._check_fitted()
        (seq,) = _as_sequences([frames], self.n_features_in_)
        seq = self._standardize(seq)
        return {state: hmm.decode(seq, algorithm="viterbi") for state, hmm in zip(self.classes_, self.hmms_)}

    def frame_log_likelihood(self, frames: np.ndarray) -> np.ndarray:
        """Per-frame log-likelihood increments of one clip under each HMM, shape (n_frames, 4).

        The increments are differences of successive forward log-likelihoods
        log p(x_1..x_t) - log p(x_1..x_{t-1}); their sum is the clip's total.
        """
        return self._forward([frames])[1]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.non_deterministic = False
        return tags


class Stacker:
    """A fitted standardise + multinomial logistic regression, kept as plain arrays.

    Plain arrays (not a scikit-learn object) so that a model file stores it
    without pickle.
    """

    def __init__(self, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> None:
        self.mean, self.scale, self.coef, self.intercept = mean, scale, coef, intercept

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Log-odds of each state (columns in ``LABEL_STATES`` order)."""
        return ((features - self.mean) / self.scale) @ self.coef.T + self.intercept


def _fit_stacker(features: np.ndarray, y: np.ndarray, c: float) -> Stacker:
    from sklearn.linear_model import LogisticRegression

    mean = features.mean(axis=0)
    scale = np.maximum(features.std(axis=0), SCALE_FLOOR)
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
    lr.fit((features - mean) / scale, y)
    order = [list(lr.classes_).index(s) for s in LABEL_STATES]
    return Stacker(mean, scale, lr.coef_[order].astype(float), lr.intercept_[order].astype(float))


def detector_evidence(scores: np.ndarray) -> np.ndarray:
    """(n, 2) crackle and wheeze evidence from per-state scores (normal, crackle, wheeze, both)."""
    pair = lambda a, b: np.logaddexp(scores[:, a], scores[:, b])  # noqa: E731
    return np.stack([pair(1, 3) - pair(0, 2), pair(2, 3) - pair(0, 1)], axis=1)


def detector_scores(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per-state log-scores whose argmax is the composed two-detector decision.

    With p = sigmoid(evidence - threshold) for crackle and wheeze, taken as
    independent, the states get log((1-pc)(1-pw)), log(pc(1-pw)),
    log((1-pc)pw) and log(pc pw); each factor exceeds 1/2 exactly when its
    evidence passes its threshold.
    """
    margin = detector_evidence(scores) - np.asarray(thresholds)[None, :]
    log_yes = -np.logaddexp(0.0, -margin)
    log_no = -np.logaddexp(0.0, margin)
    return np.stack(
        [log_no[:, 0] + log_no[:, 1], log_yes[:, 0] + log_no[:, 1], log_no[:, 0] + log_yes[:, 1], log_yes[:, 0] + log_yes[:, 1]],
        axis=1,
    )


def _state_indices(y: Sequence[str]) -> np.ndarray:
    """Index of each label state in ``LABEL_STATES`` (ValueError for an unknown one)."""
    index = {state: i for i, state in enumerate(LABEL_STATES)}
    try:
        return np.array([index[s] for s in np.asarray(y, dtype=str).tolist()], dtype=np.int64)
    except KeyError as exc:
        raise ValueError(f"unknown label state {exc.args[0]!r}") from None


def search_thresholds(scores: np.ndarray, y: np.ndarray, n_candidates: int = 40) -> tuple[np.ndarray, float]:
    """Crackle and wheeze thresholds maximising the ICBHI Score (grid over evidence quantiles)."""
    from .evaluation import icbhi_score_from_indices

    true_index = _state_indices(y)
    evidence = detector_evidence(scores)
    grid = [np.concatenate([[0.0], np.quantile(evidence[:, j], np.linspace(0, 1, n_candidates))]) for j in range(2)]
    best, best_t = -1.0, np.zeros(2)
    for tc in grid[0]:
        crackle = evidence[:, 0] > tc
        for tw in grid[1]:
            wheeze = evidence[:, 1] > tw
            value = icbhi_score_from_indices(true_index, crackle.astype(int) + 2 * wheeze.astype(int))
            if value > best + 1e-12 or (abs(value - best) <= 1e-12 and abs(tc) + abs(tw) < np.abs(best_t).sum()):
                best, best_t = value, np.array([tc, tw])
    return best_t, best


def search_offsets(scores: np.ndarray, y: np.ndarray, rounds: int = 4, n_candidates: int = 48) -> tuple[np.ndarray, float]:
    """Per-state additive offsets maximising the ICBHI Score of ``argmax(scores + offsets)``.

    Coordinate ascent, deterministic: first one common offset for the three
    abnormal states (the sensitivity/specificity trade-off), then each
    abnormal state's own, over candidate values at quantiles of the margin
    that state must overcome. Normal's offset stays 0. Ties keep the offset
    nearest 0, so a flat objective does not drift.

    Returns
    -------
    (offsets, best Score)
    """
    from .evaluation import icbhi_score_from_indices

    true_index = _state_indices(y)
    offsets = np.zeros(len(LABEL_STATES))

    def objective(candidate: np.ndarray) -> float:
        return icbhi_score_from_indices(true_index, np.argmax(scores + candidate, axis=1))

    def candidates(columns: list[int], current: np.ndarray) -> np.ndarray:
        shifted = scores + current
        others = np.delete(shifted, columns, axis=1).max(axis=1)
        margin = others - shifted[:, columns].max(axis=1)
        values = np.quantile(margin, np.linspace(0.0, 1.0, n_candidates)) + 1e-9
        return np.concatenate([[0.0], values])

    best = objective(offsets)
    moves = [[1, 2, 3]] + [[1], [2], [3]] * rounds
    for columns in moves:
        for step in candidates(columns, offsets):
            trial = offsets.copy()
            trial[columns] += step
            value = objective(trial)
            if value > best + 1e-12 or (abs(value - best) <= 1e-12 and np.abs(trial).sum() < np.abs(offsets).sum()):
                best, offsets = value, trial
    return offsets, best


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _kmeans_start(
    frames: np.ndarray, n_states: int, init_frames: int, min_covar: float, rng: np.random.Generator, restarts: int = 3
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


def _repair_transitions(hmm, topology: str) -> None:
    """Give every state a valid outgoing distribution after EM.

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


# --------------------------------------------------------------------- saving
def _rebuild_hmm(startprob: np.ndarray, transmat: np.ndarray, means: np.ndarray, variances: np.ndarray):
    hmm = FastDiagGaussianHMM(n_components=len(startprob), covariance_type="diag", init_params="", params="")
    hmm.n_features = means.shape[1]
    hmm.startprob_ = startprob
    hmm.transmat_ = transmat
    hmm.means_ = means
    hmm.covars_ = variances
    return hmm


def save_model(model: HMMClassifier, path: str | os.PathLike[str], feature_config: Any) -> Path:
    """Save a fitted model as a pickle-free npz file (arrays + embedded JSON metadata).

    A human-readable copy of the metadata is written beside it as ``.json``.
    Both writes are atomic.
    """
    model._check_fitted()
    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "feature_mean": model.feature_mean_,
        "feature_scale": model.feature_scale_,
        "class_log_prior": model.class_log_prior_,
        "tuned_offsets": np.asarray(model.tuned_offsets_, dtype=np.float64),
    }
    if getattr(model, "detector_thresholds_", None) is not None:
        arrays["detector_thresholds"] = np.asarray(model.detector_thresholds_, dtype=np.float64)
    if getattr(model, "stacker_", None) is not None:
        for name in ("mean", "scale", "coef", "intercept"):
            arrays[f"stacker.{name}"] = np.asarray(getattr(model.stacker_, name), dtype=np.float64)
    for state, hmm in zip(model.classes_, model.hmms_):
        arrays[f"{state}.startprob"] = np.asarray(hmm.startprob_, dtype=np.float64)
        arrays[f"{state}.transmat"] = np.asarray(hmm.transmat_, dtype=np.float64)
        arrays[f"{state}.means"] = np.asarray(hmm.means_, dtype=np.float64)
        arrays[f"{state}.variances"] = np.asarray(hmm._covars_, dtype=np.float64)
    params = model.get_params()
    if params.get("class_offsets") is not None:
        params["class_offsets"] = [float(v) for v in params["class_offsets"]]
    meta = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "hmmclf_version": __version__,
        "states": list(model.classes_),
        "n_features": int(model.n_features_in_),
        "params": params,
        "feature_config": feature_config.to_dict(),
        "feature_config_fingerprint": feature_config.fingerprint(),
        "fit_report": model.fit_report_,
    }
    arrays["meta"] = np.array(json.dumps(meta))
    save_npz(path, arrays)
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2))
    return path


def load_model(path: str | os.PathLike[str]):
    """Load and validate a model saved by :func:`save_model`.

    Returns
    -------
    (HMMClassifier, FeatureConfig)

    Raises
    ------
    ModelFileError
        For a missing, damaged, foreign or inconsistent file. Nothing in the
        file is unpickled or executed (``allow_pickle=False``).
    """
    from .features import FeatureConfig

    path = Path(path)
    arrays = load_npz(path, ModelFileError, "model file", "run 'hmmclf train'")
    try:
        if "meta" not in arrays or arrays["meta"].dtype.kind != "U" or arrays["meta"].ndim != 0:
            raise ValueError("no hmmclf metadata")
        meta = json.loads(str(arrays["meta"]))
        if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
            raise ValueError("not an hmmclf model")
        if meta.get("format_version") != MODEL_FORMAT_VERSION:
            raise ValueError(
                f"model format version {meta.get('format_version')!r}; this hmmclf reads {MODEL_FORMAT_VERSION}"
            )
        if list(meta.get("states", [])) != list(LABEL_STATES):
            raise ValueError(f"label states {meta.get('states')!r} differ from {list(LABEL_STATES)}")
        config = FeatureConfig.from_dict(meta["feature_config"])
        if config.fingerprint() != meta.get("feature_config_fingerprint"):
            raise ValueError("feature config does not match its fingerprint")
        n_features = int(meta["n_features"])
        if n_features != config.n_features:
            raise ValueError(f"model has {n_features} features, its feature config gives {config.n_features}")
        params = dict(meta["params"])
        if params.get("class_offsets") is not None:
            params["class_offsets"] = tuple(float(v) for v in params["class_offsets"])
        model = HMMClassifier(**params)
        model._check_params()

        def array(name: str, shape: tuple[int, ...]) -> np.ndarray:
            if name not in arrays:
                raise ValueError(f"missing array {name!r}")
            arr = arrays[name]
            if arr.dtype != np.float64 or arr.shape != shape:
                raise ValueError(f"array {name!r} has dtype {arr.dtype} shape {arr.shape}, expected float64 {shape}")
            if not np.isfinite(arr).all():
                raise ValueError(f"array {name!r} holds non-finite values")
            return arr

        model.feature_mean_ = array("feature_mean", (n_features,))
        model.feature_scale_ = array("feature_scale", (n_features,))
        if (model.feature_scale_ <= 0).any():
            raise ValueError("feature_scale must be positive")
        model.class_log_prior_ = array("class_log_prior", (len(LABEL_STATES),))
        model.tuned_offsets_ = array("tuned_offsets", (len(LABEL_STATES),))
        model.detector_thresholds_ = array("detector_thresholds", (2,)) if "detector_thresholds" in arrays else None
        model.stacker_ = None
        if "stacker.coef" in arrays:
            model.stacker_ = Stacker(
                array("stacker.mean", (N_STACK_FEATURES,)),
                array("stacker.scale", (N_STACK_FEATURES,)),
                array("stacker.coef", (len(LABEL_STATES), N_STACK_FEATURES)),
                array("stacker.intercept", (len(LABEL_STATES),)),
            )
            if (model.stacker_.scale <= 0).any():
                raise ValueError("stacker.scale must be positive")
        hmms = []
        for state in LABEL_STATES:
            if f"{state}.startprob" not in arrays:
                raise ValueError(f"missing HMM of state {state!r}")
            k = arrays[f"{state}.startprob"].shape[0] if arrays[f"{state}.startprob"].ndim == 1 else -1
            if k < 1:
                raise ValueError(f"{state}.startprob must be 1-D")
            startprob = array(f"{state}.startprob", (k,))
            transmat = array(f"{state}.transmat", (k, k))
            means = array(f"{state}.means", (k, n_features))
            variances = array(f"{state}.variances", (k, n_features))
            if (startprob < 0).any() or not np.isclose(startprob.sum(), 1.0):
                raise ValueError(f"{state}.startprob is not a probability vector")
            if (transmat < 0).any() or not np.allclose(transmat.sum(axis=1), 1.0):
                raise ValueError(f"{state}.transmat rows are not probability vectors")
            if (variances <= 0).any():
                raise ValueError(f"{state}.variances must be positive")
            hmms.append(_rebuild_hmm(startprob, transmat, means, variances))
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelFileError(f"{path}: invalid model file ({exc})") from None
    model.hmms_ = hmms
    model.classes_ = np.array(LABEL_STATES)
    model.n_features_in_ = n_features
    model.fit_report_ = meta.get("fit_report", {})
    return model, config
