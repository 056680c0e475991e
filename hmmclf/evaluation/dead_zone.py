"""A dead zone around each test fold: training clips that sound like the test part's recordings are left out.

When the groups are inferred from the audio, a patient's recordings can land in
different groups, and so on both sides of a split. Such clips are near
neighbours in the recording channel. As spatial ecology does for
autocorrelated samples ("buffered" cross-validation; Roberts et al. 2017,
*Ecography* 40: 913-929), every training clip closer than a radius to any clip
of the test part is left out of that fold's training part.

The space (:func:`channel_space`): per clip, the MFCC statistics without mean
normalisation and the recording signature, each block standardised and
weighted alike. The radius (:func:`dead_zone_radius`): the median distance from
a clip to its ``K_NEIGHBOUR``-th nearest neighbour, about the size of one
recording's cloud of cycles. Neither looks at labels or patients.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.channel import VIEWS
from ..data.feature_store import FeatureSet
from ..data.groups import SIGNATURE_BANDS, signature_matrix

K_NEIGHBOUR = 10
"""A recording gives about 5-15 cycles: its clips lie within the distance to the 10th neighbour."""
MAX_RADIUS_SAMPLE = 3000


def channel_space(features: FeatureSet) -> np.ndarray | None:
    """(n_clips, d) channel vectors, or None when the cache holds no channel statistics."""
    if features.channel is None or features.signatures is None:
        return None
    mfcc = np.asarray(features.channel[:, VIEWS["mfcc"]], dtype=np.float64)
    scale = mfcc.std(axis=0)
    scale[scale == 0] = 1.0
    mfcc = (mfcc - mfcc.mean(axis=0)) / scale
    signature = signature_matrix(features.signatures)  # its sample-rate column weighs like a block of bands
    signature_weight = signature.shape[1] - 1 + SIGNATURE_BANDS
    # Each block with unit mean squared norm: the channel's spectrum and the recording signature count alike.
    return np.hstack([mfcc / np.sqrt(mfcc.shape[1]), signature / np.sqrt(signature_weight)])


def dead_zone_radius(space: np.ndarray, k: int = K_NEIGHBOUR, seed: int = 0) -> float:
    """Median distance from a clip to its ``k``-th nearest other clip (on a seeded sample of large corpora)."""
    from sklearn.neighbors import NearestNeighbors

    rows = np.arange(len(space))
    if len(space) > MAX_RADIUS_SAMPLE:
        rows = np.random.default_rng(seed).choice(len(space), MAX_RADIUS_SAMPLE, replace=False)
    distances, _ = NearestNeighbors(n_neighbors=min(k + 1, len(space))).fit(space).kneighbors(space[rows])
    return float(np.median(distances[:, -1]))


def nearest_distance(points: np.ndarray, others: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """For each row of ``points``, the Euclidean distance to its nearest row of ``others``."""
    out = np.empty(len(points))
    others_sq = (others * others).sum(axis=1)
    for start in range(0, len(points), chunk):
        block = points[start : start + chunk]
        squared = (block * block).sum(axis=1)[:, None] + others_sq[None, :] - 2.0 * block @ others.T
        out[start : start + chunk] = np.sqrt(np.maximum(squared.min(axis=1), 0.0))
    return out


def dead_zone_folds(
    space: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], radius: float
) -> tuple[list[tuple[np.ndarray, np.ndarray]], float]:
    """The folds with each training part less the clips within ``radius`` of its test part.

    Returns the new folds and the share of training clips left out (mean over folds).
    """
    out, dropped = [], []
    for train, test in folds:
        keep = nearest_distance(space[train], space[test]) >= radius
        out.append((train[keep], test))
        dropped.append(1.0 - keep.mean() if len(train) else 0.0)
    return out, float(np.mean(dropped))


def dead_zone(features: FeatureSet, folds: list[tuple[np.ndarray, np.ndarray]], seed: int = 0) -> dict[str, Any] | None:
    """``folds`` less a dead zone: the folds, the radius, the share of training clips left out.

    None when the feature set holds no channel statistics (a cache of hmmclf 0.3).
    """
    space = channel_space(features)
    if space is None:
        return None
    radius = dead_zone_radius(space, seed=seed)
    zoned, dropped = dead_zone_folds(space, folds, radius)
    return {"folds": zoned, "radius": round(radius, 4), "dropped": round(dropped, 4), "k_neighbour": K_NEIGHBOUR}
