"""Grouped folds: disjoint, stratified, and genuinely different from one seed to the next."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from hmmclf.task.splits import make_folds


def _corpus(n_groups: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(3, 40, n_groups)  # patients of very different sizes, as in ICBHI
    groups = np.repeat([f"p{g}" for g in range(n_groups)], sizes)
    profile = rng.choice(["normal", "crackle", "wheeze", "both"], n_groups, p=[0.6, 0.2, 0.15, 0.05])
    classes = np.where(rng.random(len(groups)) < 0.5, "normal", np.repeat(profile, sizes))
    return classes, groups


def _fold_labels(folds, n):
    out = np.empty(n, dtype=int)
    for k, (_, test) in enumerate(folds):
        out[test] = k
    return out


def test_grouped_folds_are_disjoint_cover_every_clip_and_are_stratified():
    classes, groups = _corpus()
    folds = make_folds(classes, groups, 5, seed=0)
    tests = np.concatenate([test for _, test in folds])
    assert sorted(tests.tolist()) == list(range(len(classes)))
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
        assert abs(len(test) - len(classes) / 5) < 0.35 * len(classes) / 5
        share = np.mean(classes[test] == "normal")
        assert abs(share - np.mean(classes == "normal")) < 0.15


def test_the_seed_changes_the_grouped_folds():
    classes, groups = _corpus()
    labels = [_fold_labels(make_folds(classes, groups, 5, seed=s), len(classes)) for s in (0, 1, 2)]
    for a in range(3):
        for b in range(a + 1, 3):
            assert adjusted_rand_score(labels[a], labels[b]) <= 0.3
    again = _fold_labels(make_folds(classes, groups, 5, seed=1), len(classes))
    assert np.array_equal(again, labels[1])  # same seed, same folds


def test_too_few_groups_is_a_clear_error():
    classes, groups = _corpus(n_groups=4)
    with pytest.raises(ValueError, match="only 4 groups"):
        make_folds(classes, groups, 5, seed=0)
