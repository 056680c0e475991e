"""What the model hears in one clip: Viterbi segmentations and per-frame likelihood ratios.

An HMM's Viterbi path is a segmentation of the clip, and the per-frame
increments of the forward log-likelihood show which moments pushed the
decision. :func:`explain_clip` returns these as data; :func:`plot_explanation`
draws them on a shared time axis under the waveform and spectrogram.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from ..task.classes import CLASS_LABELS, CLASSES, parse_label_text

CLASS_COLOURS = {"normal": "#4c72b0", "crackle": "#dd8452", "wheeze": "#55a868", "both": "#c44e52"}

VITERBI_LOG_P_NOTE = (
    "Viterbi log p is the log-probability of the single best path of hidden states; the log-likelihood "
    "that predict reports (and the decision uses) sums over all paths, so it is higher."
)
NO_THRESHOLD_NOTES = {
    "stacked": "the stacked rule feeds these curves' 90th percentile and peak, with each HMM's per-frame "
    "log-likelihood, to a logistic regression: no single threshold on the curves applies",
    "detectors": "the detectors rule compares crackle+both against normal+wheeze and wheeze+both against "
    "normal+crackle, each with its own tuned threshold: no single threshold on these curves applies",
}


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


def decision_thresholds(
    model: Any, n_frames: int | None = None, clip_scores: np.ndarray | None = None
) -> dict[str, Any]:
    """The thresholds the model's decision rule decides this clip with, on the curves the picture draws.

    Under the argmax, tuned and tuned-length rules class k scores above normal when
    mean_t(log p_k(x_t) - log p_normal(x_t)) + (prior_k - prior_normal) + (offset_k - offset_normal)
    [+ w (length term_k - length term_normal) for tuned-length, which needs ``n_frames``] > 0, so its
    threshold on the clip-mean ratio is minus the rest. Under peak-detectors (what ``auto`` chooses
    on many corpora) a crackle and a wheeze detector fire when the best ``peak_frames``-frame average
    of their evidence passes their threshold: ``detector_thresholds`` and ``peak_frames``. Under
    boosted, given the clip's four decision scores (``clip_scores``), each class's score is the
    trees' log-probability (the mean of its two sets) plus a tuned offset and the highest wins: ``class_scores``,
    ``tree_log_probability`` and ``offsets``. Other rules get ``thresholds`` None and a ``note``
    why. ``auto`` is read as the rule it chose.
    """
    rule = getattr(model, "decision_rule_", None)
    chooser = ""
    if rule is not None and rule.name == "auto" and getattr(rule, "chosen", None) is not None:
        rule, chooser = rule.chosen, "auto, which chose "
    name = rule.name if rule is not None else "argmax"
    label = chooser + name
    if name == "peak-detectors":
        note = (
            f"{label}: the crackle detector fires when the best {rule.peak_frames}-frame average of its evidence "
            "passes its threshold, the wheeze detector likewise; both firing means 'both'"
        )
        detectors = {"crackle": round(float(rule.thresholds[0]), 4), "wheeze": round(float(rule.thresholds[1]), 4)}
        return {"rule": label, "thresholds": None, "detector_thresholds": detectors,
                "peak_frames": int(rule.peak_frames), "note": note}  # fmt: skip
    if name == "boosted" and clip_scores is not None:
        from ..model.decision.boosted import ABSENT_LOG_PROBA

        offsets = np.asarray(rule.offsets, dtype=float)
        note = (
            f"{label}: two sets of trees on the clip's mean HMM scores, length and feature statistics give "
            "each class a log-probability (their mean); plus a tuned offset, the highest wins"
        )
        scores = np.asarray(clip_scores, dtype=float)
        trees = scores - offsets
        # A class the trees never saw scores ABSENT_LOG_PROBA: shown as None, it never wins.
        seen = [c for k, c in enumerate(CLASSES) if trees[k] > ABSENT_LOG_PROBA]
        return {
            "rule": label,
            "thresholds": None,
            "class_scores": {c: round(float(scores[k]), 4) if c in seen else None for k, c in enumerate(CLASSES)},
            "tree_log_probability": {
                c: round(float(trees[k]), 4) if c in seen else None for k, c in enumerate(CLASSES)
            },
            "offsets": {c: round(float(offsets[k]), 4) for k, c in enumerate(CLASSES)},
            "note": note,
        }
    if name not in ("argmax", "tuned", "tuned-length") or (name == "tuned-length" and n_frames is None):
        note = NO_THRESHOLD_NOTES.get(name, f"the {name} rule has no single threshold on these curves")
        return {"rule": label, "thresholds": None, "note": note}
    shift = np.asarray(model.class_log_prior_, dtype=float).copy()
    if getattr(model, "class_offsets", None) is not None:
        shift += np.asarray(model.class_offsets, dtype=float)
    if name in ("tuned", "tuned-length"):
        shift += np.asarray(rule.offsets, dtype=float)
    if name == "tuned-length":
        from ..model.decision.offsets import length_log_likelihood

        shift += rule.weight * length_log_likelihood(np.log([float(n_frames)]), rule.length_model)[0]
    # A class without training clips (log-prior -inf) never beats normal: it gets no threshold.
    thresholds = {c: round(float(shift[0] - shift[k]), 4) for k, c in enumerate(CLASSES) if k and np.isfinite(shift[k])}
    what = {"argmax": "log-prior", "tuned": "log-prior and tuned offset"}.get(
        name, "log-prior, tuned offset and weighted clip-length term (for this clip's length)"
    )
    note = f"{label} rule: each threshold is minus the class's {what} difference from normal"
    return {"rule": label, "thresholds": thresholds, "note": note}


def detector_curves(increments: np.ndarray, peak_frames: int) -> dict[str, Any]:
    """Crackle and wheeze detector evidence averaged over every window of ``peak_frames`` frames.

    The maximum of each curve is what the peak-detectors rule compares with its threshold (a clip
    shorter than the window gives one value, its mean). ``window`` is the width used; the value at
    index i averages frames i .. i + window - 1.
    """
    from ..model.decision.detectors import DETECTOR_NAMES, detector_evidence, moving_average

    evidence = detector_evidence(increments)
    # The rule's own moving average, so that the curve's maximum is the number it compares.
    averaged = moving_average(evidence, peak_frames)
    curves: dict[str, Any] = {name: np.round(averaged[:, j], 5).tolist() for j, name in enumerate(DETECTOR_NAMES)}
    curves["window"] = len(evidence) - len(averaged) + 1
    return curves


def _true_class(true_label: str | None) -> str | None:
    """The label class of a user's ``true_label`` text (``crackle+wheeze`` -> ``both``), or None."""
    if true_label is None or str(true_label).strip() == "":
        return None
    try:
        return parse_label_text(str(true_label))
    except ValueError as exc:
        raise ValueError(f"true label: {exc} (use one of {', '.join(CLASSES)})") from None


def _set_true_label(explanation: dict[str, Any], true_label: str | None) -> None:
    true = _true_class(true_label)
    explanation["true_class"] = true
    explanation["true_labels"] = list(CLASS_LABELS[true]) if true else None
    explanation["correct"] = None if true is None else true == explanation["class"]


def explain_clip(
    clip_path: str | os.PathLike[str], model_path: str | os.PathLike[str], true_label: str | None = None
) -> tuple[dict[str, Any], np.ndarray]:
    """Decision, Viterbi segmentation per label class and per-frame log-likelihood ratios of one clip.

    Parameters
    ----------
    true_label : str, optional
        The clip's known label (a class name, or a label set such as
        ``crackle+wheeze``), shown next to the prediction.

    Returns
    -------
    explanation : dict
        ``file``, ``class`` (predicted), ``labels``, ``true_class``,
        ``true_labels`` and ``correct`` (None without ``true_label``),
        ``posterior``, ``log_likelihood`` (forward, over all paths),
        ``frame_seconds``, ``viterbi`` (per label class: log-probability of
        the best path and segments with start/end seconds and hidden state),
        ``log_likelihood_ratio`` (per abnormal class: per-frame increment of
        its HMM's log-likelihood minus normal's), ``mean_log_likelihood_ratio``
        (their clip means), ``decision`` (rule, per-class thresholds on those
        means, note; see :func:`decision_thresholds`) and ``feature_band``
        (fmin, fmax in Hz).
    samples : numpy.ndarray
        The clip at the analysis rate, for plotting.

    Raises
    ------
    AudioError
        When the clip cannot be used (one-line reason).
    ValueError
        When ``true_label`` is not a label.
    """
    from ..data.audio import load_clip
    from ..data.features import compute_features
    from ..model.model_io import load_model
    from ..utils.errors import AudioError

    _true_class(true_label)  # refuse a bad label before the work
    model, config = load_model(model_path)
    clip = load_clip(clip_path, config.sample_rate)
    try:
        frames = compute_features(clip.samples, config)
    except ValueError as exc:
        raise AudioError(str(clip_path), str(exc)) from None
    scored = model.score_clips([frames], frame_increments=True)
    increments = scored.likelihoods.frame_increments
    frame_seconds = config.hop_length / config.sample_rate
    viterbi = {}
    for name, (log_prob, path) in model.decode(frames).items():
        viterbi[str(name)] = {"log_probability": round(float(log_prob), 4), "segments": _segments(path, frame_seconds)}
    # A class without training clips has no HMM (log-likelihood -inf): it gets no path and no ratio.
    present = [getattr(model, "hmms_", [None])[k] is not None for k in range(len(CLASSES))]
    ratio = {c: increments[:, k] - increments[:, 0] for k, c in enumerate(CLASSES) if k and present[k]}
    explanation = {
        "file": str(clip_path),
        **scored.clip_record(0),
        "duration": round(clip.duration, 4),
        "sample_rate": config.sample_rate,
        "frame_seconds": frame_seconds,
        "n_frames": int(len(frames)),
        "viterbi": viterbi,
        "log_likelihood_ratio": {c: np.round(r, 5).tolist() for c, r in ratio.items()},
        "mean_log_likelihood_ratio": {c: round(float(r.mean()), 5) for c, r in ratio.items()},
        "decision": decision_thresholds(model, n_frames=len(frames), clip_scores=scored.decision[0]),
        "feature_band": [float(config.fmin), float(config.fmax)],
    }
    if "detector_thresholds" in explanation["decision"]:
        explanation["detector_evidence"] = detector_curves(increments, explanation["decision"]["peak_frames"])
    _set_true_label(explanation, true_label)
    return explanation, clip.samples


def _decision_line(explanation: dict[str, Any]) -> str:
    true = explanation.get("true_class")
    line = f"predicted: {explanation['class']} (labels {'+'.join(explanation['labels'])})"
    if true:
        line += f"; true label: {true}" + (" - correct" if explanation.get("correct") else " - WRONG")
    return line


def format_explanation(explanation: dict[str, Any], max_segments: int = 8) -> str:
    """The explanation as text: decision, posteriors, segments of each HMM, strongest moments."""
    lines = [
        f"{explanation['file']}: {_decision_line(explanation)}",
        "posterior: " + ", ".join(f"{s} {p:.3f}" for s, p in explanation["posterior"].items()),
        "log-likelihood over all paths (as predict): "
        + ", ".join(f"{s} {v:.1f}" for s, v in explanation["log_likelihood"].items() if v is not None),
    ]
    for state, info in explanation["viterbi"].items():
        shown = info["segments"][:max_segments]
        segs = ", ".join(f"{g['start']:.2f}-{g['end']:.2f}s:s{g['hidden_state']}" for g in shown)
        more = len(info["segments"]) - len(shown)
        lines.append(
            f"viterbi {state:8s} log p {info['log_probability']:.1f}: {segs}"
            + (f", ... (+{more}; all in --format json)" if more else "")
        )
    lines.append(f"({VITERBI_LOG_P_NOTE} s0, s1, ... are each HMM's own hidden states.)")
    step = explanation["frame_seconds"]
    thresholds = (explanation.get("decision") or {}).get("thresholds")
    for state, ratio in explanation["log_likelihood_ratio"].items():
        ratio = np.asarray(ratio)
        top = np.argsort(ratio)[::-1][:3]
        moments = ", ".join(f"{t * step:.2f}s ({ratio[t]:+.1f})" for t in sorted(top))
        mean = ratio.mean()
        against = ""
        if thresholds and state in thresholds:
            verdict = "beats" if mean > thresholds[state] else "does not beat"
            against = f" against threshold {thresholds[state]:+.2f}: {verdict} normal"
        lines.append(f"{state} vs normal: mean {mean:+.2f} per frame{against}; strongest at {moments}")
    decision = explanation.get("decision")
    for name, threshold in ((decision or {}).get("detector_thresholds") or {}).items():
        curves = explanation["detector_evidence"]
        curve = np.asarray(curves[name])
        peak, start = float(curve.max()), int(curve.argmax()) * step
        verdict = "fires" if peak > threshold else "does not fire"
        lines.append(
            f"{name} detector: best {curves['window'] * step:.2f}-s average evidence {peak:+.2f} "
            f"(from {start:.2f}s) against threshold {threshold:+.2f}: {verdict}"
        )
    if decision and decision.get("class_scores"):
        parts = [
            f"{c} {score:+.2f} ({decision['tree_log_probability'][c]:+.2f} {decision['offsets'][c]:+.2f})"
            for c, score in decision["class_scores"].items()
            if score is not None
        ]
        lines.append("class scores (trees' log-probability, tuned offset): " + ", ".join(parts))
    if decision and not decision.get("thresholds"):
        lines.append(f"({decision['note']})")
    return "\n".join(lines)


def figure_title(explanation: dict[str, Any]) -> str:
    """The figure's title: file; the prediction and, apart from it, the true label when known; posteriors."""
    posterior = ", ".join(f"{s} {p:.2f}" for s, p in explanation["posterior"].items())
    true = explanation.get("true_class")
    truth = f"true label: {true}  ({'correct' if explanation.get('correct') else 'WRONG'})" if true else ""
    return (
        f"{Path(explanation['file']).name}\npredicted: {explanation['class']}   |   "
        f"{truth or 'true label: not given'}\nposterior (the model's relative weight of each class): {posterior}"
    )


def _wrap(text: str, width: int = 44) -> str:
    return "\n".join(textwrap.fill(part, width) for part in text.split("\n"))


def _plot_means(ax: Any, means: dict[str, float], thresholds: dict[str, float] | None) -> None:
    """Small bars: each abnormal class's clip-mean ratio against its threshold."""
    names = list(means)
    for i, name in enumerate(names):
        ax.bar(i, means[name], width=0.6, color=CLASS_COLOURS[name])
        if thresholds and name in thresholds:
            ax.plot([i - 0.42, i + 0.42], [thresholds[name]] * 2, color="black", ls="--", lw=1.2)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title("clip mean vs threshold (dashed)" if thresholds else "clip mean (no single threshold)", fontsize=8)


def _plot_class_scores(ax: Any, scores: dict[str, float | None]) -> None:
    """Small bars: each class's score under the boosted rule; the highest (outlined) wins."""
    names = [c for c, v in scores.items() if v is not None]
    values = [scores[c] for c in names]
    best = int(np.argmax(values))
    for i, (name, value) in enumerate(zip(names, values)):
        ax.bar(i, value, width=0.6, color=CLASS_COLOURS[name], edgecolor="black", lw=2.0 if i == best else 0.0)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title("class scores: the highest (outlined) wins", fontsize=8)


def _spectrogram_panel(
    fig: Any, ax: Any, side: Any, samples: np.ndarray, explanation: dict[str, Any], note: dict
) -> None:
    """Log-mel spectrogram on a mel axis over 0..sr/2, ticks in Hz, a colour bar, the model's band marked."""
    from ..data.features import hz_to_mel, mel_filterbank, power_spectrogram, power_to_db

    sr, step = explanation["sample_rate"], explanation["frame_seconds"]
    duration = len(samples) / sr
    n_bands = 64
    power = power_spectrogram(samples, 256, int(round(step * sr)))
    db = power_to_db(mel_filterbank(sr, 256, n_bands, 0.0, sr / 2) @ power)
    top = float(hz_to_mel(sr / 2))
    fmin, fmax = explanation.get("feature_band") or (None, None)
    # Colours span the model's band (2nd to 99.5th percentile, 0 dB at the loud end): heart sounds and
    # handling rumble would otherwise set the scale and leave the band dark.
    centres = np.linspace(0.0, top, n_bands + 2)[1:-1]
    band = (centres >= hz_to_mel(fmin)) & (centres <= hz_to_mel(fmax)) if fmin is not None else centres >= 0
    low, high = np.percentile(db[band] if band.any() else db, [2, 99.5])
    extent = [0, duration, 0, top]
    image = ax.imshow(db - high, origin="lower", aspect="auto", extent=extent, cmap="magma", vmin=low - high, vmax=0)
    ticks = [f for f in (100, 250, 500, 1000, 2000, 4000, 8000) if f <= sr / 2]
    if fmin is not None:
        near = [f for f in ticks if min(abs(hz_to_mel(f) - hz_to_mel(b)) for b in (fmin, fmax)) < 0.06 * top]
        ticks = sorted(set(ticks) - set(near) | {fmin, fmax})
        for lo, hi in ((0.0, fmin), (fmax, sr / 2)):
            if hi > lo:
                ax.axhspan(float(hz_to_mel(lo)), float(hz_to_mel(hi)), color="white", alpha=0.45, lw=0)
        for edge in (fmin, fmax):
            ax.axhline(float(hz_to_mel(edge)), color="#00d0ff", ls="--", lw=1.3)
    ax.set_yticks([float(hz_to_mel(f)) for f in ticks], [f"{f:.0f}" for f in ticks])
    ax.set_ylabel("frequency (Hz, mel scale)")
    ax.set_ylim(0, top)
    cax = side.inset_axes([0.0, 0.02, 0.06, 0.96])
    fig.colorbar(image, cax=cax, label="dB, relative (0 = the loud end of the band)")
    band_text = (
        f"Spectrogram: brighter = louder. The model only listens to {fmin:.0f}-{fmax:.0f} Hz, between the "
        "dashed blue lines; the faded area is ignored."
        if fmin is not None
        else "Spectrogram: brighter = louder."
    )
    side.text(0.38, 1, _wrap(band_text, 30), transform=side.transAxes, **note)


def _viterbi_panel(ax: Any, side: Any, explanation: dict[str, Any], duration: float, note: dict) -> None:
    """One row per class HMM: its Viterbi path, segments shaded and labelled by hidden state."""
    for row, name in enumerate(CLASSES):
        info = explanation["viterbi"].get(name)
        if info is None:
            ax.text(duration / 2, row, "no training clips: this class is never predicted", ha="center", va="center")
            continue
        n_hidden = max(g["hidden_state"] for g in info["segments"]) + 1
        for g in info["segments"]:
            shade = 0.3 + 0.7 * g["hidden_state"] / max(1, n_hidden - 1)
            width = g["end"] - g["start"]
            ax.broken_barh([(g["start"], width)], (row - 0.4, 0.8), color=CLASS_COLOURS[name], alpha=shade)
            if width > 0.045 * duration:
                ax.text(
                    g["start"] + width / 2,
                    row,
                    f"s{g['hidden_state']}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if shade > 0.6 else "black",
                )
    ax.set_yticks(range(len(CLASSES)), [f"{s} HMM" for s in CLASSES])
    ax.set_ylabel("most likely\nhidden states")
    ax.set_ylim(-0.6, len(CLASSES) - 0.4)
    side.text(
        0,
        1,
        _wrap(
            "Each class has its own HMM, trained on clips of that class. Its hidden states (s0, s1, ...; "
            "darker = higher number) are sound patterns it learnt by itself, not named events; numbers are "
            "per HMM (crackle's s2 is not wheeze's s2). Each row is that HMM's single most likely (Viterbi) "
            "sequence of states through this clip."
        ),
        transform=side.transAxes,
        **note,
    )


def _detector_panel(ax: Any, side: Any, explanation: dict[str, Any], duration: float, note: dict) -> None:
    """The peak-detectors rule as it decides: each detector's window-averaged evidence and its threshold."""
    from matplotlib.lines import Line2D

    step = explanation["frame_seconds"]
    curves = explanation["detector_evidence"]
    thresholds = explanation["decision"]["detector_thresholds"]
    window = curves["window"]
    handles = []
    for name, colour in (("crackle", CLASS_COLOURS["crackle"]), ("wheeze", CLASS_COLOURS["wheeze"])):
        curve = np.asarray(curves[name])
        centres = (np.arange(len(curve)) + window / 2) * step
        ax.plot(centres, curve, color=colour, lw=1.4)
        ax.axhline(thresholds[name], color=colour, ls="--", lw=1.2)
        best = int(curve.argmax())
        ax.plot([centres[best]], [curve[best]], marker="o", ms=7, color=colour, zorder=5)
        fires = "fires" if curve[best] > thresholds[name] else "does not fire"
        handles.append(Line2D([], [], color=colour, lw=1.5, label=f"{name} detector ({fires})"))
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_ylabel(f"detector evidence\n({window * step:.1f} s average)")
    ax.set_xlabel("time (s)")
    ax.set_xlim(0, duration)
    handles.append(Line2D([], [], color="grey", ls="--", label="its threshold"))
    handles.append(Line2D([], [], color="grey", marker="o", ls="", label="its best window"))
    side.legend(handles=handles, loc="upper left", fontsize=8, frameon=False, borderaxespad=0)
    text = (
        f"How {explanation['decision']['rule']} decides: crackle evidence = log(p crackle + p both) - "
        "log(p normal + p wheeze) per frame, wheeze likewise, averaged over a sliding window. A detector fires "
        "when its best window (dot) is above its dashed line; both firing means 'both', neither 'normal'."
    )
    side.text(0, 0.55, _wrap(text), transform=side.transAxes, **note)


def _ratio_panel(ax: Any, side: Any, explanation: dict[str, Any], duration: float, note: dict) -> None:
    """Per-frame likelihood ratios against normal (100 ms average), thresholds on their clip mean."""
    from matplotlib.lines import Line2D

    step = explanation["frame_seconds"]
    decision = explanation.get("decision") or {}
    thresholds = decision.get("thresholds")
    means = explanation.get("mean_log_likelihood_ratio") or {
        state: float(np.mean(ratio)) for state, ratio in explanation["log_likelihood_ratio"].items()
    }
    for state, ratio in explanation["log_likelihood_ratio"].items():
        ratio = np.asarray(ratio)
        width = min(5, len(ratio))
        smooth = np.convolve(ratio, np.ones(width) / width, mode="same")
        colour = CLASS_COLOURS[state]
        ax.plot((np.arange(len(ratio)) + 0.5) * step, smooth, color=colour, lw=1.2)
        if thresholds and state in thresholds:
            ax.axhline(thresholds[state], color=colour, ls="--", lw=1.2)
        ax.plot([duration], [means[state]], marker="<", ms=9, color=colour, clip_on=False, zorder=5)
    ax.axhline(0, color="grey", lw=0.8)
    window = min(5, len(next(iter(explanation["log_likelihood_ratio"].values()), [0])))
    ax.set_ylabel(f"log-likelihood ratio vs normal\nper frame ({1000 * window * step:.0f} ms average)")
    ax.set_xlabel("time (s)")
    ax.set_xlim(0, duration)
    handles = [Line2D([], [], color=CLASS_COLOURS[s], lw=1.5, label=f"{s} vs normal") for s in means]
    handles.append(Line2D([], [], color="grey", marker="<", ls="", ms=8, label="clip mean (right edge)"))
    if thresholds:
        handles.append(Line2D([], [], color="grey", ls="--", label="threshold for the clip mean"))
    side.legend(handles=handles, loc="upper left", fontsize=8, frameon=False, borderaxespad=0)
    if thresholds:
        text = (
            "Above 0: the frame fits that class's HMM better than normal's. Each dashed line is a threshold "
            "for the clip mean (marker at the right edge; bars below), not for single peaks: a class beats "
            "normal when its mean is above its line. The prediction is the best-scoring of all four classes."
        )
    else:
        text = "Above 0: the frame fits that class's HMM better than normal's. No threshold drawn: " + decision.get(
            "note", "the decision rule is unknown"
        )
    side.text(0, 0.7, _wrap(text), transform=side.transAxes, **note)
    if decision.get("class_scores"):
        _plot_class_scores(side.inset_axes([0.2, 0.0, 0.75, 0.24]), decision["class_scores"])
    else:
        _plot_means(side.inset_axes([0.2, 0.0, 0.75, 0.24]), means, thresholds)


def plot_explanation(
    explanation: dict[str, Any],
    samples: np.ndarray,
    out_path: str | os.PathLike[str],
    true_label: str | None = None,
) -> Path:
    """One PNG: waveform, log-mel spectrogram, Viterbi paths and running log-likelihood ratios.

    ``true_label`` (or the explanation's ``true_class``) is shown apart from
    the prediction in the title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..utils.files import atomic_path

    if true_label is not None:
        explanation = dict(explanation)
        _set_true_label(explanation, true_label)
    sr = explanation["sample_rate"]
    duration = len(samples) / sr
    fig, grid = plt.subplots(
        4,
        2,
        figsize=(14, 12),
        dpi=100,
        gridspec_kw={"height_ratios": [0.9, 1.6, 1.3, 2.0], "width_ratios": [4.1, 1.35]},
    )
    axes, side = grid[:, 0], grid[:, 1]
    for ax in axes[1:]:
        ax.sharex(axes[0])
    for ax in axes[:-1]:
        ax.tick_params(labelbottom=False)
    for ax in side:
        ax.axis("off")
    note = dict(fontsize=8.5, va="top", ha="left", color="#333")

    t = np.arange(len(samples)) / sr
    axes[0].plot(t, samples, lw=0.5, color="black")
    axes[0].set_ylabel("amplitude")
    side[0].text(
        0,
        1,
        _wrap(f"Waveform: the clip in mono at {sr} Hz, all frequencies (the model uses only the band marked below)."),
        transform=side[0].transAxes,
        **note,
    )

    _spectrogram_panel(fig, axes[1], side[1], samples, explanation, note)
    _viterbi_panel(axes[2], side[2], explanation, duration, note)
    if "detector_evidence" in explanation:
        _detector_panel(axes[3], side[3], explanation, duration, note)
    else:
        _ratio_panel(axes[3], side[3], explanation, duration, note)

    fig.suptitle(figure_title(explanation), fontsize=11)
    fig.tight_layout()
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(out_path)
