"""The cross-validation report's figures: confusion matrix, Se-Sp trade-off, per-fold bars."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..task.classes import CLASSES
from ..task.metrics import icbhi_metrics
from ..utils.files import atomic_path

FIGURES = {
    "confusion": "Confusion matrix: counts and percent of each true class",
    "tradeoff": "Sensitivity-specificity trade-off as the abnormal offset moves",
    "folds": "Per-fold Score, Se and Sp",
    "leakage": "How the folds were made (clips per group) and what a memorising probe scores under them",
}


def is_grouped(report: dict[str, Any]) -> bool:
    """Whether a report's folds were grouped (also for reports of hmmclf 0.3)."""
    info = report.get("groups") or {}
    return info.get("kind", info.get("source", "none")) != "none" if info else bool(report.get("grouped"))


def grouping_unit(report: dict[str, Any]) -> str:
    """What the folds keep apart, as a plural noun: "patients" when the groups are patients, else "groups"."""
    info = report.get("groups") or {}
    if "unit" in info:
        return info["unit"]
    if info.get("source") in ("column", "filename") and "recording" not in str(info.get("column")):
        return "patients"  # a report of hmmclf 0.3
    return "groups"


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    _pyplot().close(fig)


def plot_confusion(confusion: list[list[int]], path: str | os.PathLike[str], title: str = "") -> None:
    """Confusion matrix as a PNG: counts, and colour by row-normalised rate (percent of the true class)."""
    plt = _pyplot()
    counts = np.asarray(confusion, dtype=float)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.6, 4.6), dpi=100)
    image = ax.imshow(100 * rates, cmap="Blues", vmin=0, vmax=100)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            ax.text(
                j,
                i,
                f"{int(counts[i, j])}\n{100 * rates[i, j]:.0f}%",
                ha="center",
                va="center",
                color="white" if rates[i, j] > 0.6 else "black",
                fontsize=9,
            )
    ax.set_xticks(range(len(CLASSES)), CLASSES)
    ax.set_yticks(range(len(CLASSES)), CLASSES)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (labels file)")
    ax.set_title((title or "confusion matrix") + "\neach cell: clips, and % of the true class's clips", fontsize=10)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("% of the true class's clips (row)")
    fig.tight_layout()
    _save(fig, path)


def tradeoff_curve(predictions, n_points: int = 60) -> dict[str, list[float]]:
    """Out-of-fold Se/Sp as one common offset on the abnormal classes' scores moves.

    Uses the per-clip posteriors of ``predictions.csv`` (log-posteriors differ
    from the decision scores by a per-clip constant, so the argmax is the
    same). Offset 0 is the operating point the model chose.
    """
    classes = np.array(CLASSES)
    log_post = np.log(np.clip(predictions[[f"posterior_{s}" for s in CLASSES]].to_numpy(float), 1e-300, None))
    y = predictions["true"].to_numpy(str)
    margin = log_post[:, 0] - log_post[:, 1:].max(axis=1)
    offsets = np.unique(
        np.concatenate(
            [np.quantile(margin, np.linspace(0, 1, n_points)) + 1e-9, [0.0], [margin.min() - 1, margin.max() + 1]]
        )
    )
    se, sp = [], []
    for delta in offsets:
        shifted = log_post.copy()
        shifted[:, 1:] += delta
        m = icbhi_metrics(y, classes[np.argmax(shifted, axis=1)])
        se.append(m["sensitivity"])
        sp.append(m["specificity"])
    return {"offset": offsets.tolist(), "sensitivity": se, "specificity": sp}


def plot_tradeoff(curve: dict[str, list[float]], chosen: tuple[float, float], path: str | os.PathLike[str]) -> None:
    """Se against Sp (percent) over the offsets, with the chosen point and always-normal marked.

    ``curve`` and ``chosen`` hold fractions (0-1), as in ``report.json``.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 5.0), dpi=100)
    for score in (50, 60, 70, 80):
        sp = np.linspace(max(0, 2 * score - 100), 100, 50)
        ax.plot(sp, 2 * score - sp, ":", color="lightgrey", lw=1)
        ax.text(sp[len(sp) // 2], 2 * score - sp[len(sp) // 2], f"Score {score}", color="grey", fontsize=7)
    ax.plot(
        100 * np.asarray(curve["specificity"]),
        100 * np.asarray(curve["sensitivity"]),
        "-",
        color="#4c72b0",
        lw=1.5,
        label="one offset added to all abnormal classes",
    )
    ax.plot(
        [100 * chosen[1]],
        [100 * chosen[0]],
        "o",
        color="#c44e52",
        ms=8,
        label=f"the model's choice (Se {100 * chosen[0]:.1f}%, Sp {100 * chosen[1]:.1f}%)",
    )
    ax.plot([100.0], [0.0], "s", color="grey", ms=8, clip_on=False, label="always normal (Score 50)")
    ax.set_xlabel("specificity, % (normal clips called normal)")
    ax.set_ylabel("sensitivity, % (abnormal clips given their exact class)")
    ax.set_xlim(0, 102)
    ax.set_ylim(0, 102)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("Se-Sp trade-off (out-of-fold predictions)\nup and right is better; dotted: equal Score", fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_folds(report: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Per-fold Score, Se and Sp (percent) as grouped bars, with the pooled Score as a line."""
    plt = _pyplot()
    folds = report["folds"]
    unit = grouping_unit(report)
    x = np.arange(len(folds))
    fig, ax = plt.subplots(figsize=(6.8, 4.0), dpi=100)
    bars = (("score", "Score", "#4c72b0"), ("sensitivity", "Se", "#dd8452"), ("specificity", "Sp", "#55a868"))
    for i, (key, name, colour) in enumerate(bars):
        values = [f["metrics"][key] for f in folds]
        missing = [v is None or not np.isfinite(v) for v in values]
        heights = [0.0 if gone else 100 * v for v, gone in zip(values, missing)]
        ax.bar(x + (i - 1) * 0.27, heights, width=0.27, color=colour, label=name)
        for k in np.flatnonzero(missing):
            # A fold without normal (or abnormal) clips has no Sp (or Se) and no Score: say so, not 0.
            ax.text(x[k] + (i - 1) * 0.27, 1, "n/a", rotation=90, ha="center", va="bottom", fontsize=7)
    if report.get("score") is not None:
        ax.axhline(
            100 * report["score"], color="#4c72b0", ls="--", lw=1, label=f"pooled Score {100 * report['score']:.1f}"
        )
    ax.axhline(50, color="grey", ls=":", lw=1, label="always normal (Score 50)")
    ax.set_xticks(
        x,
        [
            f"fold {f['fold']}\n{len(f['test_groups'])} {unit}" if f["test_groups"] else f"fold {f['fold']}"
            for f in folds
        ],
        fontsize=8 if len(folds) <= 6 else 7,
    )
    ax.set_ylim(0, 122)
    ax.set_yticks(np.arange(0, 101, 20))
    ax.set_ylabel("percent")
    ax.set_xlabel("cross-validation fold (each tests clips its model never saw)")
    ax.legend(fontsize=7, ncol=3, loc="upper center")
    spread = f"spread across {unit}" if is_grouped(report) else "folds NOT grouped: optimistic"
    ax.set_title(f"per-fold Score / Se / Sp ({spread})", fontsize=10)
    fig.tight_layout()
    _save(fig, path)


LEAKAGE_BARS = (
    ("score_plain_folds", "plain folds (groups ignored)", "#c44e52"),
    ("score_grouped_folds", "grouped, before the dead zone", "#8172b2"),
    ("score_folds_used", "these folds", "#4c72b0"),
    ("score_dead_zone", "these folds less a dead zone", "#55a868"),
)


def plot_leakage(report: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Left: clips per group (how the folds were made). Right: the leakage probes' Scores per view and fold kind."""
    short = {
        "mfcc": "MFCC statistics,\nno mean normalisation",
        "signature": "recording\nsignature",
        "ltas": "long-term\naverage spectrum",
        "model": "the model's features\n(mean-normalised)",
    }
    plt = _pyplot()
    fig, (sizes_ax, probe_ax) = plt.subplots(1, 2, figsize=(9.6, 3.8), dpi=100, width_ratios=(1, 1.6))
    info = report.get("groups") or {}
    sizes = info.get("sizes") or []
    if sizes:
        sizes_ax.hist(sizes, bins=min(30, max(5, len(sizes) // 3)), color="#4c72b0")
        sizes_ax.set_xlabel("clips per group")
        sizes_ax.set_ylabel(grouping_unit(report))
        sizes_ax.set_title(f"{len(sizes)} {grouping_unit(report)}, {info.get('kind', '?')}", fontsize=10)
    else:
        sizes_ax.text(0.5, 0.5, "no groups", ha="center", va="center", transform=sizes_ax.transAxes)
        sizes_ax.set_axis_off()
    views = (report.get("leakage") or {}).get("views") or {}
    names = list(views)
    bars = [bar for bar in LEAKAGE_BARS if any(bar[0] in views[n] for n in names)]
    height = 0.8 / max(1, len(bars))
    for i, (key, label, colour) in enumerate(bars):
        y = np.arange(len(names)) + (i - (len(bars) - 1) / 2) * height
        probe_ax.barh(y, [views[n].get(key, np.nan) for n in names], height=height, color=colour, label=label)
    probe_ax.axvline(50, color="grey", ls=":", lw=1)
    probe_ax.set_yticks(np.arange(len(names)), [short.get(n, n) for n in names], fontsize=8)
    probe_ax.invert_yaxis()
    probe_ax.set_xlim(0, 100)
    probe_ax.set_xlabel("1-nearest-neighbour probe Score (50 = always normal)")
    if bars:  # a run without the leakage audit has no probe to show
        probe_ax.legend(fontsize=7, loc="lower right")
    probe_ax.set_title("memorising probe per kind of fold (lower: less leakage)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)


GROUPS_SHOWN = 40
"""Groups drawn in the per-group figure (the worst); every group is in the table and ``groups.csv``."""


def plot_groups(rows: list[dict[str, Any]], path: str | os.PathLike[str], unit: str = "groups") -> None:
    """Per-group Score, Se and Sp (top) and clips and errors (bottom), worst group first.

    ``rows`` are :func:`~hmmclf.evaluation.per_group.group_rows`; a rate a
    group cannot have (no normal clip: no Sp) is drawn as "n/a", not 0.
    """
    plt = _pyplot()
    shown = rows[:GROUPS_SHOWN]
    x = np.arange(len(shown))
    width = max(6.8, 0.22 * len(shown) + 2)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(width, 5.6), dpi=100, sharex=True, height_ratios=(1.4, 1))
    score = [np.nan if r["score"] is None else 100 * r["score"] for r in shown]
    top.bar(x, np.nan_to_num(score), width=0.7, color="#4c72b0", alpha=0.55, label="Score")
    for key, name, marker, colour in (("sensitivity", "Se", "^", "#dd8452"), ("specificity", "Sp", "v", "#55a868")):
        values = np.array([np.nan if r[key] is None else 100 * r[key] for r in shown])
        top.plot(x, values, marker, color=colour, ms=6, ls="", label=f"{name} (absent: n/a)")
    for k in np.flatnonzero(np.isnan(score)):
        top.text(x[k], 2, "n/a", rotation=90, ha="center", va="bottom", fontsize=7, color="#333")
    top.axhline(50, color="grey", ls=":", lw=1)
    top.set_ylim(0, 109)
    top.set_ylabel("percent")
    top.legend(fontsize=7, ncol=3, loc="upper left", bbox_to_anchor=(0, 1.02), frameon=False)
    more = f"; the worst {len(shown)} of {len(rows)} shown, all in groups.csv" if len(rows) > len(shown) else ""
    top.set_title(f"Score, Se and Sp per {unit.rstrip('s')}, worst first{more}", fontsize=10)
    clips = np.array([r["clips"] for r in shown])
    errors = np.array([r["errors"] for r in shown])
    bottom.bar(x, clips, width=0.7, color="#c8c8c8", label="clips")
    bottom.bar(x, errors, width=0.7, color="#c44e52", label="errors (not exactly their class)")
    bottom.set_ylabel("clips")
    bottom.legend(fontsize=7, loc="upper right", frameon=False)
    bottom.set_xticks(x, [str(r["group"])[:14] for r in shown], rotation=90, fontsize=7)
    bottom.set_xlabel(unit.rstrip("s"))
    # Fixed margins, not tight_layout: that draws the figure once more, and this figure is in every report.
    fig.subplots_adjust(left=0.8 / width, right=1 - 0.25 / width, top=0.93, bottom=0.17, hspace=0.08)
    _save(fig, path)
