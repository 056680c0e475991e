"""Shared fixtures: small generated clips and corpora (no real data in the repository)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf


@pytest.fixture(autouse=True)
def one_thread_per_process():
    """One BLAS/OpenMP thread per process: k-means and numpy would otherwise oversubscribe 2 cores."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


SHARED_ICBHI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "icbhi"


def make_signal(kind: str, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A crude respiratory-like clip: band noise, plus a tone (wheeze) and/or clicks (crackle)."""
    n = int(seconds * sr)
    t = np.arange(n) / sr
    envelope = 0.5 + 0.5 * np.sin(np.pi * t / seconds)
    signal = 0.05 * rng.standard_normal(n) * envelope
    if kind in ("wheeze", "both"):
        f0 = rng.uniform(300, 600)
        signal += 0.2 * np.sin(2 * np.pi * f0 * t) * envelope
    if kind in ("crackle", "both"):
        for start in rng.uniform(0.05, seconds - 0.05, size=10):
            i = int(start * sr)
            m = min(n - i, int(0.01 * sr))
            tt = np.arange(m) / sr
            signal[i : i + m] += 0.6 * np.exp(-tt / 0.002) * np.sin(2 * np.pi * 800 * tt)
    return (signal / np.max(np.abs(signal)) * 0.7).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, sr: int, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, sr, subtype=subtype)
    return path


def build_corpus(root: Path, per_patient: int = 2, patients: int = 4, seed: int = 0, seconds: float = 1.0) -> Path:
    """``root/train/*.wav`` + ``root/train.csv`` with every state for every patient."""
    rng = np.random.default_rng(seed)
    rows = []
    rates = (4000, 8000, 16000, 44100)
    for p in range(patients):
        sr = rates[p % len(rates)]
        for state in ("normal", "crackle", "wheeze", "both"):
            for k in range(per_patient):
                name = f"p{p}_{state}_{k}.wav"
                write_wav(root / "train" / name, make_signal(state, seconds, sr, rng), sr)
                rows.append({"filename": name, "patient_id": f"P{p}", "label": state})
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    return root


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return build_corpus(tmp_path / "corpus")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
