"""The crest-factor frame feature: a Butterworth high-pass and, per frame, peak over RMS, compiled.

Crackles are short explosive transients: a frame that holds one has a peak far
above its RMS once breath and heart sounds (below about 200 Hz) are filtered
out. The filter is the fourth-order Butterworth high-pass that
``scipy.signal.butter(4, 200, "highpass", fs=rate, output="sos")`` designs,
applied as ``scipy.signal.sosfilt`` applies it (transposed direct form II,
section after section); ``tests/test_features.py`` checks both against scipy.
They are written out here because importing ``scipy.signal`` costs more than
half a second in every extraction process and in every ``hmmclf predict``,
more than filtering a few thousand clips.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

HIGHPASS_HZ = 200.0
HIGHPASS_ORDER = 4


@functools.lru_cache(maxsize=8)
def butterworth_highpass_sos(order: int, cutoff_hz: float, sample_rate: int) -> np.ndarray:
    """Second-order sections ``(order // 2, 6)`` of a digital Butterworth high-pass (bilinear transform).

    Each row is ``[b0, b1, b2, 1, a1, a2]``; the gain sits in the first
    section, and the sections run from the poles farthest from the unit circle
    to the nearest, as scipy orders them.
    """
    if order < 2 or order % 2:
        raise ValueError(f"order must be even and >= 2, got {order}")
    if not 0 < cutoff_hz < sample_rate / 2:
        raise ValueError(f"cutoff must lie in (0, {sample_rate / 2}) Hz, got {cutoff_hz}")
    # Analogue low-pass prototype poles on the left half of the unit circle, the cutoff pre-warped,
    # the low-pass turned high-pass (s -> warped / s: zeros at s = 0), then the bilinear transform.
    prototype = -np.exp(1j * np.pi * np.arange(-order + 1, order, 2) / (2 * order))
    warped = 2 * sample_rate * np.tan(np.pi * cutoff_hz / sample_rate)
    poles = warped / prototype
    gain = np.real(1 / np.prod(-prototype))
    fs2 = 2.0 * sample_rate
    digital_poles = (fs2 + poles) / (fs2 - poles)
    gain *= np.real(fs2**order / np.prod(fs2 - poles))
    upper = digital_poles[digital_poles.imag > 0]
    upper = upper[np.argsort(np.abs(upper))]
    sos = np.zeros((order // 2, 6))
    for row, pole in enumerate(upper):
        # Zeros at z = 1 (s = 0), twice per section; the conjugate pole pair.
        sos[row] = [1.0, -2.0, 1.0, 1.0, -2.0 * pole.real, abs(pole) ** 2]
    sos[0, :3] *= gain
    sos.flags.writeable = False  # shared by every caller through the cache
    return sos


@numba.njit(cache=True, nogil=True)
def sos_filter(sos, samples):  # pragma: no cover - compiled
    """``samples`` filtered by the second-order sections ``sos`` from rest, in float64 (scipy's sosfilt)."""
    out = np.empty(samples.shape[0])
    n_sections = sos.shape[0]
    state = np.zeros((n_sections, 2))
    for n in range(samples.shape[0]):
        x = np.float64(samples[n])
        for s in range(n_sections):
            y = sos[s, 0] * x + state[s, 0]
            state[s, 0] = sos[s, 1] * x - sos[s, 4] * y + state[s, 1]
            state[s, 1] = sos[s, 2] * x - sos[s, 5] * y
            x = y
        out[n] = x
    return out


@numba.njit(cache=True, nogil=True)
def frame_log_crest(signal, frame_length, hop_length):  # pragma: no cover - compiled
    """log(peak / RMS) of each centred frame (half a frame of zeros padded at each end), as the features frame."""
    half = frame_length // 2
    n_frames = 1 + (signal.shape[0] + 2 * half - frame_length) // hop_length
    out = np.empty(n_frames)
    for f in range(n_frames):
        start = f * hop_length - half
        peak = 0.0
        energy = 0.0
        for i in range(max(start, 0), min(start + frame_length, signal.shape[0])):
            value = signal[i]
            energy += value * value
            if abs(value) > peak:
                peak = abs(value)
        rms = np.sqrt(energy / frame_length) + 1e-9
        out[f] = np.log(peak / rms + 1e-9)
    return out


def log_crest_factor(samples: np.ndarray, sample_rate: int, frame_length: int, hop_length: int) -> np.ndarray:
    """Log crest factor of each frame of ``samples`` high-passed at 200 Hz, shape (n_frames,), float64.

    Frames as :func:`hmmclf.data.features.frame_signal` makes them (centred,
    zero-padded); ``n_frames = 1 + len(samples) // hop_length``.
    """
    samples = np.ascontiguousarray(samples)
    if samples.ndim != 1:
        raise ValueError(f"samples must be 1-D, got shape {samples.shape}")
    sos = butterworth_highpass_sos(HIGHPASS_ORDER, HIGHPASS_HZ, int(sample_rate))
    return frame_log_crest(sos_filter(sos, samples), int(frame_length), int(hop_length))
