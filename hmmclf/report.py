"""Reporting: cross-validation results as JSON, Markdown, CSV, a PNG and a terminal table."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from ._atomic import atomic_open, atomic_path, atomic_write_text
from .evaluation import CVResult
from .labels import LABEL_STATES

BASELINE_TITLES = {
    "always_normal": "always normal",
    "prior_random": "class-prior random",
    "gbm_clip_stats": "GBM on clip MFCC stats",
}


def _jsonable(value: Any) -> Any:
    """Plain JSON types; NaN becomes null (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _pct(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def report_dict(result: CVResult, command: str | None = None, extra: dict | None = None) -> dict[str, Any]:
    """The content of ``report.json``."""
    m = result.metrics
    fold_stats = {key: dict(zip(("mean", "std"), result.fold_summary(key))) for key in ("score", "sensitivity", "specificity")}
    out = {
        "hmmclf_version": __version__,
        "command": command,
        "score": m["score"],
        "sensitivity": m["sensitivity"],
        "specificity": m["specificity"],
        "accuracy": m["accuracy"],
        "n_clips": m["n"],
        "per_class": m["per_class"],
        "confusion_matrix": m["confusion_matrix"],
        "confusion_matrix_order": list(LABEL_STATES),
        "fold_mean_std": fold_stats,
        "folds": result.folds,
        "baseline": result.baselines.get("always_normal"),
        "baselines": result.baselines,
        "grouped": result.grouped,
        "group_column": result.group_column,
        "warnings": result.warnings,
        "seconds": round(result.seconds, 3),
        "config": result.config,
    }
    if extra:
        out.update(extra)
    return _jsonable(out)


def format_summary(report: dict[str, Any]) -> str:
    """Compact terminal table: Score/Se/Sp of the model and the baselines, per-class recall, confusion."""
    lines = []
    rows = [("hmmclf", report)] + [(BASELINE_TITLES.get(k, k), v) for k, v in report.get("baselines", {}).items()]
    lines.append(f"{'':24s} {'Score':>6s} {'Se':>6s} {'Sp':>6s}   " + " ".join(f"{s:>7s}" for s in LABEL_STATES))
    for name, m in rows:
        recalls = " ".join(f"{_pct(m['per_class'][s]['recall']):>7s}" for s in LABEL_STATES)
        lines.append(
            f"{name:24s} {_pct(m['score']):>6s} {_pct(m['sensitivity']):>6s} {_pct(m['specificity']):>6s}   {recalls}"
        )
    lines.append("(percent; the last four columns are per-class recall)")
    if "fold_mean_std" in report:
        fs = report["fold_mean_std"]
        lines.append(
            "over folds: Score {} ± {}, Se {} ± {}, Sp {} ± {}".format(
                _pct(fs["score"]["mean"]), _pct(fs["score"]["std"]),
                _pct(fs["sensitivity"]["mean"]), _pct(fs["sensitivity"]["std"]),
                _pct(fs["specificity"]["mean"]), _pct(fs["specificity"]["std"]),
            )
        )
    if report.get("score_interval"):
        ci = report["score_interval"]
        lines.append(f"Score {int(ci['level'] * 100)}% bootstrap interval over {ci['resampled']}: {_pct(ci['low'])} to {_pct(ci['high'])}")
    lines.append("confusion (rows true, columns predicted):")
    lines.append(f"{'':9s}" + "".join(f"{s:>9s}" for s in LABEL_STATES))
    for state, row in zip(LABEL_STATES, report["confusion_matrix"]):
        lines.append(f"{state:9s}" + "".join(f"{v:>9d}" for v in row))
    return "\n".join(lines)


def format_markdown(report: dict[str, Any]) -> str:
    """``report.md``: the same facts as the JSON, for people."""
    cfg = report["config"]
    out = ["# hmmclf cross-validation report", ""]
    if report.get("command"):
        out += [f"Command: `{report['command']}`", ""]
    grouping = (
        f"grouped by `{report['group_column']}` (no group on both sides of a split)"
        if report["grouped"]
        else "**NOT grouped: no patient/recording column, scores are optimistic**"
    )
    out += [
        f"{cfg['folds']}-fold stratified CV, seed {cfg['seed']}, {report['n_clips']} clips, {grouping}. "
        f"Wall time {report['seconds']:.1f} s.",
        "",
    ]
    for warning in report.get("warnings", []):
        out += [f"> **Warning:** {warning}", ""]
    out += ["## Scores (ICBHI 2017 definitions, pooled out-of-fold predictions)", ""]
    out += ["| system | Score | Se | Sp | " + " | ".join(f"recall {s}" for s in LABEL_STATES) + " |"]
    out += ["|---" * (4 + len(LABEL_STATES)) + "|"]
    rows = [("**hmmclf**", report)] + [(BASELINE_TITLES.get(k, k), v) for k, v in report.get("baselines", {}).items()]
    for name, m in rows:
        out.append(
            f"| {name} | {_pct(m['score'])} | {_pct(m['sensitivity'])} | {_pct(m['specificity'])} | "
            + " | ".join(_pct(m["per_class"][s]["recall"]) for s in LABEL_STATES)
            + " |"
        )
    out += ["", "Se: exact-state hits over all abnormal clips; Sp: recall of normal; Score = (Se+Sp)/2.", ""]
    if report.get("score_interval"):
        ci = report["score_interval"]
        out += [f"Score {int(ci['level'] * 100)}% bootstrap interval (resampling {ci['resampled']}): {_pct(ci['low'])} – {_pct(ci['high'])}", ""]
    out += ["## Per class", "", "| state | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for s in LABEL_STATES:
        c = report["per_class"][s]
        out.append(f"| {s} | {_pct(c['precision'])} | {_pct(c['recall'])} | {_pct(c['f1'])} | {c['support']} |")
    out += ["", "## Confusion matrix (rows true, columns predicted)", "", "| true \\ predicted | " + " | ".join(LABEL_STATES) + " |"]
    out += ["|---" * (1 + len(LABEL_STATES)) + "|"]
    for state, row in zip(LABEL_STATES, report["confusion_matrix"]):
        out.append(f"| {state} | " + " | ".join(str(v) for v in row) + " |")
    out += ["", "## Folds", "", "| fold | train | test | Score | Se | Sp | test groups |", "|---|---|---|---|---|---|---|"]
    for f in report["folds"]:
        m = f["metrics"]
        groups = ", ".join(f["test_groups"][:12]) + (" …" if len(f["test_groups"]) > 12 else "")
        out.append(
            f"| {f['fold']} | {f['train_size']} | {f['test_size']} | {_pct(m['score'])} | "
            f"{_pct(m['sensitivity'])} | {_pct(m['specificity'])} | {groups} |"
        )
    out += ["", "## Configuration", "", "```json", json.dumps(cfg, indent=2), "```", ""]
    return "\n".join(out)


def plot_confusion(confusion: list[list[int]], path: str | os.PathLike[str], title: str = "") -> None:
    """Confusion matrix as a PNG: counts, and colour by row-normalised rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(confusion, dtype=float)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.2, 4.4), dpi=100)
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            ax.text(
                j, i, f"{int(counts[i, j])}\n{100 * rates[i, j]:.0f}%", ha="center", va="center",
                color="white" if rates[i, j] > 0.6 else "black", fontsize=9,
            )
    ax.set_xticks(range(len(LABEL_STATES)), LABEL_STATES)
    ax.set_yticks(range(len(LABEL_STATES)), LABEL_STATES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix (row-normalised colour)")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_cv_report(
    result: CVResult, out_dir: str | os.PathLike[str], command: str | None = None, extra: dict | None = None
) -> dict[str, Any]:
    """Write ``report.json``, ``report.md``, ``confusion.png`` and ``predictions.csv`` into ``out_dir``.

    ``out_dir`` must not hold an earlier report: reports are never overwritten.
    Returns the report dictionary.
    """
    out_dir = Path(out_dir)
    if (out_dir / "report.json").exists():
        raise FileExistsError(f"{out_dir}: already holds a report; choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    report = report_dict(result, command=command, extra=extra)
    with atomic_open(out_dir / "predictions.csv", "w", newline="", encoding="utf-8") as fh:
        result.predictions.to_csv(fh, index=False)
    plot_confusion(
        report["confusion_matrix"],
        out_dir / "confusion.png",
        title=f"Score {_pct(report['score'])}  Se {_pct(report['sensitivity'])}  Sp {_pct(report['specificity'])}",
    )
    atomic_write_text(out_dir / "report.md", format_markdown(report))
    # report.json last: its presence marks a complete report.
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2))
    return report


def _load_report(path: str | os.PathLike[str]) -> tuple[str, dict[str, Any]]:
    from .errors import HmmclfError

    path = Path(path)
    file = path / "report.json" if path.is_dir() else path
    try:
        report = json.loads(file.read_text(encoding="utf-8"))
        report["score"], report["per_class"]  # noqa: B018 - the keys every report has
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HmmclfError(f"{file}: not an hmmclf cv report ({exc})") from None
    return str(file.parent), report


def leaderboard(paths: list[str | os.PathLike[str]]) -> tuple[str, str]:
    """Leaderboard of cv reports, best Score first, as (terminal text, Markdown).

    Columns: experiment, Score, Se, Sp, per-class recall, fold mean ± std of
    the Score, grouped or not, wall time, report directory.
    """
    rows = []
    for path in paths:
        directory, report = _load_report(path)
        experiment = (report.get("experiment") or {}).get("name", "default")
        fold = report.get("fold_mean_std", {}).get("score", {})
        repeat = report.get("repeat_mean_std", {}).get("score")
        rows.append(
            {
                "experiment": experiment,
                "score": report["score"],
                "se": report["sensitivity"],
                "sp": report["specificity"],
                "recall": [report["per_class"][s]["recall"] for s in LABEL_STATES],
                "fold": f"{_pct(fold.get('mean'))} ± {_pct(fold.get('std'))}",
                "repeats": f"{_pct(repeat['mean'])} ± {_pct(repeat['std'])} ({len(report['repeats'])})" if repeat else "",
                "grouped": "yes" if report.get("grouped") else "NO",
                "seconds": report.get("seconds"),
                "directory": directory,
            }
        )
    rows.sort(key=lambda r: -(r["score"] if r["score"] is not None else -1))
    header = ["experiment", "Score", "Se", "Sp"] + [f"rec {s}" for s in LABEL_STATES] + ["folds μ±σ", "repeats μ±σ", "grouped", "time s", "report"]
    table = []
    for r in rows:
        table.append(
            [r["experiment"], _pct(r["score"]), _pct(r["se"]), _pct(r["sp"])]
            + [_pct(v) for v in r["recall"]]
            + [r["fold"], r["repeats"], r["grouped"], f"{r['seconds']:.1f}" if r["seconds"] is not None else "", r["directory"]]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table)]
    text = "\n".join("  ".join(str(x).ljust(w) for x, w in zip(line, widths)) for line in [header] + table)
    markdown = "\n".join(
        ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(str(x) for x in line) + " |" for line in table]
    )
    return text, markdown + "\n"
