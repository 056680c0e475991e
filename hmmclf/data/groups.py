"""Groups for honest cross-validation when the labels carry no patient: recording signatures.

Cycles cut from one recording share its stethoscope, its chest position, its
room and its patient: near copies. When a labels file says nothing of patients
or recordings, cross-validation folds that split clips at random put cycles of
one recording on both sides, and every score is inflated (on ICBHI 2017, a
1-nearest-neighbour memoriser gains 25-30 Score points from that leak).

:func:`clip_signature` describes what a recording imprints on each of its
clips regardless of the breath sound: the channel. :func:`infer_groups`
clusters clips by that signature into groups that stand in for recordings
(and, when a patient's recordings look alike, for patients). The groups are
deliberately coarse: a group that merges two recordings costs a little
balance between folds, a recording split over two groups leaks.
"""

from __future__ import annotations

import functools

import numpy as np

from .features import power_spectrogram

SIGNATURE_BANDS = 24
_FRAME_SECONDS, _HOP_SECONDS = 0.064, 0.02
_BAND_EDGES_HZ = (40.0, 1950.0)
CLIPS_PER_GROUP = 25
"""Target mean group size of :func:`infer_groups`."""


@functools.lru_cache(maxsize=16)
def band_index(n_bins: int, sample_rate: int) -> tuple[slice, ...]:
    """The FFT bins of each signature band, as slices (a band's bins are consecutive); cached per shape."""
    freqs = np.fft.rfftfreq(2 * (n_bins - 1), 1.0 / sample_rate)
    edges = np.geomspace(*_BAND_EDGES_HZ, SIGNATURE_BANDS + 1)
    bands = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = np.flatnonzero((freqs >= lo) & (freqs < hi))
        if not len(inside):
            inside = np.array([int(np.argmin(np.abs(freqs - (lo + hi) / 2)))])
        bands.append(slice(int(inside[0]), int(inside[-1]) + 1))
    return tuple(bands)


def _to_db(power: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(power + 1e-12)


def _percentiles(values: np.ndarray, percents: tuple[float, ...], transform=None) -> list[np.ndarray]:
    """Per-row percentiles with numpy's default linear interpolation, by partial sorting.

    The same numbers as ``np.percentile(values, percents, axis=1)`` (to rounding) in about half
    the time: extraction computes this for every clip.
    """
    n = values.shape[1]
    positions = [(n - 1) * p / 100.0 for p in percents]
    below = [int(np.floor(x)) for x in positions]
    above = [min(k + 1, n - 1) for k in below]
    kth = sorted(set(below + above))
    ordered = np.partition(values, kth, axis=1)
    if transform is not None:
        # A monotonic transform commutes with order statistics: apply it to the selected columns only.
        picked = {k: transform(ordered[:, k]) for k in kth}
        return [picked[lo] + (picked[hi] - picked[lo]) * (x - lo) for x, lo, hi in zip(positions, below, above)]
    return [ordered[:, lo] + (ordered[:, hi] - ordered[:, lo]) * (x - lo) for x, lo, hi in zip(positions, below, above)]


def clip_signature(
    samples: np.ndarray, sample_rate: int, original_rate: int, power: np.ndarray | None = None
) -> np.ndarray:
    """The channel signature of one clip: what its recording, not its breath sound, imprints.

    Parameters
    ----------
    samples : 1-D array
        The clip, mono, at ``sample_rate``: the rate features are computed at,
        the same for every clip of a corpus (at least 4 kHz).
    sample_rate : int
    original_rate : int
        The file's own sample rate, which identifies the recording device.
    power : numpy.ndarray, optional
        The clip's power spectrogram in 64 ms frames every 20 ms (the
        features' own, at their default frames), instead of computing it again.

    Returns
    -------
    numpy.ndarray
        ``2 * SIGNATURE_BANDS + 1`` float32 values: of the log power spectrum
        (dB) in 64 ms frames (20 ms hop), averaged in 24
        log-spaced bands from 40 to 1950 Hz:

        - per band, the 10th percentile over frames: the noise floor between
          breaths, set by the stethoscope, its gain and the room;
        - per band, the 90th percentile: the loud part, shaped by the chest
          wall, the stethoscope's membrane and its placement;
        - log2 of the original sample rate (device families record at 4, 8,
          10, 16 or 44.1 kHz).

        Both are measured *before* cepstral mean normalisation, which removes
        exactly this channel from the classifier's features.
    """
    if sample_rate < 2 * _BAND_EDGES_HZ[1]:
        raise ValueError(f"signatures need a sample rate of at least {2 * _BAND_EDGES_HZ[1]:.0f} Hz, got {sample_rate}")
    frame, hop = round(_FRAME_SECONDS * sample_rate), round(_HOP_SECONDS * sample_rate)
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 1 or len(samples) < frame:
        raise ValueError(f"too short for a signature (fewer than {frame} samples)")
    if power is None or power.shape[0] != frame // 2 + 1:
        power = power_spectrogram(samples, frame, hop)  # (bins, frames)
    # Percentiles of the dB values from the order statistics of the power itself (dB is
    # monotonic): only the selected columns are converted to dB.
    low, high = _percentiles(power, (10, 90), transform=_to_db)
    bands = band_index(power.shape[0], sample_rate)
    # Per band, the mean of the floor row and of the loud row: np.add.reduce over each band's
    # contiguous bins, then a division, is what ndarray.mean computes, without its overhead.
    both = np.stack([low, high])
    means = np.stack([np.add.reduce(both[:, b], axis=1) / (b.stop - b.start) for b in bands], axis=1)
    floor, loud = means[0], means[1]
    return np.concatenate([floor, loud, [np.log2(original_rate)]]).astype(np.float32)


def signature_matrix(signatures: np.ndarray) -> np.ndarray:
    """Standardised signatures, each block weighted alike: floor, loud part, and the sample rate.

    Each column is scaled to unit variance over the clips; the single sample
    rate column is then weighted like a block of ``SIGNATURE_BANDS`` columns,
    so that a change of device counts as much as a change of spectrum.
    """
    signatures = np.asarray(signatures, dtype=np.float64)
    scale = signatures.std(axis=0)
    scale[scale == 0] = 1.0
    standard = (signatures - signatures.mean(axis=0)) / scale
    standard[:, -1] *= np.sqrt(SIGNATURE_BANDS)
    return standard


def n_inferred_groups(n_clips: int, clips_per_group: int = CLIPS_PER_GROUP) -> int:
    """How many groups :func:`infer_groups` makes: one per ``clips_per_group`` clips, at least 2.

    Why a size and not a fit criterion: a respiratory-cycle corpus holds
    about 5-15 cycles per recording and 1-5 recordings per patient, so groups
    of about 25 clips are coarser than a recording and of the order of a
    patient. Silhouette-style criteria pick the number of *devices* (a handful
    of groups, too few for folds) or of near-duplicates (too many, which leaks).
    """
    return int(max(2, min(n_clips, round(n_clips / clips_per_group))))


def infer_groups(
    signatures: np.ndarray, clips_per_group: int = CLIPS_PER_GROUP, n_groups: int | None = None
) -> np.ndarray:
    """Cluster clips into stand-in recordings by their :func:`clip_signature`.

    Ward agglomerative clustering of :func:`signature_matrix` into exactly
    :func:`n_inferred_groups` groups. Deterministic (no random start).

    Parameters
    ----------
    signatures : (n_clips, n) array
    clips_per_group : int
        Target mean group size.
    n_groups : int, optional
        Exactly this many groups (at most one per clip) instead.

    Returns
    -------
    numpy.ndarray
        (n_clips,) int group ids, numbered by first appearance.
    """
    # SciPy's Ward linkage, which scikit-learn's AgglomerativeClustering(linkage="ward") calls: the
    # same groups without importing scikit-learn into `extract` (on 5 500 clips, 11 % less time and
    # 60 MiB less in the largest process).
    from scipy.cluster.hierarchy import cut_tree, fcluster, linkage

    signatures = np.asarray(signatures)
    n = len(signatures)
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    k = min(n, n_groups) if n_groups else n_inferred_groups(n, clips_per_group)
    tree = linkage(signature_matrix(signatures), method="ward")
    labels = fcluster(tree, t=k, criterion="maxclust")
    if len(np.unique(labels)) != k:
        # Tied merge heights (identical signatures) make the height cut coarser; cut by merge count.
        labels = cut_tree(tree, n_clusters=k).ravel()
    # Renumber 0, 1, ... by first appearance, so the ids do not depend on SciPy's internal order.
    _, first, dense = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(first)
    renumber = np.empty(len(order), dtype=np.int64)
    renumber[order] = np.arange(len(order))
    return renumber[dense.ravel()]


def describe_inference(n_groups: int | None = None) -> str:
    """How :func:`infer_groups` made its groups, in words (completes "grouped by ...")."""
    size = f"{n_groups} groups as asked" if n_groups else f"one group per {CLIPS_PER_GROUP} clips"
    return f"the audio, by clustering the clips' recording signatures ({size})"
