"""Audio input: decode any clip libsndfile reads into mono float32 at the analysis rate.

Every reason a clip cannot be used is raised as :class:`hmmclf.utils.errors.AudioError`
with a short ``reason`` that ends up in ``skipped.csv`` or in ``predict``'s
``error`` field.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from ..utils.errors import AudioError

DEFAULT_MAX_SECONDS = 120.0
"""Longest clip accepted. One respiratory cycle lasts a few seconds; a longer
file is a whole recording, which would be decoded into memory in one piece."""

SILENCE_PEAK = 1e-5
"""A clip whose absolute peak is below this (about -100 dBFS) is silent."""


@dataclass(frozen=True)
class Clip:
    """A decoded clip.

    Attributes
    ----------
    samples : numpy.ndarray
        Mono float32 samples at ``sample_rate``.
    sample_rate : int
        The analysis rate the samples were resampled to.
    original_rate : int
        The file's own sample rate.
    channels : int
        Channel count of the file before mixing down.
    duration : float
        Duration in seconds.
    """

    samples: np.ndarray
    sample_rate: int
    original_rate: int
    channels: int
    duration: float


def resample(samples: np.ndarray, original_rate: int, target_rate: int) -> np.ndarray:
    """Resample mono float32 ``samples`` with soxr's band-limited (anti-aliasing) resampler."""
    if original_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {original_rate} -> {target_rate}")
    if original_rate == target_rate:
        return np.ascontiguousarray(samples, dtype=np.float32)
    import soxr

    return soxr.resample(samples.astype(np.float32, copy=False), original_rate, target_rate, quality="HQ")


def load_clip(
    path: str | os.PathLike[str],
    sample_rate: int = 4000,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> Clip:
    """Read one clip, mix it to mono and resample it to ``sample_rate``.

    Parameters
    ----------
    path : path
        An audio file in any format, sample format and channel count that
        libsndfile reads (WAV 16/24/32-bit PCM or float, FLAC, ...).
    sample_rate : int
        Analysis rate in Hz.
    max_seconds : float
        Longer files are refused before they are decoded, which bounds memory.

    Returns
    -------
    Clip

    Raises
    ------
    AudioError
        With reason ``missing file``, ``cannot decode: ...``, ``empty (zero
        samples)``, ``too long ...``, ``non-finite samples`` or ``silent``.
    """
    import soundfile as sf

    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    name = str(path)
    if not os.path.isfile(path):
        raise AudioError(name, "missing file")
    if os.path.getsize(path) == 0:
        raise AudioError(name, "empty file (zero bytes)")
    try:
        with sf.SoundFile(path) as fh:
            frames, rate, channels = fh.frames, fh.samplerate, fh.channels
            if rate <= 0 or channels <= 0:
                raise AudioError(name, f"cannot decode: invalid header (rate {rate}, channels {channels})")
            if frames <= 0:
                raise AudioError(name, "empty (zero samples)")
            if frames / rate > max_seconds:
                raise AudioError(
                    name, f"too long ({frames / rate:.0f} s > {max_seconds:.0f} s); expected one respiratory cycle"
                )
            data = fh.read(dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (RuntimeError, ValueError, OSError, TypeError) as exc:  # sf.LibsndfileError is a RuntimeError
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        # libsndfile repeats the path ("Error opening '<path>': ..."); the caller names the file already.
        message = re.sub(r"^Error opening .*?: ", "", message)
        raise AudioError(name, f"cannot decode: {message}") from None
    if data.shape[0] == 0:
        raise AudioError(name, "empty (zero samples)")
    if not np.isfinite(data).all():
        raise AudioError(name, "non-finite samples (NaN or Inf)")
    mono = data.mean(axis=1, dtype=np.float32) if channels > 1 else data[:, 0]
    if float(np.max(np.abs(mono))) < SILENCE_PEAK:
        raise AudioError(name, "silent")
    samples = resample(mono, rate, sample_rate)
    return Clip(
        samples=samples,
        sample_rate=sample_rate,
        original_rate=int(rate),
        channels=int(channels),
        duration=data.shape[0] / rate,
    )
