"""A deterministic synthetic lung-sound corpus in the take-home layout, for the demo and tests.

The signal model follows the acoustics the classes are defined by:

- breath noise: band-limited noise (about 100-1000 Hz, varying per patient)
  shaped by an inspiration / pause / expiration envelope, plus low heart thumps;
- wheeze: a sustained tonal component, 100-1000 Hz fundamental, 250-800 ms
  (the clinical definition asks for at least 100 ms), gliding slightly, with a
  harmonic and smooth onset and offset;
- crackle: short explosive transients (a sharp deflection then a damped
  oscillation, 2-20 ms), mostly during inspiration;
- both: wheeze and crackles in one cycle.

It is plausible, not clinical: it exercises every path of the tool and lets a
test check that the classifier is far above chance.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

LABELS: tuple[str, ...] = ("normal", "crackle", "wheeze", "both")
PATIENT_RATES: tuple[int, ...] = (4000, 8000, 16000, 44100)
BROKEN_FILE = "broken_000.wav"


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")


def breath_noise(
    duration_s: float, sr: int, rng: np.random.Generator, band: tuple[float, float] = (100.0, 1000.0)
) -> np.ndarray:
    """Band-limited noise under an inspiration/expiration envelope, with heart thumps."""
    from scipy.signal import butter, sosfilt

    _check_positive("duration_s", duration_s)
    _check_positive("sr", sr)
    low, high = band
    if not 0 < low < high:
        raise ValueError(f"band must satisfy 0 < low < high, got {band!r}")
    n = int(round(duration_s * sr))
    high = min(high, 0.45 * sr)
    noise = sosfilt(butter(4, [low, high], btype="band", fs=sr, output="sos"), rng.standard_normal(n))
    t = np.arange(n) / sr
    inspiration = 0.4 * duration_s
    pause = 0.08 * duration_s
    envelope = np.where(
        t < inspiration,
        np.clip(np.sin(np.pi * t / inspiration), 0, None) ** 0.7,
        np.where(
            t < inspiration + pause,
            0.05,
            0.7 * np.sin(np.pi * np.clip((t - inspiration - pause) / (duration_s - inspiration - pause), 0, 1)) ** 0.5,
        ),
    )
    signal = noise / (np.std(noise) + 1e-12) * (0.05 + envelope)
    # Heart sounds: low-frequency bursts at about 72 beats per minute.
    beat = 60.0 / rng.uniform(60, 90)
    for start in np.arange(rng.uniform(0, beat), duration_s, beat):
        i = int(start * sr)
        m = min(n - i, int(0.06 * sr))
        tt = np.arange(m) / sr
        signal[i : i + m] += 0.8 * np.sin(2 * np.pi * rng.uniform(25, 50) * tt) * np.hanning(m)
    return signal


def wheeze(duration_s: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A clip-long track holding one wheeze: tonal, 100-1000 Hz, 250-800 ms."""
    _check_positive("duration_s", duration_s)
    _check_positive("sr", sr)
    n = int(round(duration_s * sr))
    length = min(rng.uniform(0.25, 0.8), 0.8 * duration_s)
    start = rng.uniform(0.05 * duration_s, duration_s - length - 0.02 * duration_s)
    m = int(length * sr)
    i = int(start * sr)
    f0 = rng.uniform(100, min(1000, 0.2 * sr))
    glide = f0 * (1 + rng.uniform(-0.15, 0.15) * np.linspace(0, 1, m))
    phase = 2 * np.pi * np.cumsum(glide) / sr
    tone = np.sin(phase) + 0.4 * np.sin(2 * phase + rng.uniform(0, np.pi))
    ramp = np.minimum(1.0, np.minimum(np.arange(m), np.arange(m)[::-1]) / (0.03 * sr))
    out = np.zeros(n)
    out[i : i + m] = tone * ramp
    return out


def crackles(duration_s: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A clip-long track of 4-15 crackles: sharp deflection, then damped 200-1500 Hz ringing."""
    _check_positive("duration_s", duration_s)
    _check_positive("sr", sr)
    n = int(round(duration_s * sr))
    out = np.zeros(n)
    for _ in range(int(rng.integers(4, 16))):
        # Mostly in inspiration, the first 40 % of the cycle.
        position = rng.uniform(0.02, 0.4) if rng.random() < 0.8 else rng.uniform(0.4, 0.95)
        i = int(position * duration_s * sr)
        width = rng.uniform(0.002, 0.02)
        m = min(n - i, int(width * sr) + 1)
        tt = np.arange(m) / sr
        freq = rng.uniform(200, min(1500, 0.4 * sr))
        out[i : i + m] += rng.choice([-1, 1]) * np.exp(-tt / (width / 4)) * np.cos(2 * np.pi * freq * tt)
    return out


def synthesize_clip(
    label: str, duration_s: float, sr: int, rng: np.random.Generator, band: tuple[float, float]
) -> np.ndarray:
    """One clip of ``label`` as float samples with a peak between 0.3 and 0.8."""
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, got {label!r}")
    signal = breath_noise(duration_s, sr, rng, band)
    noise_rms = np.std(signal)
    if label in ("wheeze", "both"):
        signal = signal + wheeze(duration_s, sr, rng) * noise_rms * 10 ** (rng.uniform(6, 15) / 20) * np.sqrt(2)
    if label in ("crackle", "both"):
        signal = signal + crackles(duration_s, sr, rng) * noise_rms * rng.uniform(4, 8)
    return signal / np.max(np.abs(signal)) * rng.uniform(0.3, 0.8)


def _check_at_least(**values: tuple[int, int]) -> None:
    """ValueError naming the first ``name=(value, lowest allowed)`` below its bound."""
    for name, (value, lowest) in values.items():
        if value < lowest:
            raise ValueError(f"{name} must be >= {lowest}, got {value}")


def _corpus_folders(out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The corpus folder and its ``train/`` folder, created."""
    root = Path(out_dir)
    (root / "train").mkdir(parents=True, exist_ok=True)
    return root, root / "train"


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    write(tmp)
    os.replace(tmp, path)


def synthesize_corpus(
    out_dir: str | os.PathLike[str], n_per_class: int = 24, n_patients: int = 12, seed: int = 0
) -> Path:
    """Write ``out_dir/train/*.wav`` and ``out_dir/train.csv`` (filename, patient_id, label).

    ``n_per_class`` clips of each label, 1.5-4 s long, 16-bit PCM, spread over
    ``n_patients`` synthetic patients whose recordings use mixed sample rates;
    plus one unreadable file (:data:`BROKEN_FILE`) listed as normal. The same
    seed writes byte-identical files.
    """
    import pandas as pd
    import soundfile as sf

    _check_at_least(n_per_class=(n_per_class, 3), n_patients=(n_patients, 3))
    root, train = _corpus_folders(out_dir)
    rng = np.random.default_rng(seed)
    patients = [
        {
            "id": f"P{p + 1:02d}",
            "rate": PATIENT_RATES[p % len(PATIENT_RATES)],
            "band": (rng.uniform(80, 150), rng.uniform(700, 1100)),
        }
        for p in range(n_patients)
    ]
    rows = []
    for label in LABELS:
        for k in range(n_per_class):
            patient = patients[(k + LABELS.index(label)) % n_patients]
            name = f"{label}_{k:03d}.wav"
            samples = synthesize_clip(label, rng.uniform(1.5, 4.0), patient["rate"], rng, patient["band"])
            _atomic_write(
                train / name, lambda tmp: sf.write(str(tmp), samples, patient["rate"], subtype="PCM_16", format="WAV")
            )
            rows.append({"filename": name, "patient_id": patient["id"], "label": label})
    _atomic_write(train / BROKEN_FILE, lambda tmp: tmp.write_bytes(b"RIFF\x00\x00\x00\x00WAVE this file is not audio"))
    rows.append({"filename": BROKEN_FILE, "patient_id": patients[0]["id"], "label": "normal"})
    _atomic_write(root / "train.csv", lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))
    return root


def _device_colouring(samples: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A recording's channel: a random spectral tilt and resonance, and a constant noise floor."""
    from scipy.signal import butter, sosfilt

    centre = rng.uniform(150, min(1500, 0.4 * sr))
    resonance = sosfilt(butter(2, [0.7 * centre, 1.3 * centre], btype="band", fs=sr, output="sos"), samples)
    coloured = samples + rng.uniform(0.5, 3.0) * resonance
    tilt = sosfilt(butter(1, rng.uniform(200, min(1800, 0.45 * sr)), btype="low", fs=sr, output="sos"), coloured)
    mix = rng.uniform(0.0, 0.9)
    out = (1 - mix) * coloured + mix * tilt
    return out + rng.uniform(0.002, 0.05) * np.std(out) * 10 * rng.standard_normal(len(out))


def synthesize_patient_corpus(
    out_dir: str | os.PathLike[str],
    n_patients: int = 20,
    recordings_per_patient: int = 3,
    clips_per_recording: int = 5,
    seed: int = 0,
    rates: tuple[int, ...] = PATIENT_RATES,
) -> Path:
    """A corpus whose truth about patients is known: ``out_dir/train/*.wav`` and ``train.csv``.

    Each patient has a body (the band of their breath noise) and a usual finding (their clips hold
    it about two times in three, else they are normal); each of their recordings adds its own
    channel (a spectral colouring and noise floor, and a sample rate), shared by its clips. So clips
    of one recording are near copies, a patient's recordings resemble each other less, and knowing
    the patient helps guess the label: the conditions under which folds that split patients leak.
    ``train.csv`` has filename, patient_id, recording and label; file names carry nothing.
    """
    import pandas as pd
    import soundfile as sf

    _check_at_least(n_patients=(n_patients, 1), recordings_per_patient=(recordings_per_patient, 1))
    root, train = _corpus_folders(out_dir)
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        band = (rng.uniform(80, 200), rng.uniform(500, 1100))
        usual = LABELS[1 + p % 3] if p % 4 else "normal"
        for r in range(recordings_per_patient):
            rate = rates[int(rng.integers(len(rates)))]
            channel_seed = int(rng.integers(2**31))
            for c in range(clips_per_recording):
                label = usual if rng.random() < 0.67 else "normal"
                samples = synthesize_clip(label, rng.uniform(0.8, 1.6), rate, rng, band)
                samples = _device_colouring(samples, rate, np.random.default_rng(channel_seed))
                samples = samples / np.max(np.abs(samples)) * 0.7
                name = f"{len(rows):05d}.wav"
                _atomic_write(
                    train / name,
                    lambda tmp, s=samples, sr=rate: sf.write(str(tmp), s, sr, subtype="PCM_16", format="WAV"),
                )
                rows.append(
                    {"filename": name, "patient_id": f"P{p:03d}", "recording": f"P{p:03d}-R{r}", "label": label}
                )
    _atomic_write(root / "train.csv", lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))
    return root
