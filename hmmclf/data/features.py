"""Frame-level features: MFCC with deltas, from mono samples at the analysis rate.

All parameters live in one serialisable :class:`FeatureConfig`, saved with every
feature cache and model, so a model is never applied to features computed
another way.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

EXTRA_FEATURES = ("flatness", "peakiness", "crest")


@dataclass(frozen=True)
class FeatureConfig:
    """Every parameter of the frame features.

    Parameters
    ----------
    sample_rate : int
        Analysis rate in Hz every clip is resampled to. 4000 Hz is ICBHI's
        lowest recording rate; wheezes and crackles lie below 2 kHz.
    n_mfcc : int
        Cepstral coefficients per frame (c0, the log-energy term, included).
    n_mels : int
        Mel bands the cepstrum is computed from.
    fmin, fmax : float
        Band of the mel filterbank in Hz. The lower edge cuts heart sounds and
        handling noise; ``fmax`` must not exceed ``sample_rate / 2``. The
        default 50-1200 Hz scored best of the bands tried under patient-grouped
        CV (see the README's leaderboard): above ~1.2 kHz ICBHI's recordings
        hold mostly device noise.
    frame_length : int
        FFT window in samples (256 samples = 64 ms at 4 kHz).
    hop_length : int
        Frame step in samples (80 samples = 20 ms at 4 kHz).
    deltas : int
        0 (MFCC only), 1 (+Δ) or 2 (+Δ+ΔΔ).
    delta_width : int
        Odd window, in frames, of the delta regression.
    cepstral_mean_norm : bool
        Subtract each clip's mean MFCC vector: removes the stethoscope's and the
        chest's fixed spectral colouring, which otherwise differs more between
        devices than between classes.
    min_frames : int
        Clips with fewer frames are skipped as too short.
    extra : tuple of str
        Frame features added after the cepstra, each aimed at one sound
        (their deltas are added too when ``deltas`` > 0):
        ``"flatness"`` (log spectral flatness in fmin..fmax: low for the
        tonal peaks of wheezes), ``"peakiness"`` (log ratio of the strongest
        bin to the median bin in fmin..fmax: high for a wheeze's narrow
        peak) and ``"crest"`` (log crest factor of the high-passed frame,
        above 200 Hz: high for the explosive transients of crackles). All
        three by default: the model's ``features="auto"`` decides on inner
        folds whether its HMMs use them (:meth:`column_sets`).
    """

    sample_rate: int = 4000
    n_mfcc: int = 13
    n_mels: int = 30
    fmin: float = 50.0
    fmax: float = 1200.0
    frame_length: int = 256
    hop_length: int = 80
    deltas: int = 1
    delta_width: int = 9
    cepstral_mean_norm: bool = True
    min_frames: int = 10
    extra: tuple[str, ...] = EXTRA_FEATURES

    def __post_init__(self) -> None:
        problems = []
        if self.sample_rate < 1000:
            problems.append(f"sample_rate must be >= 1000 Hz, got {self.sample_rate}")
        if not 1 <= self.n_mfcc <= self.n_mels:
            problems.append(f"n_mfcc must be in 1..n_mels ({self.n_mels}), got {self.n_mfcc}")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            problems.append(
                f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={self.fmin}, fmax={self.fmax}, "
                f"sample_rate={self.sample_rate}"
            )
        if self.frame_length < 16 or self.hop_length < 1 or self.hop_length > self.frame_length:
            problems.append(
                f"need frame_length >= 16 and 1 <= hop_length <= frame_length, got "
                f"{self.frame_length}/{self.hop_length}"
            )
        if self.deltas not in (0, 1, 2):
            problems.append(f"deltas must be 0, 1 or 2, got {self.deltas}")
        if self.delta_width < 3 or self.delta_width % 2 == 0:
            problems.append(f"delta_width must be odd and >= 3, got {self.delta_width}")
        if self.min_frames < max(2, self.delta_width if self.deltas else 2):
            problems.append(
                f"min_frames must be >= delta_width ({self.delta_width}) when deltas are used, got {self.min_frames}"
            )
        unknown = [name for name in self.extra if name not in EXTRA_FEATURES]
        if unknown:
            problems.append(f"unknown extra features {unknown}; known: {list(EXTRA_FEATURES)}")
        if len(set(self.extra)) != len(self.extra):
            problems.append(f"extra features repeat: {list(self.extra)}")
        if problems:
            raise ValueError("invalid feature config: " + "; ".join(problems))

    @property
    def n_features(self) -> int:
        """Dimensions of one frame vector."""
        return (self.n_mfcc + len(self.extra)) * (1 + self.deltas)

    def column_sets(self) -> dict[str, tuple[int, ...]]:
        """Named column subsets of the frame vector a model may choose between.

        ``"cepstra"``: the MFCC and their deltas; ``"all"``: every column (the
        cepstra plus the ``extra`` features and their deltas). Without extra
        features the two are the same columns.
        """
        block = self.n_mfcc + len(self.extra)
        cepstra = tuple(b * block + i for b in range(1 + self.deltas) for i in range(self.n_mfcc))
        return {"cepstra": cepstra, "all": tuple(range(self.n_features))}

    @property
    def frame_seconds(self) -> float:
        """Frame step in seconds."""
        return self.hop_length / self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form of the config."""
        values = dataclasses.asdict(self)
        values["extra"] = list(self.extra)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FeatureConfig:
        """Build a config from :meth:`to_dict` output; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown feature config keys: {', '.join(sorted(unknown))}")
        values = dict(values)
        if "extra" in values:
            values["extra"] = tuple(values["extra"])
        return cls(**values)

    def fingerprint(self) -> str:
        """Short hash identifying the config; caches and models store it."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def n_frames_for(n_samples: int, config: FeatureConfig) -> int:
    """Frames :func:`compute_features` gives for ``n_samples`` (centred frames)."""
    return 1 + n_samples // config.hop_length


# The spectral front end below reproduces librosa's defaults (``librosa.stft`` with a
# periodic Hann window and zero padding, the Slaney mel filterbank, ``power_to_db`` with an
# 80 dB floor, an orthonormal DCT-II) to within float rounding -- a test checks it against
# ``librosa.feature.mfcc`` -- without importing librosa, whose import (numba and all)
# costs several seconds at the start of every ``hmmclf predict`` and every worker.


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above."""
    hz = np.asarray(hz, dtype=float)
    linear = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mel = np.asarray(mel, dtype=float)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3))


@functools.lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular mel filters, area-normalised (Slaney), shape (n_mels, n_fft // 2 + 1)."""
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    distance = edges[:, None] - fft_freqs[None, :]
    rising = -distance[:-2] / widths[:-1, None]
    falling = distance[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]


@functools.lru_cache(maxsize=8)
def _hann(n: int) -> np.ndarray:
    """Periodic Hann window (the FFT convention)."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


def frame_signal(samples: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """Centred frames (zero padding of half a frame at each end), shape (n_frames, frame_length)."""
    padded = np.pad(samples, frame_length // 2)
    n_frames = 1 + (len(padded) - frame_length) // hop_length
    return np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop_length][:n_frames]


def power_spectrogram(samples: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """|STFT|^2 of centred Hann frames, shape (frame_length // 2 + 1, n_frames)."""
    frames = frame_signal(samples, frame_length, hop_length) * _hann(frame_length)
    return (np.abs(np.fft.rfft(frames, axis=1)) ** 2).T


def power_to_db(power: np.ndarray, floor_db: float = 80.0) -> np.ndarray:
    """10 log10(power), floored at 1e-10 and at ``floor_db`` below the clip's maximum."""
    db = 10.0 * np.log10(np.maximum(power, 1e-10))
    return np.maximum(db, db.max() - floor_db)


def delta(features: np.ndarray, width: int) -> np.ndarray:
    """Regression deltas along the last axis (frames), edges replicated.

    d[t] = sum_{n=1..N} n * (c[t+n] - c[t-n]) / (2 * sum_{n=1..N} n^2), N = width // 2:
    the HTK formula; librosa's Savitzky-Golay variant costs ten times more per clip.
    """
    half = width // 2
    padded = np.pad(features, [(0, 0)] * (features.ndim - 1) + [(half, half)], mode="edge")
    n_frames = features.shape[-1]
    out = np.zeros_like(features)
    for n in range(1, half + 1):
        out += n * (padded[..., half + n : half + n + n_frames] - padded[..., half - n : half - n + n_frames])
    return out / (2 * sum(n * n for n in range(1, half + 1)))


def _extra_features(samples: np.ndarray, power: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """The ``config.extra`` rows, (len(extra), n_frames), aligned with the STFT frames."""
    freqs = np.fft.rfftfreq(config.frame_length, 1.0 / config.sample_rate)
    band = power[(freqs >= config.fmin) & (freqs <= config.fmax)] + 1e-12
    rows = []
    for name in config.extra:
        if name == "flatness":
            rows.append(np.mean(np.log(band), axis=0) - np.log(np.mean(band, axis=0)))
        elif name == "peakiness":
            rows.append(np.log(band.max(axis=0)) - np.log(np.median(band, axis=0)))
        elif name == "crest":
            from .crest import log_crest_factor  # numba: imported only when the feature is asked for

            rows.append(log_crest_factor(samples, config.sample_rate, config.frame_length, config.hop_length))
    return np.stack(rows).astype(power.dtype)


@functools.lru_cache(maxsize=8)
def dct_matrix(n_bands: int, n_coefficients: int) -> np.ndarray:
    """The first ``n_coefficients`` rows of the orthonormal DCT-II of ``n_bands`` values, as a matrix.

    ``dct_matrix(n, k) @ x`` is ``scipy.fft.dct(x, type=2, norm="ortho", axis=0)[:k]`` to rounding,
    without importing scipy.fft in every extraction process.
    """
    k = np.arange(n_coefficients)[:, None]
    n = np.arange(n_bands)[None, :]
    matrix = np.cos(np.pi * k * (2 * n + 1) / (2 * n_bands)) * np.sqrt(2.0 / n_bands)
    matrix[0] /= np.sqrt(2.0)
    matrix.flags.writeable = False  # shared by every caller through the cache
    return matrix


def compute_features(samples: np.ndarray, config: FeatureConfig, power: np.ndarray | None = None) -> np.ndarray:
    """Frame features of one clip.

    Parameters
    ----------
    samples : numpy.ndarray
        Mono samples at ``config.sample_rate``.
    config : FeatureConfig
    power : numpy.ndarray, optional
        The clip's :func:`power_spectrogram` with ``config``'s frame and hop,
        when the caller has it already (it is computed otherwise).

    Returns
    -------
    numpy.ndarray
        float32 array of shape (n_frames, config.n_features): MFCC, then Δ,
        then ΔΔ when asked. The MFCC equal librosa's defaults (power
        spectrogram of centred Hann frames, Slaney mel filterbank, dB with an
        80 dB floor, orthonormal DCT-II).

    Raises
    ------
    ValueError
        When the clip gives fewer than ``config.min_frames`` frames.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"samples must be 1-D mono, got shape {samples.shape}")
    frames = n_frames_for(samples.size, config)
    if frames < config.min_frames:
        seconds = samples.size / config.sample_rate
        raise ValueError(f"too short ({seconds:.3f} s gives {frames} frames < {config.min_frames})")
    if power is None:
        power = power_spectrogram(samples, config.frame_length, config.hop_length)
    elif power.shape != (config.frame_length // 2 + 1, frames):
        raise ValueError(f"power spectrogram of shape {power.shape} does not fit this clip and config")
    mel = mel_filterbank(config.sample_rate, config.frame_length, config.n_mels, config.fmin, config.fmax) @ power
    mfcc = dct_matrix(config.n_mels, config.n_mfcc) @ power_to_db(mel)
    if config.cepstral_mean_norm:
        mfcc = mfcc - mfcc.mean(axis=1, keepdims=True)
    if config.extra:
        mfcc = np.concatenate([mfcc, _extra_features(samples, power, config)], axis=0)
    parts = [mfcc]
    for _ in range(config.deltas):
        parts.append(delta(parts[-1], config.delta_width))
    features = np.concatenate(parts, axis=0).T.astype(np.float32)
    if not np.isfinite(features).all():  # pragma: no cover - guarded by the audio checks
        raise ValueError("non-finite features")
    return np.ascontiguousarray(features)


def column_mean_std(sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) standard deviation of every column over all frames of all clips, in float64.

    Clip by clip, in two passes (the mean, then the squared deviations from it): the frames are
    never concatenated, nor converted to float64 as a whole (a float64 copy of every training frame
    in every fit); equal to ``np.concatenate(sequences).std(axis=0)`` to rounding.
    """
    n_frames = sum(len(s) for s in sequences)
    mean = np.zeros(sequences[0].shape[1])
    for clip in sequences:
        mean += clip.sum(axis=0, dtype=np.float64)
    mean /= n_frames
    squares = np.zeros_like(mean)
    for clip in sequences:
        deviation = np.subtract(clip, mean, dtype=np.float64)
        squares += np.einsum("ij,ij->j", deviation, deviation)
    return mean, np.sqrt(squares / n_frames)


def clip_statistics(sequences: list[np.ndarray], extremes: bool = False) -> np.ndarray:
    """Per-clip mean and standard deviation of every frame feature, shape (n_clips, 2 * n_features);
    with ``extremes``, then its minimum and maximum too, shape (n_clips, 4 * n_features).

    The mean and standard deviation are the GBM baseline's input and a leakage-audit view; all four
    are the "boosted" rule's input (hmmclf 0.10 added the extremes: a crackle lasts a few frames,
    which a mean over the clip dilutes and the extremes keep).
    """
    summaries = (np.mean, np.std, np.min, np.max) if extremes else (np.mean, np.std)
    return np.stack([np.concatenate([summary(s, axis=0) for summary in summaries]) for s in sequences])
