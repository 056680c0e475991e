"""Cross-validation folds: stratified by label class, grouped by patient when groups are known.

Grouped folds are made by :func:`grouped_folds`, not scikit-learn's
``StratifiedGroupKFold``: with ``shuffle=True`` that splitter only reorders
groups of equal class profile, so on real corpora its folds hardly change with
the seed (adjusted Rand index 0.9-1.0 between seeds 0, 1 and 2 on the ICBHI
2017 patients) and a spread "over seeds" measures nothing.

Where a few patients hold many clips, even independent random deals put much
the same clips together, since a patient's clips always share a fold. So the
seeds come in blocks (0-9, 10-19, ...) and within a block each deal also
avoids putting together the groups that the block's earlier deals put
together: seeds 0, 1 and 2 then share fewer pairs of clips than independent
deals would.
"""

from __future__ import annotations

import numpy as np

SIZE_JITTER = (0.5, 1.5)
"""Range of the seeded factor on each group's size that orders :func:`grouped_folds`' assignment."""

SEED_BLOCK = 10
"""Seeds of one block (0-9, 10-19, ...) deal their folds apart from each other's."""

OVERLAP_WEIGHT = 8.0
"""Weight of the pairs a deal shares with the block's earlier deals, against the class and size imbalance.

The largest of 2, 4, 8 and 16 at which the folds' class imbalance (the largest relative deviation
of a fold's class count from its share, averaged over classes) grew by at most a tenth over seeds
0-5 on the design halves of ICBHI 2017 and SPRSound (``scripts/grouping_study.py``'s halves; on
ICBHI's patients 0.32 without the term, 0.35 at 8, 0.38 at 16).
"""


def make_folds(
    classes: np.ndarray, groups: np.ndarray | None, n_folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds, grouped when ``groups`` is given; verified disjoint.

    Returns
    -------
    list of (train indices, test indices), sorted, one pair per fold.

    Raises
    ------
    ValueError
        When there are fewer groups (or clips of the largest class) than folds.
    """
    from sklearn.model_selection import StratifiedKFold

    classes = np.asarray(classes, dtype=str)
    if n_folds < 2:
        raise ValueError(f"need at least 2 folds, got {n_folds}")
    if groups is not None:
        folds = grouped_folds(classes, np.asarray(groups, dtype=str), n_folds, seed)
        _check_disjoint(folds, np.asarray(groups))
        return folds
    # A rare class may miss some test folds (the report shows per-fold support); only
    # when no class can fill every fold is there nothing to stratify.
    largest = max(int(np.sum(classes == c)) for c in set(classes.tolist()))
    if largest < n_folds:
        raise ValueError(f"no label class has {n_folds} clips: cannot make {n_folds} stratified folds")
    split = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(np.zeros(len(classes)), classes)
    return [(np.sort(train), np.sort(test)) for train, test in split]


def grouped_folds(
    classes: np.ndarray, groups: np.ndarray, n_folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified group K-fold whose assignment depends on the seed.

    Groups are taken largest first, each size multiplied by a seeded factor
    drawn from :data:`SIZE_JITTER` (so the order, and with it the assignment,
    changes with the seed), and each goes to the fold where it adds least to
    the imbalance: the squared deviation of every class count from its
    per-fold target, relative to that target (so rare classes count), plus
    that of the fold size, plus (weighted by :data:`OVERLAP_WEIGHT`) the clips
    it would join that it also shared a fold with under the earlier seeds of
    its :data:`SEED_BLOCK`. Ties are broken at random with the seed.

    Raises
    ------
    ValueError
        When there are fewer groups than folds.
    """
    names, group_of = np.unique(groups, return_inverse=True)
    labels, class_of = np.unique(classes, return_inverse=True)
    if len(names) < n_folds:
        raise ValueError(f"only {len(names)} groups: cannot make {n_folds} grouped folds")
    counts = np.zeros((len(names), len(labels)))
    np.add.at(counts, (group_of, class_of), 1)
    # Row i: the fold of each group under the block's i-th seed; the last row is this seed's deal.
    deals = np.empty((seed % SEED_BLOCK + 1, len(names)), dtype=np.int64)
    for i in range(len(deals)):
        deals[i] = _deal(counts, n_folds, seed - seed % SEED_BLOCK + i, deals[:i])
    fold_of = deals[-1][group_of]
    index = np.arange(len(classes))
    folds = [(index[fold_of != k], index[fold_of == k]) for k in range(n_folds)]
    if any(len(test) == 0 for _, test in folds):  # pragma: no cover - the size term fills every fold first
        raise ValueError(f"could not fill {n_folds} folds with {len(names)} groups")
    return folds


def _deal(counts: np.ndarray, n_folds: int, seed: int, earlier: np.ndarray) -> np.ndarray:
    """The fold of each group (``counts``: its clips per class), dealt apart from ``earlier`` deals
    (one row per deal: the fold of each group)."""
    rng = np.random.default_rng(seed)
    sizes = counts.sum(axis=1)
    target = counts.sum(axis=0) / n_folds
    size_target = sizes.sum() / n_folds

    def imbalance(fold_counts: np.ndarray) -> np.ndarray:
        per_class = (((fold_counts - target) / np.maximum(target, 1.0)) ** 2).sum(axis=1)
        return per_class + ((fold_counts.sum(axis=1) - size_target) / size_target) ** 2

    order = np.argsort(-sizes * rng.uniform(*SIZE_JITTER, len(sizes)), kind="stable")
    fold_counts = np.zeros((n_folds, counts.shape[1]))
    fold_of_group = np.full(len(sizes), -1, dtype=np.int64)
    # met[e, j, k]: clips dealt so far to fold k that earlier deal e had put in its fold j. Kept per
    # pair of folds, not per pair of groups, so memory does not grow with the number of patients.
    met = np.zeros((len(earlier), n_folds, n_folds))
    deals = np.arange(len(earlier))
    for g in order:
        cost = imbalance(fold_counts + counts[g]) - imbalance(fold_counts)
        if len(earlier):
            # The clips in each fold that group g shared a fold with before (mean over earlier deals), as
            # a share of a fold, times g's own share: the pairs of clips this placement would repeat.
            shared = met[deals, earlier[:, g]].sum(axis=0) / len(earlier)
            cost = cost + OVERLAP_WEIGHT * (sizes[g] / size_target) * (shared / size_target)
        best = np.flatnonzero(cost <= cost.min() + 1e-12)
        k = int(best[rng.integers(len(best))])
        fold_of_group[g] = k
        fold_counts[k] += counts[g]
        met[deals, earlier[:, g], k] += sizes[g]
    return fold_of_group


def fold_agreement(fold_labels: list[np.ndarray]) -> float:
    """The largest adjusted Rand index between two runs' folds (each array: the fold of every clip).

    1 means the same folds, 0 no more alike than chance: how different the folds of repeated
    cross-validation really were, and so how much its spread over seeds can say.
    """
    from itertools import combinations

    from sklearn.metrics import adjusted_rand_score

    if len(fold_labels) < 2:
        raise ValueError("fold agreement needs the folds of at least two runs")
    return float(max(adjusted_rand_score(a, b) for a, b in combinations(fold_labels, 2)))


def _check_disjoint(folds: list[tuple[np.ndarray, np.ndarray]], groups: np.ndarray) -> None:
    for k, (train, test) in enumerate(folds):
        shared = set(groups[train].tolist()) & set(groups[test].tolist())
        if shared:  # pragma: no cover - would be a bug above
            raise RuntimeError(f"fold {k}: groups {sorted(shared)[:5]} are on both sides of the split")
