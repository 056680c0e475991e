"""``hmmclf compare``: a leaderboard of cv reports, best Score first."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..task.classes import CLASSES
from ..utils.errors import HmmclfError
from .figures import is_grouped
from .report_text import BASELINE_TITLES, pct


def _load_report(path: str | os.PathLike[str]) -> tuple[str, dict[str, Any]]:

    path = Path(path)
    file = path / "report.json" if path.is_dir() else path
    try:
        report = json.loads(file.read_text(encoding="utf-8"))
        report["score"], report["per_class"]  # noqa: B018 - the keys every report has
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HmmclfError(f"{file}: not an hmmclf cv report ({exc})") from None
    return str(file.parent), report


def leaderboard(paths: list[str | os.PathLike[str]], name_rows: Any = None) -> tuple[str, str]:
    """Leaderboard of cv reports, best Score first, as (terminal text, Markdown).

    Columns: experiment, Score, Se, Sp, per-class recall, fold mean ± std of
    the Score, grouped or not, wall time, report directory. Rows are named by ``name_rows(reports)``
    (``hmmclf.app.experiment.run_names``: experiment + the settings that differ), else by experiment; names
    still shared get the report directory appended. A report given twice is an error.
    """

    loaded = [_load_report(path) for path in paths]
    files = [Path(directory, "report.json").resolve() for directory, _ in loaded]
    if len(set(files)) < len(files):
        raise HmmclfError(f"{next(f for f in files if files.count(f) > 1)}: given twice")
    reports = [report for _, report in loaded]
    names = name_rows(reports) if name_rows else [(r.get("experiment") or {}).get("name", "default") for r in reports]
    unique = list(names)
    for suffix in (lambda d: Path(d).name, str):  # the report folder's name, else its whole path
        unique = [f"{b} [{suffix(d)}]" if unique.count(n) > 1 else n for n, b, (d, _) in zip(unique, names, loaded)]
    rows = []
    for experiment, (directory, report) in zip(unique, loaded):
        fold = report.get("fold_mean_std", {}).get("score", {})
        repeat = report.get("repeat_mean_std", {}).get("score")
        rows.append(
            {
                "experiment": experiment,
                "score": report["score"],
                "se": report["sensitivity"],
                "sp": report["specificity"],
                "recall": [report["per_class"][s]["recall"] for s in CLASSES],
                "fold": f"{pct(fold.get('mean'))} ± {pct(fold.get('std'))}",
                "repeats": f"{pct(repeat['mean'])} ± {pct(repeat['std'])} ({len(report['repeats'])})" if repeat else "",
                "grouped": "yes" if is_grouped(report) else "NO",
                "interval": _interval(report),
                "baseline": _best_baseline(report),
                "leakage": _leakage(report),
                "seconds": report.get("seconds"),
                "directory": directory,
            }
        )
    rows.sort(key=lambda r: -(r["score"] if r["score"] is not None else -1))
    header = (
        ["experiment", "Score", "Se", "Sp"]
        + [f"rec {s}" for s in CLASSES]
        + ["folds μ±σ", "repeats μ±σ", "interval", "best baseline", "probe used/plain", "grouped", "time s", "report"]
    )
    table = []
    for r in rows:
        table.append(
            [r["experiment"], pct(r["score"]), pct(r["se"]), pct(r["sp"])]
            + [pct(v) for v in r["recall"]]
            + [
                r["fold"],
                r["repeats"],
                r["interval"],
                r["baseline"],
                r["leakage"],
                r["grouped"],
                f"{r['seconds']:.1f}" if r["seconds"] is not None else "",
                r["directory"],
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table)]
    text = "\n".join("  ".join(str(x).ljust(w) for x, w in zip(line, widths)) for line in [header] + table)
    markdown = "\n".join(
        ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        + ["| " + " | ".join(str(x) for x in line) + " |" for line in table]
    )
    return text, markdown + "\n"


def _interval(report: dict[str, Any]) -> str:
    ci = report.get("score_interval") or {}
    return f"{pct(ci.get('low'))}–{pct(ci.get('high'))}" if "low" in ci else ""


def _best_baseline(report: dict[str, Any]) -> str:
    """The best baseline on the same folds (always normal excluded: it is 50 by construction)."""
    scores = {k: v["score"] for k, v in (report.get("baselines") or {}).items() if k != "always_normal"}
    scores = {k: v for k, v in scores.items() if v is not None}
    if not scores:
        return ""
    name = max(scores, key=scores.get)
    return f"{pct(scores[name])} ({BASELINE_TITLES.get(name, name)})"


def _leakage(report: dict[str, Any]) -> str:
    leakage = report.get("leakage") or {}
    if "score_folds_used" not in leakage:
        return ""
    return f"{leakage['score_folds_used']:.1f} / {leakage['score_plain_folds']:.1f}"
