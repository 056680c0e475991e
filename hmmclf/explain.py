"""What the model hears in one clip: Viterbi segmentations and per-frame likelihood ratios.

An HMM's Viterbi path is a segmentation of the clip, and the per-frame
increments of the forward log-likelihood show which moments pushed the
decision. :func:`explain_clip` returns these as data; :func:`plot_explanation`
draws them on a shared time axis under the waveform and spectrogram.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .labels import CLASS_LABELS, CLASSES

CLASS_COLOURS = {"normal": "#4c72b0", "crackle": "#dd8452", "wheeze": "#55a868", "both": "#c44e52"}


def _segments(path: np.ndarray, frame_seconds: float) -> list[dict[str, Any]]:
    """Runs of one hidden state as {start, end (seconds), hidden_state}."""
    segments = []
    start = 0
    for t in range(1, len(path) + 1):
        if t == len(path) or path[t] != path[start]:
            segments.append(
                {
                    "start": round(start * frame_seconds, 4),
                    "end": round(t * frame_seconds, 4),
                    "hidden_state": int(path[start]),
                }
            )
            start = t
    return segments


def explain_clip(
    clip_path: str | os.PathLike[str], model_path: str | os.PathLike[str]
) -> tuple[dict[str, Any], np.ndarray]:
    """Decision, Viterbi segmentation per label class and per-frame log-likelihood ratios of one clip.

    Returns
    -------
    explanation : dict
        ``file``, ``class``, ``labels``, ``posterior``, ``log_likelihood``,
        ``frame_seconds``, ``viterbi`` (per label class: log-probability and
        segments with start/end seconds and hidden state), and
        ``log_likelihood_ratio`` (per abnormal class: per-frame increment of
        its HMM's log-likelihood minus normal's).
    samples : numpy.ndarray
        The clip at the analysis rate, for plotting.

    Raises
    ------
    AudioError
        When the clip cannot be used (one-line reason).
    """
    from .audio import load_clip
    from .errors import AudioError
    from .features import compute_features
    from .model_io import load_model

    model, config = load_model(model_path)
    clip = load_clip(clip_path, config.sample_rate)
    try:
        frames = compute_features(clip.samples, config)
    except ValueError as exc:
        raise AudioError(str(clip_path), str(exc)) from None
    scored = model.score_clips([frames], frame_increments=True)
    increments = scored.likelihoods.frame_increments
    label_class = str(scored.predicted[0])
    frame_seconds = config.hop_length / config.sample_rate
    viterbi = {}
    for name, (log_prob, path) in model.decode(frames).items():
        viterbi[str(name)] = {"log_probability": round(float(log_prob), 4), "segments": _segments(path, frame_seconds)}
    ratio = {c: np.round(increments[:, k] - increments[:, 0], 5).tolist() for k, c in enumerate(CLASSES) if k}
    explanation = {
        "file": str(clip_path),
        "class": label_class,
        "labels": list(CLASS_LABELS[label_class]),
        "posterior": {c: round(float(p), 6) for c, p in zip(CLASSES, scored.posterior[0])},
        "log_likelihood": {c: round(float(v), 4) for c, v in zip(CLASSES, scored.log_likelihood[0])},
        "duration": round(clip.duration, 4),
        "sample_rate": config.sample_rate,
        "frame_seconds": frame_seconds,
        "n_frames": int(len(frames)),
        "viterbi": viterbi,
        "log_likelihood_ratio": ratio,
    }
    return explanation, clip.samples


def format_explanation(explanation: dict[str, Any], max_segments: int = 8) -> str:
    """The explanation as text: decision, posteriors, segments of each HMM, strongest moments."""
    lines = [
        f"{explanation['file']}: {explanation['class']} (labels {'+'.join(explanation['labels'])})",
        "posterior: " + ", ".join(f"{s} {p:.3f}" for s, p in explanation["posterior"].items()),
    ]
    for state, info in explanation["viterbi"].items():
        shown = info["segments"][:max_segments]
        segs = ", ".join(f"{g['start']:.2f}-{g['end']:.2f}s:s{g['hidden_state']}" for g in shown)
        more = len(info["segments"]) - len(shown)
        lines.append(
            f"viterbi {state:8s} log p {info['log_probability']:.1f}: {segs}"
            + (f", ... (+{more}; all in --format json)" if more else "")
        )
    step = explanation["frame_seconds"]
    for state, ratio in explanation["log_likelihood_ratio"].items():
        ratio = np.asarray(ratio)
        top = np.argsort(ratio)[::-1][:3]
        moments = ", ".join(f"{t * step:.2f}s ({ratio[t]:+.1f})" for t in sorted(top))
        lines.append(f"{state} vs normal: mean {ratio.mean():+.2f} per frame; strongest at {moments}")
    return "\n".join(lines)


def plot_explanation(explanation: dict[str, Any], samples: np.ndarray, out_path: str | os.PathLike[str]) -> Path:
    """One PNG: waveform, log-mel spectrogram, Viterbi paths and running log-likelihood ratios."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ._atomic import atomic_path
    from .features import hz_to_mel, mel_filterbank, mel_to_hz, power_spectrogram, power_to_db

    sr = explanation["sample_rate"]
    step = explanation["frame_seconds"]
    duration = len(samples) / sr
    fig, axes = plt.subplots(
        4, 1, figsize=(11, 9), sharex=True, dpi=100, gridspec_kw={"height_ratios": [1, 1.6, 1.2, 1.4]}
    )
    t = np.arange(len(samples)) / sr
    axes[0].plot(t, samples, lw=0.5, color="black")
    axes[0].set_ylabel("waveform")

    power = power_spectrogram(samples, 256, int(round(step * sr)))
    db = power_to_db(mel_filterbank(sr, 256, 48, 0.0, sr / 2) @ power)
    db -= db.max()
    axes[1].imshow(db, origin="lower", aspect="auto", extent=[0, duration, 0, db.shape[0]], cmap="magma", vmin=-80)
    mel_freqs = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), 48))
    ticks = [0, 12, 24, 36, 47]
    axes[1].set_yticks(ticks, [f"{mel_freqs[i]:.0f}" for i in ticks])
    axes[1].set_ylabel("log-mel (Hz)")

    for row, name in enumerate(CLASSES):
        info = explanation["viterbi"][name]
        n_hidden = max(g["hidden_state"] for g in info["segments"]) + 1
        for g in info["segments"]:
            shade = 0.35 + 0.65 * g["hidden_state"] / max(1, n_hidden - 1)
            axes[2].broken_barh(
                [(g["start"], g["end"] - g["start"])], (row - 0.4, 0.8), color=CLASS_COLOURS[name], alpha=shade
            )
    axes[2].set_yticks(range(len(CLASSES)), [f"{s} HMM" for s in CLASSES])
    axes[2].set_ylabel("Viterbi path\n(shade = hidden state)")
    axes[2].set_ylim(-0.6, len(CLASSES) - 0.4)

    for state, ratio in explanation["log_likelihood_ratio"].items():
        ratio = np.asarray(ratio)
        width = min(5, len(ratio))
        smooth = np.convolve(ratio, np.ones(width) / width, mode="same")
        axes[3].plot(
            (np.arange(len(ratio)) + 0.5) * step, smooth, color=CLASS_COLOURS[state], label=f"{state} vs normal"
        )
    axes[3].axhline(0, color="grey", lw=0.8)
    axes[3].set_ylabel("log-likelihood ratio\nper frame (100 ms avg)")
    axes[3].set_xlabel("time (s)")
    axes[3].legend(loc="upper right", fontsize=8)
    axes[3].set_xlim(0, duration)
    posterior = ", ".join(f"{s} {p:.2f}" for s, p in explanation["posterior"].items())
    fig.suptitle(
        f"{Path(explanation['file']).name}: {explanation['class']} ({'+'.join(explanation['labels'])})"
        f"\nposterior {posterior}",
        fontsize=11,
    )
    fig.tight_layout()
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(out_path)
