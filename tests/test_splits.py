"""Grouped folds: disjoint, stratified, and genuinely different from one seed to the next."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import hmmclf.task.splits as splits
from hmmclf.task.splits import fold_agreement, make_folds


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


def _largest_agreement(classes, groups, seeds=(0, 1, 2)) -> float:
    return fold_agreement([_fold_labels(make_folds(classes, groups, 5, seed=s), len(classes)) for s in seeds])


def test_seeds_of_one_block_deal_apart_even_when_one_patient_holds_many_clips(monkeypatch):
    # One patient with about 110 of 750 clips, as the second ICBHI half: its clips always share a fold,
    # so independent deals agree well above 0.3; deals that avoid the block's earlier pairings do not.
    rng = np.random.default_rng(3)
    sizes = np.concatenate([[110], rng.integers(5, 35, 33)])
    groups = np.repeat([f"p{g}" for g in range(len(sizes))], sizes)
    profile = rng.choice(["normal", "crackle", "wheeze", "both"], len(sizes), p=[0.5, 0.25, 0.15, 0.1])
    classes = np.where(rng.random(len(groups)) < 0.4, "normal", np.repeat(profile, sizes))
    apart = _largest_agreement(classes, groups)
    first_of_blocks = [_fold_labels(make_folds(classes, groups, 5, seed=s), len(classes)) for s in (0, 10)]
    monkeypatch.setattr(splits, "OVERLAP_WEIGHT", 0.0)
    independent = _largest_agreement(classes, groups)
    assert apart <= 0.2 < 0.3 < independent
    # The first seed of a block (0, 10, ...) has nothing to avoid: its folds are an independent deal's.
    for seed, labels in zip((0, 10), first_of_blocks):
        assert np.array_equal(_fold_labels(make_folds(classes, groups, 5, seed=seed), len(classes)), labels)


def test_fold_agreement_is_the_largest_adjusted_rand_index_of_two_runs():
    same, relabelled, other = np.array([0, 0, 1, 1, 2, 2]), np.array([2, 2, 0, 0, 1, 1]), np.array([0, 1, 0, 1, 0, 1])
    assert fold_agreement([same, relabelled]) == pytest.approx(1.0)  # fold numbers do not matter
    assert fold_agreement([same, other]) < 0.0 < fold_agreement([same, other, relabelled]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least two runs"):
        fold_agreement([same])


def test_too_few_groups_is_a_clear_error():
    classes, groups = _corpus(n_groups=4)
    with pytest.raises(ValueError, match="only 4 groups"):
        make_folds(classes, groups, 5, seed=0)
