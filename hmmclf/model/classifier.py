"""The classifier: one Gaussian HMM per label class, compared by log-likelihood.

:class:`HMMClassifier` follows scikit-learn's estimator API. ``X`` is a sequence
of clips, each a (n_frames, n_features) array; ``y`` holds label classes
(``normal``, ``crackle``, ``wheeze``, ``both``). Training fits one diagonal
Gaussian HMM per class on the frames of that class's clips
(:mod:`hmmclf.model.label_hmm`); a clip is scored by every class's HMM, and a
decision rule (:mod:`hmmclf.model.decision`) turns the
*length-normalised* log-likelihoods (per frame, so long clips do not dominate)
plus log-priors, or their per-frame increments, into the clip's class.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin

from ..data.features import clip_statistics, column_mean_std
from ..task.classes import CLASS_LABELS, CLASSES
from ..task.metrics import icbhi_metrics
from ..task.splits import make_folds
from .config import ModelConfig
from .decision import make_decision_rule
from .decision.base import ArgmaxRule, ClipLikelihoods, DecisionRule
from .inner_choice import choose_columns, cut_to, fit_rule_on_inner_folds, warm_start
from .label_hmm import ABSENT_REPORT, LabelHMMTask, fit_label_hmm_task, log_likelihoods, rebuild_hmm

SCALE_FLOOR = 1e-6
SCORING_BLOCK_FRAMES = 50_000
"""Frames scored together (whole clips; a longer clip is a block of its own)."""
MIN_GROUPS_PER_INNER_FOLD = 2


def check_sequences(X: Sequence[np.ndarray], n_features: int | None = None) -> list[np.ndarray]:
    """Validate a sequence of 2-D frame arrays, one per clip.

    Floating-point arrays keep their precision (a float32 feature cache is not
    copied to float64 as a whole: each class's frames are converted when its
    HMM is fitted); other dtypes become float64.
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


def _clip_blocks(n_frames: np.ndarray, max_frames: int) -> list[np.ndarray]:
    """Consecutive clip indices in blocks of at most ``max_frames`` frames (at least one clip each)."""
    blocks, start, held = [], 0, 0
    for i, n in enumerate(n_frames):
        if i > start and held + n > max_frames:
            blocks.append(np.arange(start, i))
            start, held = i, 0
        held += int(n)
    blocks.append(np.arange(start, len(n_frames)))
    return blocks


@dataclass
class ClipScores:
    """Scores of a set of clips: what :meth:`HMMClassifier.score_clips` returns.

    Attributes
    ----------
    likelihoods : ClipLikelihoods
        Per-class HMM log-likelihoods (and per-frame increments when asked for).
    decision : (n_clips, 4) array
        The decision rule's scores; the predicted class is their argmax.
    """

    likelihoods: ClipLikelihoods
    decision: np.ndarray

    @property
    def log_likelihood(self) -> np.ndarray:
        """(n_clips, 4) total log-likelihood under each class's HMM."""
        return self.likelihoods.log_likelihood

    @property
    def posterior(self) -> np.ndarray:
        """Softmax of the decision scores: the relative weight of each class.

        With the tuned offsets included it is not a calibrated probability
        (see the README's definition).
        """
        return softmax(self.decision, axis=1)

    @property
    def predicted(self) -> np.ndarray:
        """The predicted class of each clip."""
        return np.asarray(CLASSES)[np.argmax(self.decision, axis=1)]

    def clip_record(self, row: int) -> dict[str, Any]:
        """One clip's prediction as plain JSON: ``class``, ``labels`` (its label set), and
        ``log_likelihood`` and ``posterior`` per class (a class without an HMM: log-likelihood None)."""
        label_class = str(self.predicted[row])
        posterior = self.posterior[row]
        return {
            "class": label_class,
            "labels": list(CLASS_LABELS[label_class]),
            "log_likelihood": {
                c: round(float(v), 4) if np.isfinite(v) else None for c, v in zip(CLASSES, self.log_likelihood[row])
            },
            "posterior": {c: round(float(p), 6) for c, p in zip(CLASSES, posterior)},
        }


class HMMClassifier(ClassifierMixin, BaseEstimator):
    """One Gaussian HMM per label class; the clip's class is decided from their likelihoods.

    Parameters
    ----------
    n_states : int
        Hidden states per HMM. Reduced (and reported in ``fit_report_``) for a
        class whose frames are too few to estimate that many Gaussians.
    topology : {"ergodic", "left-right"}
        Ergodic HMMs may move between any hidden states; left-right ones only
        stay or advance, and start in the first state.
    n_iter : int
        Most EM iterations per HMM. A final HMM that starts from an inner
        fold's HMM of its class (rules tuned on inner folds) runs at most
        ``WARM_START_ITERATIONS`` (3) of them.
    tol : float
        EM stops when an iteration gains less than this in log-likelihood per frame.
    min_covar : float
        Floor added to every variance (features are standardised first), so
        a hidden state that captures near-identical frames cannot collapse.
    init_frames : int
        Frames sampled per class for the k-means initialisation; k-means on
        all frames costs more than the EM itself and gains nothing.
    kmeans_restarts : int
        k-means runs (from different k-means++ seeds) per initialisation; the
        one with the lowest inertia is kept. One by default (scikit-learn's
        own default for k-means++): three gave the same Score within the seed
        spread on both shared databases, at a fifth more time per fit.
    fit_frames : int
        Most frames each class's HMM is fitted on: when a class's training
        clips hold more, whole clips are drawn at random (seeded) until this
        many frames are reached; 0 fits on every frame. Baum-Welch costs time
        and memory in proportion to the frames, and beyond some twenty
        minutes of audio per class (60 000 frames at 50 frames per second)
        more frames did not move the Score beyond the seed spread on either
        shared database; the class priors still count every clip.
    standardize : bool
        Scale every feature to zero mean and unit variance with statistics of
        the training frames.
    class_prior : {"empirical", "uniform"}
        Log-prior added to each class's score: training clip frequencies, or equal.
    class_offsets : tuple of 4 floats, optional
        Extra additive offsets per class (order of ``CLASSES``) on the scores
        the decision rule reads.
    features : {"auto", "all", "cepstra"}
        Which columns of the frame vectors the HMMs model, by the names of
        ``feature_sets``: "all" (the default: the cepstra and the
        spectral-shape features), "cepstra", or "auto" (the default of hmmclf
        0.5-0.7), which chooses on the same inner folds as the decision rule: HMMs are fitted
        once per inner fold on all columns, each candidate scores the
        held-out clips through their exact marginal over its columns (a
        diagonal Gaussian factorises, so that is the same HMM with the other
        columns' means and variances left out), the rule is tuned on those
        scores, and "all" must beat "cepstra" by ``feature_margin``. The
        final HMMs are likewise fitted on all columns and keep the chosen
        ones. The spectral-shape features help where events are cut to the
        sound (SPRSound) and not on ICBHI's noisy adult cycles.
    feature_margin : float
        ICBHI Score (on the inner held-out clips, 0.03 = 3 points) by which
        "all" must beat "cepstra" for "auto" to choose it.
    decision : {"auto", "tuned", "argmax", "stacked", "detectors", "peak-detectors", "tuned-length", "boosted"}
        The decision rule (see :mod:`hmmclf.model.decision`).
        Rules other than "argmax" learn their
        parameters from the training data alone: the training clips are
        split into ``inner_folds`` grouped folds, HMMs fitted on each inner
        training part score its held-out part, and the rule is fitted on
        those held-out scores. "boosted" (the default) grows gradient-boosted
        trees on those held-out clips' HMM scores, length and feature
        statistics, a set per inner fold, cross-fitted, with per-class offsets
        tuned for the ICBHI Score (see :mod:`hmmclf.model.decision.boosted`).
        "auto" (the default of hmmclf 0.5-0.7) chooses on those inner
        folds between "peak-detectors" (the peak over the clip of a
        ``peak_frames``-frame moving average of crackle and wheeze detector
        log-likelihood ratios, two thresholds: the only rule that predicts
        "both" on ICBHI 2017) and "tuned-length" ("tuned" plus a weighted
        log-normal log-likelihood of the clip's length: event-cut clips, as
        in SPRSound, carry their class in their length); "tuned-length" must
        win by ``select_margin``. The README's results section measures the
        rules against each other.
    inner_folds : int
        Inner folds of the decision rule; with groups, each needs at least
        two groups, or the decision falls back to "argmax". Three by default
        (hmmclf 0.10): each tree set learns from two thirds of the training
        clips instead of half; the README's results section measures it.
    stack_c : float
        Inverse L2 regularisation of the "stacked" logistic regression.
    peak_frames : int
        Window, in frames, of the moving average whose maximum over the clip
        is the "peak-detectors" evidence (50 = 1 s at a 20 ms hop; a shorter
        clip uses its whole mean). Used by "peak-detectors" and "auto".
    select_margin : float
        ICBHI Score (0.03 = 3 points) by which "tuned-length" must beat
        "peak-detectors" on the cross-fitted inner folds for "auto" to choose
        it. Without a margin the choice flips between outer folds when the
        inner Scores are noisy.
    implementation : {"scaling", "log"}
        Forward-backward variant for training. "scaling" runs
        :func:`~hmmclf.model.baum_welch.fit_on_moments` (hmmlearn's scaled
        recursions with all-frame statistics, several times faster than
        hmmlearn's log-space fit); a fit it cannot carry out (underflow) is
        redone with "log", hmmlearn's ``GaussianHMM`` in log space.
    random_state : int
        Seed of the k-means initialisation and the frame subsample.
    n_jobs : int
        Class HMMs fitted in parallel.
    feature_sets : tuple of (name, column indices) pairs, optional
        The named column subsets ``features`` refers to, from the feature
        configuration (:meth:`~hmmclf.data.features.FeatureConfig.column_sets`);
        without them every name means every column.

    Attributes
    ----------
    classes_ : ndarray of str
        The label classes, in the order of the columns of :meth:`predict_proba`.
    hmms_ : list of hmmlearn.hmm.GaussianHMM or None
        One per class; None for a class without training clips (never predicted).
    feature_columns_ : ndarray of int
        The columns of the input frames the HMMs model.
    feature_mean_, feature_scale_ : ndarray
        Standardisation statistics of those columns over the training frames.
    class_log_prior_ : ndarray
    decision_rule_ : DecisionRule
        The fitted decision rule.
    fit_report_ : dict
        Per class: clips, frames, hidden states used, EM iterations,
        convergence; under ``"decision"`` how the rule was fitted; under
        ``"features"`` which columns "auto" chose and the inner Scores.
    n_features_in_ : int
    """

    def __init__(
        self,
        n_states: int = 5,
        *,
        topology: str = "ergodic",
        n_iter: int = 10,
        tol: float = 1e-3,
        min_covar: float = 1e-3,
        init_frames: int = 5000,
        kmeans_restarts: int = 1,
        fit_frames: int = 60000,
        standardize: bool = True,
        class_prior: str = "empirical",
        class_offsets: tuple[float, ...] | None = None,
        features: str = "all",
        feature_margin: float = 0.03,
        decision: str = "boosted",
        inner_folds: int = 3,
        stack_c: float = 1.0,
        peak_frames: int = 50,
        select_margin: float = 0.03,
        implementation: str = "scaling",
        random_state: int = 0,
        n_jobs: int = 1,
        feature_sets: tuple[tuple[str, tuple[int, ...]], ...] | None = None,
    ) -> None:
        self.n_states = n_states
        self.topology = topology
        self.n_iter = n_iter
        self.tol = tol
        self.min_covar = min_covar
        self.init_frames = init_frames
        self.kmeans_restarts = kmeans_restarts
        self.fit_frames = fit_frames
        self.standardize = standardize
        self.class_prior = class_prior
        self.class_offsets = class_offsets
        self.features = features
        self.feature_margin = feature_margin
        self.decision = decision
        self.inner_folds = inner_folds
        self.stack_c = stack_c
        self.peak_frames = peak_frames
        self.select_margin = select_margin
        self.implementation = implementation
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.feature_sets = feature_sets

    # ----------------------------------------------------------------- fitting
    @property
    def config(self) -> ModelConfig:
        """The parameters as one validated :class:`~hmmclf.model.config.ModelConfig` (``n_jobs`` aside).

        Raises ValueError naming every invalid parameter.
        """
        params = self.get_params(deep=False)
        params.pop("n_jobs")
        params.pop("feature_sets")
        return ModelConfig(**params)

    @classmethod
    def from_config(
        cls,
        config: ModelConfig,
        n_jobs: int = 1,
        feature_sets: Mapping[str, Sequence[int]] | None = None,
    ) -> HMMClassifier:
        """An unfitted classifier with the settings of ``config`` and the named column sets of its features."""
        sets = None if feature_sets is None else tuple((k, tuple(int(c) for c in v)) for k, v in feature_sets.items())
        return cls(**dataclasses.asdict(config), n_jobs=n_jobs, feature_sets=sets)

    def check_params(self) -> None:
        """Raise ValueError naming every invalid parameter."""
        self.config  # noqa: B018 - validation happens when the config is made

    def fit(self, X: Sequence[np.ndarray], y: Sequence[str], groups: Sequence[str] | None = None) -> HMMClassifier:
        """Fit the decision rule (on inner folds, when it is tuned there), then one HMM per label class.

        With inner folds, each class's final HMM starts from the inner fold's HMM of that class
        fitted on most of its frames (:func:`~hmmclf.model.inner_choice.warm_start`), not from k-means.

        Parameters
        ----------
        X : sequence of (n_frames, n_features) arrays
        y : sequence of str
            Label class of each clip.
        groups : sequence of str, optional
            Patient (or recording) of each clip: the inner folds of the
            decision rule keep each group on one side, as the outer CV does.

        Raises
        ------
        ValueError
            For invalid parameters or input, or when a label class has no clip.
        """
        from ..utils.parallel import parallel_map

        config = self.config
        sequences = check_sequences(X)
        y = np.asarray(y, dtype=str)
        if len(y) != len(sequences):
            raise ValueError(f"X has {len(sequences)} clips but y has {len(y)} labels")
        unknown = sorted(set(y.tolist()) - set(CLASSES))
        if unknown:
            raise ValueError(f"unknown label classes {unknown}; expected {list(CLASSES)}")
        n_features = sequences[0].shape[1]
        sequences = check_sequences(sequences, n_features)
        self.classes_ = np.array(CLASSES)
        self.n_features_in_ = n_features
        rule = make_decision_rule(config.decision, **config.rule_options())
        folds, fallback = self._inner_folds(y, groups) if rule.tuned_on_inner_folds else (None, None)
        grouped = groups is not None
        choice = choose_columns(
            self, self._column_candidates(sequences[0].shape[1], config), sequences, y, folds, grouped, config
        )
        columns, inner_models = choice.columns, choice.inner_models
        sequences = cut_to(sequences, columns)
        self.feature_columns_ = columns
        if fallback is not None:
            self.decision_rule_ = fallback
        elif choice.rule is not None:
            self.decision_rule_ = choice.rule
        else:
            self.decision_rule_, inner_models = fit_rule_on_inner_folds(self, rule, sequences, y, folds, grouped)
        if self.standardize:
            self.feature_mean_, scale = column_mean_std(sequences)
            self.feature_scale_ = np.maximum(scale, SCALE_FLOOR)
        else:
            self.feature_mean_ = np.zeros(len(columns))
            self.feature_scale_ = np.ones(len(columns))
        counts = np.array([np.sum(y == name) for name in CLASSES], dtype=float)
        present = counts > 0
        # A class without training clips gets no HMM and a log-prior of -inf: it is never predicted.
        self.class_log_prior_ = np.full(len(CLASSES), -np.inf)
        if self.class_prior == "empirical":
            self.class_log_prior_[present] = np.log(counts[present] / counts.sum())
        else:
            self.class_log_prior_[present] = -np.log(present.sum())

        tasks = [
            LabelHMMTask(
                [sequences[i] for i in np.flatnonzero(y == name)],
                self.feature_mean_,
                self.feature_scale_,
                config,
                (self.random_state, k),
                warm_start(inner_models, k),
            )
            for k, name in enumerate(CLASSES)
            if present[k]
        ]
        fitted = iter(parallel_map(fit_label_hmm_task, tasks, n_jobs=self.n_jobs))
        self.hmms_, self.fit_report_ = [], {}
        for k, name in enumerate(CLASSES):
            hmm, report = next(fitted) if present[k] else (None, ABSENT_REPORT)
            self.hmms_.append(hmm)
            self.fit_report_[name] = report
        if choice.view is not None:
            self._keep_columns(choice.view)
        if choice.report:
            self.fit_report_["features"] = choice.report
        if self.decision_rule_.tuned_on_inner_folds or "note" in self.decision_rule_.report:
            self.fit_report_["decision"] = self.decision_rule_.report
        return self

    def _inner_folds(
        self, y: np.ndarray, groups: Sequence[str] | None
    ) -> tuple[list[tuple[np.ndarray, np.ndarray]] | None, DecisionRule | None]:
        """The inner folds the decision rule (and the feature choice) is tuned on, or the
        "argmax" rule that stands in when the training data cannot be split into them."""
        if len(set(y.tolist())) < 2:
            # Nothing to tune: the only class present is the only one with an HMM and a prior.
            return None, ArgmaxRule("offsets not tuned: the training clips hold one label class")
        groups = None if groups is None else np.asarray(groups, dtype=str)
        n_groups = 0 if groups is None else len(set(groups.tolist()))
        if groups is not None and n_groups < MIN_GROUPS_PER_INNER_FOLD * self.inner_folds:
            # A rule tuned on the clips of a single patient fits that patient, not the task.
            note = f"offsets not tuned: {n_groups} groups, fewer than {MIN_GROUPS_PER_INNER_FOLD} per inner fold"
            return None, ArgmaxRule(note)
        try:
            folds = make_folds(y, groups, self.inner_folds, seed=self.random_state)
        except ValueError as exc:
            return None, ArgmaxRule(f"offsets not tuned: {exc}")
        if any(len(set(y[train].tolist())) < len(set(y.tolist())) for train, _ in folds):
            return None, ArgmaxRule("offsets not tuned: an inner training fold lacks a label class")
        return folds, None

    def _column_candidates(self, n_features: int, config: ModelConfig) -> list[tuple[str, np.ndarray]]:
        """The column sets ``features`` asks for: one, or for "auto" each distinct one, simplest first."""
        everything = np.arange(n_features)
        sets = dict(self.feature_sets or ())
        for name, columns in sets.items():
            if not columns or min(columns) < 0 or max(columns) >= n_features or len(set(columns)) != len(columns):
                raise ValueError(f"feature set {name!r} names columns outside 0..{n_features - 1} or repeats one")
        named = {name: np.array(sorted(sets.get(name, everything)), dtype=np.int64) for name in ("cepstra", "all")}
        if config.features != "auto":
            return [(config.features, named[config.features])]
        if np.array_equal(named["cepstra"], named["all"]):
            return [("all", named["all"])]
        return [("cepstra", named["cepstra"]), ("all", named["all"])]

    def _marginal(self, view: np.ndarray) -> HMMClassifier:
        """A shallow copy scoring only the fitted columns at positions ``view`` (see :meth:`_keep_columns`)."""
        marginal = copy.copy(self)
        marginal._keep_columns(view)
        return marginal

    def _keep_columns(self, view: np.ndarray) -> None:
        """Score only the fitted columns at positions ``view``, through each HMM's exact marginal over
        them (its input is still every fitted column)."""
        self.feature_columns_ = self.feature_columns_[view]
        self.feature_mean_ = self.feature_mean_[view]
        self.feature_scale_ = self.feature_scale_[view]
        self.hmms_ = [
            None
            if hmm is None
            else rebuild_hmm(hmm.startprob_, hmm.transmat_, hmm.means_[:, view], hmm._covars_[:, view])
            for hmm in self.hmms_
        ]

    # ----------------------------------------------------------------- scoring
    def _check_fitted(self) -> None:
        if not hasattr(self, "hmms_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this HMMClassifier is not fitted yet; call fit first")

    def _standardize(self, frames: np.ndarray) -> np.ndarray:
        """The modelled columns of ``frames``, standardised with the training statistics."""
        columns = getattr(self, "feature_columns_", None)
        if columns is not None and len(columns) < frames.shape[1]:
            frames = frames[:, columns]
        # In one float64 array, divided in place: the same numbers as (frames - mean) / scale.
        standard = np.subtract(frames, self.feature_mean_, dtype=np.float64)
        standard /= self.feature_scale_
        return standard

    def _likelihoods(
        self, X: Sequence[np.ndarray], frame_increments: bool = False, clip_stats: bool = False
    ) -> ClipLikelihoods:
        self._check_fitted()
        sequences = check_sequences(X, self.n_features_in_)
        n_frames = np.array([len(s) for s in sequences])
        totals, increments, statistics = [], [], []
        # In blocks of whole clips: the float64 frames, their [x, x**2] and the log-densities of one
        # block at a time, not of every clip at once (hundreds of MB for a held-out half of a large
        # corpus). Every number is computed per frame or per clip, so the blocks change none.
        for block in _clip_blocks(n_frames, SCORING_BLOCK_FRAMES):
            frames = self._standardize(np.concatenate([sequences[i] for i in block]))
            block_totals, block_increments = log_likelihoods(self.hmms_, frames, n_frames[block], frame_increments)
            totals.append(block_totals)
            increments.append(block_increments)
            if clip_stats:
                statistics.append(clip_statistics(np.split(frames, np.cumsum(n_frames[block])[:-1]), extremes=True))
            del frames
        totals = np.concatenate(totals)
        user_offsets = np.zeros(len(CLASSES)) if self.class_offsets is None else np.asarray(self.class_offsets, float)
        base = totals / n_frames[:, None].astype(float) + self.class_log_prior_ + user_offsets
        return ClipLikelihoods(
            totals,
            n_frames,
            base,
            np.concatenate(increments) if frame_increments else None,
            np.concatenate(statistics) if clip_stats else None,
        )

    def score_clips(self, X: Sequence[np.ndarray], frame_increments: bool = False) -> ClipScores:
        """Every number the model computes for ``X``: the one scoring path of cv, predict and explain.

        Parameters
        ----------
        X : sequence of (n_frames, n_features) arrays
        frame_increments : bool
            Also keep each frame's increment of the forward log-likelihood
            (``likelihoods.frame_increments``), for explanations.

        Returns
        -------
        ClipScores
            Per-class log-likelihoods, decision scores, posterior and predicted class.
        """
        rule = self.decision_rule_ if hasattr(self, "decision_rule_") else None
        likelihoods = self._likelihoods(
            X,
            frame_increments or (rule is not None and rule.needs_frame_increments),
            rule is not None and rule.needs_clip_statistics,
        )
        decision = rule.scores(likelihoods) if rule is not None else likelihoods.base_scores
        return ClipScores(likelihoods, decision)

    def log_likelihood(self, X: Sequence[np.ndarray]) -> np.ndarray:
        """Total log-likelihood of each clip under each class's HMM, shape (n_clips, 4)."""
        return self._likelihoods(X).log_likelihood

    def decision_function(self, X: Sequence[np.ndarray]) -> np.ndarray:
        """Decision scores of each class, shape (n_clips, 4); the prediction is their argmax."""
        return self.score_clips(X).decision

    def predict_proba(self, X: Sequence[np.ndarray]) -> np.ndarray:
        """Posterior of each class: softmax of :meth:`decision_function`."""
        return self.score_clips(X).posterior

    def predict(self, X: Sequence[np.ndarray]) -> np.ndarray:
        """Label class of each clip."""
        return self.score_clips(X).predicted

    def score(self, X: Sequence[np.ndarray], y: Sequence[str], sample_weight: Any = None) -> float:
        """ICBHI Score, (sensitivity + specificity) / 2, of the predictions for ``X``.

        Replaces accuracy, which rewards always answering ``normal``.
        """
        return icbhi_metrics(np.asarray(y, dtype=str), self.predict(X))["score"]

    def decode(self, frames: np.ndarray) -> dict[str, tuple[float, np.ndarray]]:
        """Viterbi path of one clip under every class's HMM.

        Returns
        -------
        dict
            class -> (Viterbi log-probability, hidden-state index per frame).
        """
        self._check_fitted()
        (seq,) = check_sequences([frames], self.n_features_in_)
        seq = self._standardize(seq)
        return {
            name: hmm.decode(seq, algorithm="viterbi")
            for name, hmm in zip(self.classes_, self.hmms_)
            if hmm is not None
        }

    def frame_log_likelihood(self, frames: np.ndarray) -> np.ndarray:
        """Per-frame log-likelihood increments of one clip under each HMM, shape (n_frames, 4).

        The increments are differences of successive forward log-likelihoods
        log p(x_1..x_t) - log p(x_1..x_{t-1}); their sum is the clip's total.
        """
        return self._likelihoods([frames], frame_increments=True).frame_increments

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.non_deterministic = False
        return tags
