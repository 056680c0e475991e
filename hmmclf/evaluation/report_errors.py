"""The Errors section of ``report.html``: the clips the model gets wrong, playable in the page.

For each off-diagonal cell of the confusion matrix, its most confident
mistakes (:mod:`.mistakes`), then a few correct clips of each class. Each
clip is an audio player (4 kHz mono FLAC in a data URI), a log-mel thumbnail
with the fold model's per-frame evidence under it, and its facts. The page
stays one file: audio is capped at :data:`MAX_AUDIO_SECONDS` and the section
at :data:`SECTION_BUDGET_BYTES`.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data.features import FeatureConfig
from ..task.classes import CLASSES
from .mistakes import n_correct_for, selected_rows

AUDIO_RATE = 4000
"""Sample rate of the page's audio (Hz): the model's band (at most 2 kHz by default) fits under it."""
MAX_AUDIO_SECONDS = 10.0
"""Longer clips are cut to their first seconds in the page (``hmmclf errors --copy`` gives the whole file)."""
SECTION_BUDGET_BYTES = 13_000_000
"""The Errors section's share of the page's 15 MB budget; clips past it are listed without audio."""
DRIVER_SHARE = 0.1
"""The share of a clip's frames marked as those that drove the decision."""
SPECTROGRAM_BANDS = 48
THUMBNAIL_WIDTH = 400

STYLE = """
.cell { margin: 1.2em 0 0.4em; } .clips { display: flex; flex-wrap: wrap; gap: 0.6em; }
.clip { border: 1px solid #ddd; border-radius: 4px; padding: 0.4em; width: 410px; font-size: 0.85em; }
.clip audio { width: 100%; height: 32px; } .clip img { display: block; max-width: 100%; }
.clip .facts { color: #444; overflow-wrap: anywhere; } .clip.correct { background: #f6fbf6; }
"""

SCRIPT = """
document.querySelectorAll('#errors audio').forEach(function (a) {
  function failed() {
    if (a.dataset.failed) return;
    a.dataset.failed = '1';
    a.insertAdjacentHTML('afterend', '<p class="warn">This browser cannot play this FLAC clip: ' +
      'copy the clips with <code>hmmclf errors REPORT_DIR --copy DIR</code> and play them in any player.</p>');
  }
  if (a.error) failed(); else a.addEventListener('error', failed);
});
"""


@dataclass
class ErrorsSection:
    """The Errors section: its HTML and, for ``report.json``, what it shows (no audio)."""

    html: str
    info: dict[str, Any] = field(default_factory=dict)


def evidence_class(true: str, predicted: str, ratios: np.ndarray | None) -> tuple[int, int]:
    """Which abnormal class's evidence against normal explains a decision, and its sign.

    (column in the (n_frames, 3) evidence, +1 when the frames that pushed
    towards the prediction are those above 0, else -1). A predicted abnormal
    class: its own evidence, +1. Predicted normal: the true abnormal class, or
    for a normal clip the abnormal class closest to winning, -1.
    """
    if predicted != "normal":
        return CLASSES.index(predicted) - 1, 1
    if true != "normal":
        return CLASSES.index(true) - 1, -1
    finite = np.isfinite(ratios) if ratios is not None else None
    if finite is None or not finite.any():
        return 0, -1
    # Column means over finite frames; a class without an HMM (no finite frame) never comes closest.
    means = np.where(finite, ratios, 0.0).sum(axis=0) / np.maximum(finite.sum(axis=0), 1)
    return int(np.argmax(np.where(finite.any(axis=0), means, -np.inf))), -1


def _driver_frames(ratio: np.ndarray, sign: int) -> np.ndarray:
    """The frames that pushed hardest towards the decision (the top :data:`DRIVER_SHARE`, same sign only)."""
    push = sign * np.nan_to_num(ratio, nan=0.0)
    k = max(1, int(math.ceil(DRIVER_SHARE * len(push))))
    top = np.argsort(-push, kind="stable")[:k]
    return top[push[top] > 0]


@functools.lru_cache(maxsize=4)
def _lut(name: str) -> np.ndarray:
    """A matplotlib colour map as a (256, 3) uint8 table: indexing it is much cheaper than calling the map."""
    from matplotlib import colormaps

    return (255 * colormaps[name](np.arange(256))[:, :3]).round().astype(np.uint8)


def thumbnail_png(samples: np.ndarray, config: FeatureConfig, ratio: np.ndarray | None, sign: int) -> bytes:
    """A small PNG: log-mel spectrogram, under it the evidence strip (red: the frame favours the abnormal
    class, blue: normal) and black ticks on the frames that drove the decision.

    Drawn as an array (no matplotlib figure): a figure per clip would cost more than the whole section.
    """
    from PIL import Image

    from ..data.features import mel_filterbank, power_spectrogram, power_to_db

    sr = config.sample_rate
    power = power_spectrogram(samples, config.frame_length, config.hop_length)
    if ratio is not None and 0 < len(ratio) < power.shape[1]:
        # The feature frames may stop a frame or two before the STFT's padded last frames: draw the same span.
        power = power[:, : len(ratio)]
    db = power_to_db(mel_filterbank(sr, config.frame_length, SPECTROGRAM_BANDS, 0.0, sr / 2) @ power)
    low, high = np.percentile(db, [5, 99.5])
    level = np.clip((db - low) / max(high - low, 1e-6), 0, 1)[::-1]  # low frequencies at the bottom
    n_frames = level.shape[1]
    width = THUMBNAIL_WIDTH  # one width for every clip: the pictures line up; the duration is written under each
    columns = np.minimum((np.arange(width) * n_frames / width).astype(int), n_frames - 1)
    spectrogram = _lut("magma")[np.repeat((255 * level[:, columns]).astype(np.uint8), 2, axis=0)]
    strip = np.full((12, width, 3), 255, dtype=np.uint8)
    ticks = np.full((7, width, 3), 255, dtype=np.uint8)
    if ratio is not None and len(ratio):
        ev_columns = np.minimum((np.arange(width) * len(ratio) / width).astype(int), len(ratio) - 1)
        finite = np.isfinite(ratio)
        scale = float(np.percentile(np.abs(ratio[finite]), 95)) if finite.any() else 1.0
        shade = np.clip(np.nan_to_num(ratio, nan=0.0) / max(scale, 1e-6), -1, 1)
        strip[:] = _lut("RdBu_r")[(127.5 + 127.5 * shade[ev_columns]).astype(np.uint8)]
        marked = np.zeros(len(ratio), dtype=bool)
        marked[_driver_frames(ratio, sign)] = True
        ticks[:, marked[ev_columns]] = 0
    gap = np.full((2, width, 3), 255, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.concatenate([spectrogram, gap, strip, gap, ticks])).save(buffer, format="PNG")
    return buffer.getvalue()


def flac_bytes(samples: np.ndarray, sample_rate: int) -> tuple[bytes, float]:
    """The clip for the page: its first :data:`MAX_AUDIO_SECONDS` at :data:`AUDIO_RATE`, mono, peak
    normalised (quiet recordings are audible too), as 16-bit FLAC; and the seconds it holds."""
    import soundfile as sf

    from ..data.audio import resample

    if sample_rate != AUDIO_RATE:
        samples = resample(samples, sample_rate, AUDIO_RATE)
    samples = samples[: int(MAX_AUDIO_SECONDS * AUDIO_RATE)]
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    if peak > 0:
        samples = 0.9 * samples / peak
    buffer = io.BytesIO()
    sf.write(buffer, samples.astype(np.float32), AUDIO_RATE, format="FLAC", subtype="PCM_16")
    return buffer.getvalue(), len(samples) / AUDIO_RATE


def _clip_media(
    row: pd.Series, folder: Path | None, config: FeatureConfig, ratios: np.ndarray | None
) -> tuple[dict[str, Any], str]:
    """One clip's facts for the JSON and its audio and thumbnail as HTML ("" with the reason when unreadable)."""
    from ..data.audio import load_clip
    from ..utils.errors import AudioError

    facts: dict[str, Any] = {"duration": None, "audio_seconds": None}
    if folder is None:
        facts["note"] = "clip folder unknown"
        return facts, ""
    try:
        clip = load_clip(folder / str(row["file"]), config.sample_rate)
    except (AudioError, OSError) as exc:
        facts["note"] = str(getattr(exc, "reason", exc))
        return facts, ""
    samples = clip.samples[: int(MAX_AUDIO_SECONDS * config.sample_rate)]
    facts["duration"] = round(clip.duration, 3)
    audio, seconds = flac_bytes(samples, config.sample_rate)
    facts["audio_seconds"] = round(seconds, 3)
    column, sign = evidence_class(str(row["true"]), str(row["predicted"]), ratios)
    ratio = None
    if ratios is not None:
        ratio = ratios[: max(1, int(len(ratios) * min(1.0, MAX_AUDIO_SECONDS / max(clip.duration, 1e-9)))), column]
        facts["evidence"] = CLASSES[column + 1]
        whole = ratios[:, column]
        facts["mean_evidence"] = (
            round(float(np.mean(whole[np.isfinite(whole)])), 4) if np.isfinite(whole).any() else None
        )
    png = thumbnail_png(samples, config, ratio, sign)
    media = (
        f'<audio controls preload="metadata" src="data:audio/flac;base64,{base64.b64encode(audio).decode()}"></audio>'
        f'<img alt="log-mel spectrogram of {html.escape(str(row["file"]))}" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
    )
    return facts, media


def _card(row: pd.Series, facts: dict[str, Any], media: str, unit: str) -> str:
    """One clip's box."""
    posterior = float(row["posterior"])
    head = f"true <b>{row['true']}</b> → predicted <b>{row['predicted']}</b>, posterior {posterior:.3f}"
    duration = f"{facts['duration']:.2f} s" if facts.get("duration") is not None else "duration unknown"
    if facts.get("audio_seconds") is not None and facts["duration"] and facts["audio_seconds"] < facts["duration"]:
        duration += f" (first {facts['audio_seconds']:.0f} s here)"
    evidence = ""
    if facts.get("evidence"):
        mean = facts.get("mean_evidence")
        evidence = f"; strip: {facts['evidence']} vs normal" + (
            f", mean {mean:+.2f} per frame" if mean is not None else ""
        )
    missing = "" if media else f"<p class='warn'>no audio: {html.escape(str(facts.get('note', '')))}</p>"
    facts_text = (
        f"{html.escape(str(row['file']))}<br>{unit.rstrip('s')} {html.escape(str(row.get('group', '')) or '-')}, "
        f"fold {row.get('fold', '?')}, {duration}{html.escape(evidence)}"
    )
    kind = "clip correct" if row["kind"] == "correct" else "clip"
    return f'<div class="{kind}"><div>{head}</div>{media}{missing}<div class="facts">{facts_text}</div></div>'


def _intro(top: int, n_correct: int, counts: dict[str, int]) -> str:
    """What the section shows, how to read a thumbnail, and how to get more."""
    return (
        "<h2 id='errors-title'>Errors: listen to what the model gets wrong</h2>"
        f"<p>For each cell of the confusion matrix off its diagonal, the {top} most confident mistakes (highest "
        f"posterior of the wrong class), then {n_correct} confidently correct clips of each class to compare with. "
        f"{counts['mistake']} mistakes and {counts['correct']} correct clips shown. Audio: the clip's first "
        f"{MAX_AUDIO_SECONDS:.0f} s at {AUDIO_RATE // 1000} kHz mono, loudness normalised.</p>"
        "<p>Each picture is the clip's log-mel spectrogram (0 Hz at the bottom, brighter = louder). The strip "
        "under it is the fold model's per-frame evidence of one abnormal class against normal (named under "
        "the picture): red frames sound like that class to the model, blue like normal. The black ticks mark "
        f"the {100 * DRIVER_SHARE:.0f} % of frames that pushed hardest towards the prediction.</p>"
        f"<p>More: <code>hmmclf cv --errors N</code> shows N per cell (0: no Errors section); "
        "<code>hmmclf errors REPORT_DIR --top N [--class wheeze] --copy DIR</code> lists the mistakes and "
        "copies the original clips into a folder for any audio player.</p>"
    )


def build_errors_section(
    predictions: pd.DataFrame,
    evidence: dict[int, np.ndarray],
    top: int,
    clip_folder: str | Path | None,
    config: FeatureConfig,
    budget: int = SECTION_BUDGET_BYTES,
    unit: str = "groups",
) -> ErrorsSection:
    """The Errors section of ``report.html`` and its description for ``report.json``.

    Parameters
    ----------
    predictions : pandas.DataFrame
        The prediction table (``predictions.csv``).
    evidence : dict
        Row -> (n_frames, 3) per-frame evidence (``CVResult.evidence``).
    top : int
        Mistakes per off-diagonal cell; 0 gives an empty section.
    clip_folder : path or None
        Where the clips are (the labels file's data folder).
    config : FeatureConfig
        The features' config: its rate and frames align the thumbnail with the evidence.
    budget : int
        Bytes of audio and thumbnails at most; later clips are listed without them.
    unit : str
        What the groups are, plural ("patients", "groups").
    """
    if top <= 0:
        return ErrorsSection("", {"per_cell": 0})
    folder = Path(clip_folder).resolve() if clip_folder else None
    chosen = selected_rows(predictions, top)
    n_correct = n_correct_for(top)
    used, over_budget, cards, clips = 0, 0, {}, []
    for _, row in chosen.iterrows():
        facts, media = ({"duration": None, "audio_seconds": None, "note": "over the page's size budget"}, "")
        if used < budget:
            facts, media = _clip_media(row, folder, config, evidence.get(int(row["row"])))
            used += len(media)
        else:
            over_budget += 1
        key = "correct" if row["kind"] == "correct" else f"{row['true']}|{row['predicted']}"
        cards.setdefault(key, []).append(_card(row, facts, media, unit))
        clips.append(
            {
                **{k: row[k] for k in ("file", "group", "fold", "true", "predicted", "posterior", "kind") if k in row},
                **facts,
                "playable": bool(media),
            }
        )
    counts = {"mistake": int((chosen["kind"] == "mistake").sum()), "correct": int((chosen["kind"] == "correct").sum())}
    body = [_intro(top, n_correct, counts)]
    confusion = pd.crosstab(predictions["true"], predictions["predicted"])
    empty = []
    for t in CLASSES:
        for p in CLASSES:
            if t == p:
                continue
            total = int(confusion.at[t, p]) if t in confusion.index and p in confusion.columns else 0
            if not total:
                empty.append(f"{t} → {p}")
                continue
            shown = len(cards.get(f"{t}|{p}", []))
            body.append(f"<h3 class='cell'>true {t}, predicted {p}: {shown} of {total} shown</h3>")
            body.append("<div class='clips'>" + "".join(cards.get(f"{t}|{p}", [])) + "</div>")
    if empty:
        body.append(f"<p>No mistakes in: {html.escape(', '.join(empty))}.</p>")
    if cards.get("correct"):
        body.append("<h3 class='cell'>Correct clips, for comparison</h3>")
        body.append("<div class='clips'>" + "".join(cards["correct"]) + "</div>")
    if over_budget:
        body.append(
            f"<p class='warn'>{over_budget} clips are listed without audio: the page keeps within its size "
            f"budget ({budget / 1e6:.0f} MB for this section). Use <code>hmmclf errors --copy</code> for them.</p>"
        )
    info = {
        "per_cell": top,
        "correct_per_class": n_correct,
        "clip_folder": str(folder) if folder else None,
        "audio": {"format": "FLAC", "sample_rate": AUDIO_RATE, "max_seconds": MAX_AUDIO_SECONDS},
        "section_bytes": used,
        "budget_bytes": budget,
        "over_budget": over_budget,
        "clips": clips,
    }
    section = "<section id='errors'>" + "\n".join(body) + f"</section>\n<script>{SCRIPT}</script>"
    return ErrorsSection(section, info)
