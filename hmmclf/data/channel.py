"""Channel statistics: what a clip's recording imprints on it, kept for the leakage audit.

The classifier's features remove the recording channel (cepstral mean
normalisation), so a memoriser that reads them cannot tell how much clips of
one recording resemble each other; a model that sees the channel (a network on
spectrograms, boosting on spectral statistics) can. The leakage audit
(:mod:`hmmclf.evaluation.leakage`) therefore probes statistics that keep it:

- the per-clip mean and standard deviation of 13 MFCC from 30 mel bands up to
  2 kHz, **without** mean normalisation, in 64 ms frames every 20 ms: the
  features of the reference memoriser used to judge grouped folds on lung-sound
  corpora (a 1-nearest-neighbour probe on librosa MFCC at 4 kHz, n_fft 256,
  hop 80, 30 mel bands to 2 kHz), computed here without librosa;
- the long-term average spectrum: the mean log power in the 24 bands of the
  recording signature (:mod:`hmmclf.data.groups`).

Both are computed once per clip during extraction and cached with the features.
"""

from __future__ import annotations

import functools

import numpy as np

from .features import FeatureConfig, compute_features, power_spectrogram, power_to_db
from .groups import SIGNATURE_BANDS, band_index

N_PROBE_MFCC = 13
CHANNEL_WIDTH = 2 * N_PROBE_MFCC + SIGNATURE_BANDS
"""Values per clip: MFCC means, MFCC standard deviations, then the long-term average spectrum."""
VIEWS = {
    "mfcc": slice(0, 2 * N_PROBE_MFCC),
    "ltas": slice(2 * N_PROBE_MFCC, CHANNEL_WIDTH),
}


def probe_config(sample_rate: int) -> FeatureConfig:
    """The MFCC of the channel statistics: 13 from 30 mel bands to 2 kHz, 64 ms frames, 20 ms hop, no CMN."""
    return FeatureConfig(
        sample_rate=sample_rate,
        n_mfcc=N_PROBE_MFCC,
        n_mels=30,
        fmin=0.0,
        fmax=min(2000.0, sample_rate / 2),
        frame_length=round(0.064 * sample_rate),
        hop_length=round(0.02 * sample_rate),
        deltas=0,
        cepstral_mean_norm=False,
        min_frames=2,
        extra=(),
    )


def channel_statistics(samples: np.ndarray, sample_rate: int, power: np.ndarray | None = None) -> np.ndarray:
    """``CHANNEL_WIDTH`` float32 values of one clip: MFCC mean and std (no CMN), then the long-term spectrum.

    ``power``: the clip's power spectrogram in 64 ms frames every 20 ms, when the caller has it.
    """
    config = probe_config(sample_rate)
    samples = np.asarray(samples, dtype=np.float32)
    if power is None:
        power = power_spectrogram(samples, config.frame_length, config.hop_length)
    mfcc = compute_features(samples, config, power=power)
    # Each band's mean dB over its bins and frames, as the mean of its bins' means over frames: from
    # cumulative sums, in one pass, not one ndarray.mean per band and clip (a tenth of extraction).
    bin_means = power_to_db(power).mean(axis=1)
    sums = np.concatenate([[0.0], np.cumsum(bin_means, dtype=np.float64)])
    starts, stops = _band_bounds(power.shape[0], sample_rate)
    ltas = (sums[stops] - sums[starts]) / (stops - starts)
    return np.concatenate([mfcc.mean(axis=0), mfcc.std(axis=0), ltas]).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _band_bounds(n_bins: int, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """First and one-past-last FFT bin of each signature band, as two index arrays."""
    bands = band_index(n_bins, sample_rate)
    return np.array([b.start for b in bands]), np.array([b.stop for b in bands])
