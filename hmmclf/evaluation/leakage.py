"""The leakage audit: how much the folds let a memorising model gain.

Cycles cut from one recording, and recordings of one patient, are alike. A
1-nearest-neighbour classifier is a pure memoriser: scored under the folds
used and under plain (ungrouped) stratified folds, the difference says how much
the grouping holds back a model that remembers clips instead of hearing them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.channel import VIEWS
from ..data.feature_store import FeatureSet
from ..data.features import clip_statistics
from ..task.metrics import icbhi_metrics
from ..task.splits import make_folds
from .dead_zone import dead_zone

PROBE_VIEWS = {
    "mfcc": "clip MFCC mean and std, no mean normalisation",
    "signature": "recording signature",
    "ltas": "long-term average spectrum",
    "model": "model's own features (after mean normalisation)",
}
"""What each probe of the audit reads; the first three keep the recording channel."""
CHANNEL_VIEWS = ("mfcc", "signature", "ltas")
"""The views whose memoriser recognises recordings; the worst of them drives the verdict. The model's
own features are probed and reported too, but they carry the class itself (the spectral-shape features
most of all), which a 1-nearest-neighbour probe reads as well across patients as within them: a small
gap there is no sign of leakage."""
INFERRED_GROUP_OPTIMISM = {"dead zone": (-3.6, 3.6), "no dead zone": (-1.4, 3.7)}
"""How far hmmclf's Score with groups inferred from the audio lay above its patient-grouped Score
(points, mean of seeds 0-2), with and without the dead zone, over the two halves and the whole of
ICBHI 2017 and of SPRSound, anonymised: the smallest and largest difference of forty-two, the six
sets measured with the default configuration of hmmclf 0.5.0, of 0.6.0 (one k-means start instead
of three), of 0.7.0 (at most 60 000 frames per HMM fit, feature candidates scored from shared
inner-fold HMMs), of 0.8.0 (the boosted decision rule), of 0.9.0 (final HMMs started from the
inner folds'), of 0.10.0 (the clip's feature extremes, three inner folds) and of 0.11.0 (seeds 1
and 2 deal their folds apart from seed 0's). The range of one version alone was narrower (with
the dead zone, 0.5.0: -1.1 to +3.6; 0.6.0: -3.0 to +2.9; 0.7.0: -3.6 to +1.4; 0.8.0: -1.8 to
+2.7; 0.9.0: -1.7 to +2.5; 0.10.0: -1.7 to +1.4; 0.11.0: -0.8 to +2.5): the differences are of
the size of the seed spread, so the union is what the report states (the README's "Patients,
groups and leakage" gives the table and the commands)."""
INFERRED_GROUP_PROBE_RESIDUAL = {"dead zone": (2.5, 4.7), "no dead zone": (5.5, 11.0)}
"""How far the memorising probe (MFCC view) scored above its Score under true patient folds, with groups
inferred from the audio, on the same sets as :data:`INFERRED_GROUP_OPTIMISM` (points, mean of seeds 0-2;
the probe does not depend on hmmclf's model, only on the folds: the union over the folds of hmmclf
0.5-0.10 and those of 0.11, whose seeds 1 and 2 are dealt differently)."""
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


def probe_views(features: FeatureSet, model_statistics: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The per-clip statistics each probe reads (those the cache holds); ``model_statistics``: the
    :func:`clip_statistics` of ``features.sequences`` when the caller has them."""
    views = {}
    if features.channel is not None:
        views["mfcc"] = features.channel[:, VIEWS["mfcc"]]
    if features.signatures is not None:
        views["signature"] = features.signatures
    if features.channel is not None:
        views["ltas"] = features.channel[:, VIEWS["ltas"]]
    views["model"] = clip_statistics(features.sequences) if model_statistics is None else model_statistics
    return {name: np.asarray(view, dtype=np.float64) for name, view in views.items()}


def leakage_audit(
    features: FeatureSet,
    folds: list[tuple[np.ndarray, np.ndarray]],
    seed: int,
    grouped_folds: list[tuple[np.ndarray, np.ndarray]] | None = None,
    model_statistics: np.ndarray | None = None,
) -> dict[str, Any]:
    """How much the folds used let a memorising model gain, against plain stratified folds.

    A 1-nearest-neighbour probe (:func:`nearest_neighbour_score`) reads, in
    turn, each view of :func:`probe_views`: three that keep the recording
    channel (MFCC statistics without mean normalisation, the recording
    signature, the long-term average spectrum) and the model's own features.
    Each is scored under ``folds`` and under plain stratified folds of the
    same size and seed; of the three channel views, the one that scores
    highest under ``folds`` (the memoriser that recognises recordings best)
    gives the verdict (:data:`CHANNEL_VIEWS`). With a dead
    zone, ``grouped_folds`` are the folds before it, also scored.
    ``model_statistics``: the model view's statistics, when the caller has
    computed them already (:func:`probe_views`).

    Returns
    -------
    dict
        ``views`` (per view: ``probe``, ``score_folds_used``,
        ``score_plain_folds``, ``gap``, and ``score_grouped_folds`` with a dead
        zone), ``worst`` (the view driving the verdict) and its figures at the
        top level, ``grouped``, ``warning`` (a sentence, or None).
    """
    grouped = features.groups is not None
    plain_folds = make_folds(features.classes, None, len(folds), seed) if grouped else folds
    # With inferred groups and no dead zone in the folds used, the audit measures what one would take away.
    zone = dead_zone(features, folds, seed) if grouped_folds is None and features.grouping.kind == "inferred" else None
    views = {}
    for name, statistics in probe_views(features, model_statistics).items():
        used = 100 * nearest_neighbour_score(statistics, features.classes, folds)
        plain = 100 * nearest_neighbour_score(statistics, features.classes, plain_folds)
        views[name] = {
            "probe": f"1-nearest-neighbour on the {PROBE_VIEWS[name]}",
            "score_folds_used": round(used, 2),
            "score_plain_folds": round(plain, 2),
            "gap": round(plain - used, 2),
        }
        if grouped_folds is not None:
            before = 100 * nearest_neighbour_score(statistics, features.classes, grouped_folds)
            views[name]["score_grouped_folds"] = round(before, 2)
        if zone is not None:
            zoned = 100 * nearest_neighbour_score(statistics, features.classes, zone["folds"])
            views[name]["score_dead_zone"] = round(zoned, 2)
    # A cache made before channel statistics were kept has the model's own features only.
    candidates = [name for name in CHANNEL_VIEWS if name in views] or list(views)
    worst = max(candidates, key=lambda name: views[name]["score_folds_used"])
    top = views[worst]
    audit = {
        **top,
        "views": views,
        "worst": worst,
        "grouped": grouped,
        "inferred_groups": features.grouping.kind == "inferred",
        "warning": _warning(grouped, top["score_folds_used"], top["score_plain_folds"]),
    }
    if zone is not None:
        audit["dead_zone"] = {k: v for k, v in zone.items() if k != "folds"}
        audit["dead_zone_gain"] = round(top["score_folds_used"] - top["score_dead_zone"], 2)
    elif grouped_folds is not None:  # the folds used have a dead zone: what it took from the probe
        audit["dead_zone_gain"] = round(top["score_grouped_folds"] - top["score_folds_used"], 2)
        audit["folds_have_dead_zone"] = True
    return audit


def _warning(grouped: bool, used: float, plain: float) -> str | None:
    if not grouped:
        return (
            f"LEAKAGE: folds are not grouped; a memorising 1-nearest-neighbour probe scores {plain:.1f} on them. "
            "Cycles of one recording are near copies: give a patient column, --groups regex:PATTERN, "
            "or --groups infer"
        )
    if plain - used < LEAKAGE_SMALL_GAP and plain - 50 > LEAKAGE_MEMORISER_ADVANTAGE:
        return (
            f"LEAKAGE: the groups barely hold back a memorising 1-nearest-neighbour probe ({used:.1f} under these "
            f"folds, {plain:.1f} under plain folds): clips of one recording may still sit on both sides of a split"
        )
    return None
