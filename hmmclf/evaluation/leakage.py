"""The leakage audit: how much the folds let a memorising model gain.

Cycles cut from one recording, and recordings of one patient, are alike. A
1-nearest-neighbour classifier is a pure memoriser: scored under the folds
used and under plain (ungrouped) stratified folds, the difference says how much
the grouping holds back a model that remembers clips instead of hearing them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.feature_store import FeatureSet
from ..task.metrics import icbhi_metrics
from ..task.splits import make_folds
from .baselines import clip_statistics

LEAKAGE_PROBE = "1-nearest-neighbour on per-clip MFCC mean/std and recording signature"
# A grouping that moves a memorising probe by less than this (Score points)
# while plain folds let it score this far above 50 has probably not separated recordings.
LEAKAGE_SMALL_GAP, LEAKAGE_MEMORISER_ADVANTAGE = 3.0, 10.0


def nearest_neighbour_score(
    statistics: np.ndarray, classes: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]
) -> float:
    """Pooled out-of-fold ICBHI Score of a 1-nearest-neighbour classifier (a pure memoriser).

    Features are standardised with each fold's training statistics. A clip
    whose near copy (a cycle of the same recording) sits in the training part
    is recognised; a clip without one is not: the probe's Score measures how
    much the folds let a model remember instead of generalise.
    """
    from sklearn.neighbors import KNeighborsClassifier

    predicted = np.empty(len(classes), dtype=object)
    for train, test in folds:
        mean = statistics[train].mean(axis=0)
        scale = np.maximum(statistics[train].std(axis=0), 1e-9)
        probe = KNeighborsClassifier(n_neighbors=1).fit((statistics[train] - mean) / scale, classes[train])
        predicted[test] = probe.predict((statistics[test] - mean) / scale)
    return float(icbhi_metrics(classes, predicted.astype(str))["score"])


def leakage_audit(features: FeatureSet, folds: list[tuple[np.ndarray, np.ndarray]], seed: int) -> dict[str, Any]:
    """How much the folds used let a memorising model gain, against plain stratified folds.

    The probe (:func:`nearest_neighbour_score` on per-clip feature means and
    standard deviations plus the recording signature of :mod:`hmmclf.data.groups`)
    is scored under ``folds`` and
    under plain stratified folds of the same size and seed. ``gap`` (plain
    minus used, in Score points) is the optimism that plain folds would carry
    on these data and that the folds used remove.

    Returns
    -------
    dict
        ``probe``, ``score_folds_used``, ``score_plain_folds``, ``gap`` (Score
        points), ``grouped`` and ``warning`` (a sentence, or None).
    """
    statistics = clip_statistics(features.sequences)
    if features.signatures is not None:
        # The channel signature is what cycles of one recording share most
        # (cepstral mean normalisation removes it from the features).
        statistics = np.hstack([statistics, features.signatures])
    used = 100 * nearest_neighbour_score(statistics, features.classes, folds)
    plain_folds = make_folds(features.classes, None, len(folds), seed) if features.groups is not None else folds
    plain = 100 * nearest_neighbour_score(statistics, features.classes, plain_folds)
    gap = plain - used
    warning = None
    if features.groups is None:
        warning = (
            f"LEAKAGE: folds are not grouped; a memorising 1-nearest-neighbour probe scores {plain:.1f} on them. "
            "Cycles of one recording are near copies: give a patient column, --groups regex:PATTERN, "
            "or --groups infer"
        )
    elif gap < LEAKAGE_SMALL_GAP and plain - 50 > LEAKAGE_MEMORISER_ADVANTAGE:
        warning = (
            f"LEAKAGE: the groups barely hold back a memorising 1-nearest-neighbour probe ({used:.1f} under these "
            f"folds, {plain:.1f} under plain folds): clips of one recording may still sit on both sides of a split"
        )
    return {
        "probe": LEAKAGE_PROBE,
        "score_folds_used": round(used, 2),
        "score_plain_folds": round(plain, 2),
        "gap": round(gap, 2),
        "grouped": features.groups is not None,
        "warning": warning,
    }
