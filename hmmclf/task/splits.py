"""Cross-validation folds: stratified by label class, grouped by patient when groups are known."""

from __future__ import annotations

import warnings

import numpy as np


def make_folds(
    classes: np.ndarray, groups: np.ndarray | None, n_folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds, grouped when ``groups`` is given; verified disjoint.

    Raises
    ------
    ValueError
        When there are fewer groups (or clips of the largest class) than folds.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    classes = np.asarray(classes, dtype=str)
    if n_folds < 2:
        raise ValueError(f"need at least 2 folds, got {n_folds}")
    if groups is not None:
        n_groups = len(set(np.asarray(groups).tolist()))
        if n_groups < n_folds:
            raise ValueError(f"only {n_groups} groups: cannot make {n_folds} grouped folds")
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        split = splitter.split(np.zeros(len(classes)), classes, groups)
    else:
        # A rare class may miss some test folds (the report shows per-fold support); only
        # when no class can fill every fold is there nothing to stratify.
        largest = max(int(np.sum(classes == c)) for c in set(classes.tolist()))
        if largest < n_folds:
            raise ValueError(f"no label class has {n_folds} clips: cannot make {n_folds} stratified folds")
        split = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(
            np.zeros(len(classes)), classes
        )
    with warnings.catch_warnings():
        # sklearn warns when a class has fewer groups than folds; the report shows per-fold support instead.
        warnings.simplefilter("ignore", UserWarning)
        folds = [(np.sort(train), np.sort(test)) for train, test in split]
    if groups is not None:
        groups = np.asarray(groups)
        for k, (train, test) in enumerate(folds):
            shared = set(groups[train].tolist()) & set(groups[test].tolist())
            if shared:  # pragma: no cover - would be a scikit-learn bug
                raise RuntimeError(f"fold {k}: groups {sorted(shared)[:5]} are on both sides of the split")
    return folds
