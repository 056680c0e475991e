"""``boosted``: gradient-boosted trees on the HMM scores and the clip's own feature statistics.

The HMMs score how each class's frame sequence fits the clip; a clip-level
model sees what per-frame likelihoods average away: the clip's length and
the spread of its spectral shape. This rule stacks both. On the held-out
clips of the inner folds it fits scikit-learn's
``HistGradientBoostingClassifier`` to

- the per-frame log-likelihood of the clip under each class's HMM, less
  their mean over the classes (4 values),
- the log of the clip's length in frames,
- the mean, standard deviation, minimum and maximum over the clip of every
  modelled frame feature (the first two are the GBM baseline's input; the
  extremes came in hmmclf 0.10, after them, so the trees of an older model
  file, which never read past the standard deviations, decide as before),

with every class resampled to the size of the largest, at most
:data:`ROWS_PER_CLASS` (a seeded draw), so the operating point balances
sensitivity and specificity as the ICBHI Score does. One set of trees is grown
per inner fold, on the held-out clips of the other inner folds, and scores
that fold's clips: those cross-fitted probabilities tune the offsets, and
every set is kept, a clip's log-probability being their mean (no further set
is grown on every clip). The trees are kept as plain arrays
(:class:`TreeEnsemble`) and evaluated here, so a model file holds no pickled
estimator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ...task.classes import CLASSES
from ...utils.files import checked_array
from .base import ClipLikelihoods, DecisionRule, rounded
from .offsets import search_offsets

BOOST_SETTINGS = {"max_iter": 60, "learning_rate": 0.25, "max_leaf_nodes": 15, "max_bins": 64}
"""Small trees, few rounds: shared with the GBM baseline (``hmmclf.evaluation.baselines``)."""
EARLY_STOPPING_CLIPS = 400
"""Early stopping (on a 10 % validation split) from this many resampled rows on."""
ROWS_PER_LEAF = 50
"""A leaf holds at least 20 rows (scikit-learn's default), or a 50th of the rows when there are
fewer than 1 000: with 20, trees on a few dozen rows cannot split at all and answer one class."""
ROWS_PER_CLASS = 1000
"""Most rows per class the rule's trees (and the GBM baseline's) are grown on. Trees grown on a
class's rows drawn up to the largest class (4 000 normal events in a SPRSound training part) cost
2.7 times as long (the GBM baseline on SPRSound, profiled) and scored no better on the design half
of either shared database (77.5 against 77.7 on SPRSound; ICBHI's classes are all smaller)."""


def fit_balanced_gbm(
    X: np.ndarray,
    y: np.ndarray,
    class_order: Sequence,
    rng: np.random.Generator,
    random_state: int,
):
    """A ``HistGradientBoostingClassifier`` (:data:`BOOST_SETTINGS`) fitted with every class of ``y``
    resampled, with replacement, to the size of the largest, at most :data:`ROWS_PER_CLASS`.

    Resampling rather than ``class_weight``: scikit-learn's weighted path cost more than the HMMs
    themselves; and scikit-learn's defaults (200 rounds at rate 0.1, 255 bins) cost several times
    as long for no better Score. ``class_order`` fixes the order of the draws from ``rng``.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    present = [c for c in class_order if np.any(y == c)]
    largest = min(max(int(np.sum(y == c)) for c in present), ROWS_PER_CLASS)
    rows = np.concatenate([rng.choice(np.flatnonzero(y == c), largest, replace=True) for c in present])
    model = HistGradientBoostingClassifier(
        random_state=random_state,
        early_stopping=len(rows) >= EARLY_STOPPING_CLIPS,
        min_samples_leaf=min(20, max(2, len(rows) // ROWS_PER_LEAF)),
        **BOOST_SETTINGS,
    )
    return model.fit(X[rows], y[rows])


ABSENT_LOG_PROBA = -1e3
"""Log-probability given to a class the trees never saw (finite, so offsets can be searched)."""


@dataclass
class TreeEnsemble:
    """Fitted boosted trees as arrays: every tree's nodes, concatenated.

    Attributes
    ----------
    feature, threshold, left, right, leaf, value : (n_nodes,) arrays
        Node ``i`` sends a row to ``left[i]`` when ``x[feature[i]] <= threshold[i]``,
        else to ``right[i]`` (absolute node indices); a leaf adds ``value[i]``.
    roots : (n_trees,) int array
    tree_class : (n_trees,) int array
        The column of the raw scores each tree adds to.
    baseline : (n_columns,) array
    classes : (n_columns,) int array
        Label class index (into ``CLASSES``) of each raw-score column; with
        two classes there is one column, the log-odds of the second.
    """

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    leaf: np.ndarray
    value: np.ndarray
    roots: np.ndarray
    tree_class: np.ndarray
    baseline: np.ndarray
    classes: np.ndarray

    @classmethod
    def from_sklearn(cls, model, class_index: np.ndarray) -> TreeEnsemble:
        """Read a fitted ``HistGradientBoostingClassifier`` (numerical features, no missing values)."""
        parts, roots, tree_class, offset = [], [], [], 0
        for iteration in model._predictors:
            for column, predictor in enumerate(iteration):
                nodes = predictor.nodes
                parts.append(nodes)
                roots.append(offset)
                tree_class.append(column)
                offset += len(nodes)
        nodes = np.concatenate(parts)
        shift = np.repeat(np.array(roots), [len(p) for p in parts])
        return cls(
            feature=nodes["feature_idx"].astype(np.int64),
            threshold=nodes["num_threshold"].astype(np.float64),
            left=nodes["left"].astype(np.int64) + shift,
            right=nodes["right"].astype(np.int64) + shift,
            leaf=nodes["is_leaf"].astype(bool),
            value=nodes["value"].astype(np.float64),
            roots=np.array(roots, dtype=np.int64),
            tree_class=np.array(tree_class, dtype=np.int64),
            baseline=np.asarray(model._baseline_prediction, dtype=np.float64).ravel(),
            classes=np.asarray(class_index, dtype=np.int64),
        )

    def raw_scores(self, X: np.ndarray) -> np.ndarray:
        """(n_rows, n_columns) summed leaf values plus the baseline (the trees' raw predictions)."""
        X = np.asarray(X, dtype=np.float64)
        rows = np.arange(len(X))
        node = np.repeat(self.roots[None, :], len(X), axis=0)  # (n_rows, n_trees)
        while True:
            inner = ~self.leaf[node]
            if not inner.any():
                break
            r, t = np.nonzero(inner)
            current = node[r, t]
            go_left = X[rows[r], self.feature[current]] <= self.threshold[current]
            node[r, t] = np.where(go_left, self.left[current], self.right[current])
        raw = np.tile(self.baseline, (len(X), 1))
        np.add.at(raw.T, self.tree_class, self.value[node].T)
        return raw

    def log_proba(self, X: np.ndarray) -> np.ndarray:
        """(n_rows, 4) log-probability of each label class; -inf for a class the trees never saw."""
        raw = self.raw_scores(X)
        if len(self.classes) == 2:  # binary: one column, the log-odds of the second class
            raw = np.hstack([np.zeros_like(raw), raw])
        raw = raw - raw.max(axis=1, keepdims=True)
        log_proba = raw - np.log(np.exp(raw).sum(axis=1, keepdims=True))
        out = np.full((len(X), len(CLASSES)), -np.inf)
        out[:, self.classes] = log_proba
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(getattr(self, k), dtype=np.float64) for k in self.__dataclass_fields__}

    @classmethod
    def from_arrays(cls, arrays) -> TreeEnsemble:
        """Validated: integer indices within range, finite values, every walk ends in a leaf."""
        n_nodes, n_trees, n_columns = (_length(arrays, name) for name in ("feature", "roots", "baseline"))

        def indices(name: str, length: int, high: int) -> np.ndarray:
            values = checked_array(arrays, name, (length,))
            if np.any(values != np.round(values)) or np.any(values < 0) or np.any(values >= high):
                raise ValueError(f"{name} must hold integers in 0..{high - 1}")
            return values.astype(np.int64)

        if not 1 <= n_columns <= len(CLASSES) or n_trees == 0 or n_nodes == 0:
            raise ValueError("the boosted trees are empty or have more columns than classes")
        leaf = checked_array(arrays, "leaf", (n_nodes,))
        if not np.all((leaf == 0) | (leaf == 1)):
            raise ValueError("leaf must hold 0 or 1")
        n_classes = 2 if n_columns == 1 else n_columns
        ensemble = cls(
            feature=indices("feature", n_nodes, 1 << 20),
            threshold=checked_array(arrays, "threshold", (n_nodes,)),
            left=indices("left", n_nodes, n_nodes),
            right=indices("right", n_nodes, n_nodes),
            leaf=leaf.astype(bool),
            value=checked_array(arrays, "value", (n_nodes,)),
            roots=indices("roots", n_trees, n_nodes),
            tree_class=indices("tree_class", n_trees, n_columns),
            baseline=checked_array(arrays, "baseline", (n_columns,)),
            classes=indices("classes", n_classes, len(CLASSES)),
        )
        # Children lie after their parent, so every walk from a root ends in a leaf (no cycle).
        parents = np.flatnonzero(~ensemble.leaf)
        if np.any(ensemble.left[parents] <= parents) or np.any(ensemble.right[parents] <= parents):
            raise ValueError("every inner node's children must come after it")
        if len(set(ensemble.classes.tolist())) != n_classes:
            raise ValueError("classes must be distinct")
        return ensemble


def _length(arrays, name: str) -> int:
    if name not in arrays:
        raise ValueError(f"missing array {name!r}")
    if np.ndim(arrays[name]) != 1:
        raise ValueError(f"array {name!r} must be 1-D")
    return len(arrays[name])


class BoostedRule(DecisionRule):
    """Gradient-boosted trees on centred per-frame HMM log-likelihoods, log clip length and clip statistics.

    The trees' class probabilities balance the classes by resampling, which
    is not the ICBHI Score's balance of sensitivity and specificity; per-class
    offsets on their log-probabilities are tuned for the Score, on
    probabilities the trees did not learn from (cross-fitted: trees grown on
    one inner fold's held-out clips score the other's). Those cross-fitted
    sets of trees are kept, and a clip's log-probability is their mean: the
    offsets are tuned for exactly the trees that decide. (Until hmmclf 0.7 a
    third set, grown on every held-out clip, decided: it cost a third more
    and scored no better, 76.5 against 77.5 on the SPRSound design half.)

    Parameters
    ----------
    random_state : int
        Seed of the class-balancing draws and of the trees' validation split.
    ensembles : list of TreeEnsemble, optional
        The fitted sets of trees (set by :meth:`fit` or :meth:`from_arrays`).
    offsets : (4,) array, optional
    """

    name = "boosted"
    needs_clip_statistics = True
    options = ("random_state",)

    def __init__(
        self,
        random_state: int = 0,
        ensembles: list[TreeEnsemble] | None = None,
        offsets: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.random_state = int(random_state)
        self.ensembles = ensembles
        self.offsets = np.zeros(len(CLASSES)) if offsets is None else np.asarray(offsets, dtype=np.float64)
        self.cross_fitted_score: float | None = None

    @staticmethod
    def statistics(clips: ClipLikelihoods) -> np.ndarray:
        """(n_clips, 5 + 4 * n_features) inputs of the trees."""
        if clips.clip_statistics is None:
            raise ValueError("the boosted rule needs the clips' feature statistics")
        per_frame = clips.log_likelihood / clips.n_frames[:, None]
        finite = np.where(np.isfinite(per_frame), per_frame, np.nan)
        centred = np.nan_to_num(finite - np.nanmean(finite, axis=1, keepdims=True), nan=-1e3)
        return np.hstack([centred, np.log(clips.n_frames)[:, None], clips.clip_statistics])

    def _grow(self, statistics: np.ndarray, y: np.ndarray) -> TreeEnsemble:
        rng = np.random.default_rng(self.random_state)
        model = fit_balanced_gbm(statistics, y, range(len(CLASSES)), rng, self.random_state)
        return TreeEnsemble.from_sklearn(model, model.classes_)

    def fit(self, held_out, y, folds):
        statistics = self.statistics(held_out)
        cross = np.full((len(y), len(CLASSES)), ABSENT_LOG_PROBA)
        ensembles = []
        for _, test in folds:
            other = np.setdiff1d(np.arange(len(y)), test)
            if len(set(y[other].tolist())) < 2:
                continue  # too few classes to grow trees on: those clips keep no cross-fitted score
            ensembles.append(self._grow(statistics[other], y[other]))
            cross[test] = _clipped_log_proba(ensembles[-1], statistics[test])
        self.offsets, score = search_offsets(cross, y)
        self.cross_fitted_score = float(score)
        if len(ensembles) < len(folds):
            # Some clips have no cross-fitted trees to be decided by: grow one set on every clip.
            ensembles = [self._grow(statistics, y)]
        self.ensembles = ensembles
        self.report.update(
            {
                "offsets": rounded(self.offsets),
                "inner_score": round(float(score), 6),
                "tree_sets": len(ensembles),
                "trees": int(sum(len(e.roots) for e in ensembles)),
                "inputs": int(statistics.shape[1]),
            }
        )
        return self

    def inner_score(self, held_out: ClipLikelihoods, y: np.ndarray) -> float:
        """The cross-fitted Score: trees scored in-sample would flatter any feature set."""
        return self.cross_fitted_score if self.cross_fitted_score is not None else super().inner_score(held_out, y)

    def scores(self, clips):
        if not self.ensembles:
            raise ValueError("the boosted rule is not fitted")
        statistics = self.statistics(clips)
        log_proba = np.mean([_clipped_log_proba(e, statistics) for e in self.ensembles], axis=0)
        return log_proba + self.offsets

    def to_arrays(self):
        if not self.ensembles:
            return {}
        arrays = {"offsets": self.offsets}
        for k, ensemble in enumerate(self.ensembles):
            arrays.update({f"trees{k}.{name}": v for name, v in ensemble.to_arrays().items()})
        return arrays

    @classmethod
    def from_arrays(cls, arrays, **options):
        """Sets of trees under ``trees0.``, ``trees1.``, ... (a model file of hmmclf 0.5-0.7 holds one
        set, under ``trees.``: :func:`~hmmclf.model.model_io.load_model` renames it ``trees0.``)."""
        prefixes = []
        while any(k.startswith(f"trees{len(prefixes)}.") for k in arrays):
            prefixes.append(f"trees{len(prefixes)}.")
        if not prefixes:
            raise ValueError("missing the boosted rule's trees")
        ensembles = [
            TreeEnsemble.from_arrays({k[len(p) :]: v for k, v in arrays.items() if k.startswith(p)}) for p in prefixes
        ]
        return cls(options.get("random_state", 0), ensembles, checked_array(arrays, "offsets", (len(CLASSES),)))


def _clipped_log_proba(ensemble: TreeEnsemble, statistics: np.ndarray) -> np.ndarray:
    """The trees' log-probabilities, a class they never saw at :data:`ABSENT_LOG_PROBA` instead of -inf."""
    return np.maximum(ensemble.log_proba(statistics), ABSENT_LOG_PROBA)
