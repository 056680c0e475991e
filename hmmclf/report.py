"""Reporting: cross-validation results as JSON, Markdown, CSV, a PNG and a terminal table."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from ._atomic import atomic_open, atomic_write_text
from .cv import CVResult
from .figures import plot_confusion, plot_folds, plot_tradeoff, tradeoff_curve
from .labels import CLASSES

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
    fold_stats = {
        key: dict(zip(("mean", "std"), result.fold_summary(key))) for key in ("score", "sensitivity", "specificity")
    }
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
        "confusion_matrix_order": list(CLASSES),
        "fold_mean_std": fold_stats,
        "folds": result.folds,
        "baseline": result.baselines.get("always_normal"),
        "baselines": result.baselines,
        "grouped": result.grouped,
        "group_column": result.group_column,
        "group_source": result.groups.get("source"),
        "groups": result.groups,
        "leakage": result.leakage,
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
    lines.append(f"{'':24s} {'Score':>6s} {'Se':>6s} {'Sp':>6s}   " + " ".join(f"{s:>7s}" for s in CLASSES))
    for name, m in rows:
        recalls = " ".join(f"{_pct(m['per_class'][s]['recall']):>7s}" for s in CLASSES)
        lines.append(
            f"{name:24s} {_pct(m['score']):>6s} {_pct(m['sensitivity']):>6s} {_pct(m['specificity']):>6s}   {recalls}"
        )
    lines.append("(percent; the last four columns are per-class recall)")
    if "fold_mean_std" in report:
        fs = report["fold_mean_std"]
        lines.append(
            "over folds: Score {} ± {}, Se {} ± {}, Sp {} ± {}".format(
                _pct(fs["score"]["mean"]),
                _pct(fs["score"]["std"]),
                _pct(fs["sensitivity"]["mean"]),
                _pct(fs["sensitivity"]["std"]),
                _pct(fs["specificity"]["mean"]),
                _pct(fs["specificity"]["std"]),
            )
        )
    if report.get("repeat_mean_std"):
        rs = report["repeat_mean_std"]
        lines.append(
            f"over {len(report['repeats'])} repeats (seeds {', '.join(str(r['seed']) for r in report['repeats'])}): "
            f"Score {_pct(rs['score']['mean'])} ± {_pct(rs['score']['std'])}, "
            f"Se {_pct(rs['sensitivity']['mean'])} ± {_pct(rs['sensitivity']['std'])}, "
            f"Sp {_pct(rs['specificity']['mean'])} ± {_pct(rs['specificity']['std'])}"
        )
    if report.get("score_interval"):
        ci = report["score_interval"]
        lines.append(
            f"Score {int(ci['level'] * 100)}% bootstrap interval over {ci['resampled']}: "
            f"{_pct(ci['low'])} to {_pct(ci['high'])}"
        )
    lines.append(describe_grouping(report))
    if report.get("leakage"):
        lines.append(describe_leakage(report["leakage"]))
    lines.append("confusion (rows true, columns predicted):")
    lines.append(f"{'':9s}" + "".join(f"{s:>9s}" for s in CLASSES))
    for name, row in zip(CLASSES, report["confusion_matrix"]):
        lines.append(f"{name:9s}" + "".join(f"{v:>9d}" for v in row))
    return "\n".join(lines)


def describe_grouping(report: dict[str, Any]) -> str:
    """One sentence: which groups kept clips apart in the folds, where they came from, how many."""
    info = report.get("groups") or {}
    if not report.get("grouped"):
        return "folds: NOT grouped (no patient, recording or inferred groups): scores are optimistic"
    unit = (
        "patients"
        if info.get("source") in ("column", "filename") and "recording" not in str(info.get("column"))
        else "groups"
    )
    return f"folds: grouped by {info.get('note', report.get('group_column'))}: {info.get('n_groups', '?')} {unit}"


def describe_leakage(leakage: dict[str, Any]) -> str:
    """The leakage audit in one or two sentences."""
    text = (
        f"leakage audit ({leakage['probe']}): Score {leakage['score_folds_used']:.1f} under these folds, "
        f"{leakage['score_plain_folds']:.1f} under plain stratified folds; gap {leakage['gap']:+.1f} points"
    )
    if leakage["grouped"]:
        text += " (the optimism these folds remove)"
    return text + (f"\n{leakage['warning']}" if leakage.get("warning") else "")


def format_markdown(report: dict[str, Any]) -> str:
    """``report.md``: the same facts as the JSON, for people."""
    cfg = report["config"]
    out = ["# hmmclf cross-validation report", ""]
    if report.get("command"):
        out += [f"Command: `{report['command']}`", ""]
    grouping = describe_grouping(report) if report["grouped"] else f"**{describe_grouping(report)}**"
    out += [
        f"{cfg['folds']}-fold stratified CV, seed {cfg['seed']}, {report['n_clips']} clips, {grouping}. "
        f"Wall time {report['seconds']:.1f} s.",
        "",
    ]
    for warning in report.get("warnings", []):
        out += [f"> **Warning:** {warning}", ""]
    if report.get("leakage"):
        out += ["## Leakage audit", "", describe_leakage(report["leakage"]).replace("\n", "\n\n"), ""]
    out += ["## Scores (ICBHI 2017 definitions, pooled out-of-fold predictions)", ""]
    out += ["| system | Score | Se | Sp | " + " | ".join(f"recall {s}" for s in CLASSES) + " |"]
    out += ["|---" * (4 + len(CLASSES)) + "|"]
    rows = [("**hmmclf**", report)] + [(BASELINE_TITLES.get(k, k), v) for k, v in report.get("baselines", {}).items()]
    for name, m in rows:
        out.append(
            f"| {name} | {_pct(m['score'])} | {_pct(m['sensitivity'])} | {_pct(m['specificity'])} | "
            + " | ".join(_pct(m["per_class"][s]["recall"]) for s in CLASSES)
            + " |"
        )
    out += ["", "Se: exact-class hits over all abnormal clips; Sp: recall of normal; Score = (Se+Sp)/2.", ""]
    if report.get("repeats"):
        out += [
            "Repeated CV (the tables below detail the first seed):",
            "",
            "| seed | Score | Se | Sp |",
            "|---|---|---|---|",
        ]
        out += [
            f"| {r['seed']} | {_pct(r['score'])} | {_pct(r['sensitivity'])} | {_pct(r['specificity'])} |"
            for r in report["repeats"]
        ]
        rs = report["repeat_mean_std"]
        out += [
            f"| mean ± std | {_pct(rs['score']['mean'])} ± {_pct(rs['score']['std'])} | "
            f"{_pct(rs['sensitivity']['mean'])} ± {_pct(rs['sensitivity']['std'])} | "
            f"{_pct(rs['specificity']['mean'])} ± {_pct(rs['specificity']['std'])} |",
            "",
        ]
    if report.get("score_interval"):
        ci = report["score_interval"]
        out += [
            f"Score {int(ci['level'] * 100)}% bootstrap interval (resampling {ci['resampled']}): "
            f"{_pct(ci['low'])} – {_pct(ci['high'])}",
            "",
        ]
    out += ["## Per class", "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for s in CLASSES:
        c = report["per_class"][s]
        out.append(f"| {s} | {_pct(c['precision'])} | {_pct(c['recall'])} | {_pct(c['f1'])} | {c['support']} |")
    out += [
        "",
        "## Confusion matrix (rows true, columns predicted)",
        "",
        "| true \\ predicted | " + " | ".join(CLASSES) + " |",
    ]
    out += ["|---" * (1 + len(CLASSES)) + "|"]
    for name, row in zip(CLASSES, report["confusion_matrix"]):
        out.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    out += [
        "",
        "## Folds",
        "",
        "| fold | train | test | Score | Se | Sp | test groups |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in report["folds"]:
        m = f["metrics"]
        groups = ", ".join(f["test_groups"][:12]) + (" …" if len(f["test_groups"]) > 12 else "")
        out.append(
            f"| {f['fold']} | {f['train_size']} | {f['test_size']} | {_pct(m['score'])} | "
            f"{_pct(m['sensitivity'])} | {_pct(m['specificity'])} | {groups} |"
        )
    out += ["", "## Configuration", "", "```json", json.dumps(cfg, indent=2), "```", ""]
    return "\n".join(out)


def write_cv_report(
    result: CVResult, out_dir: str | os.PathLike[str], command: str | None = None, extra: dict | None = None
) -> dict[str, Any]:
    """Write the report files into ``out_dir``.

    ``report.json`` (all numbers), ``report.md``, ``report.html`` (self-contained,
    images inlined), ``predictions.csv`` (every clip's out-of-fold prediction),
    ``confusion.png``, ``tradeoff.png`` (Se-Sp curve) and ``folds.png``.

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
    curve = tradeoff_curve(result.predictions)
    report["tradeoff_curve"] = _jsonable(curve)
    plot_tradeoff(curve, (report["sensitivity"] or 0.0, report["specificity"] or 0.0), out_dir / "tradeoff.png")
    plot_folds(report, out_dir / "folds.png")
    images = {name: out_dir / f"{name}.png" for name in ("confusion", "tradeoff", "folds")}
    atomic_write_text(out_dir / "report.md", format_markdown(report))
    atomic_write_text(out_dir / "report.html", format_html(report, images))
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
                "recall": [report["per_class"][s]["recall"] for s in CLASSES],
                "fold": f"{_pct(fold.get('mean'))} ± {_pct(fold.get('std'))}",
                "repeats": f"{_pct(repeat['mean'])} ± {_pct(repeat['std'])} ({len(report['repeats'])})"
                if repeat
                else "",
                "grouped": "yes" if report.get("grouped") else "NO",
                "seconds": report.get("seconds"),
                "directory": directory,
            }
        )
    rows.sort(key=lambda r: -(r["score"] if r["score"] is not None else -1))
    header = (
        ["experiment", "Score", "Se", "Sp"]
        + [f"rec {s}" for s in CLASSES]
        + ["folds μ±σ", "repeats μ±σ", "grouped", "time s", "report"]
    )
    table = []
    for r in rows:
        table.append(
            [r["experiment"], _pct(r["score"]), _pct(r["se"]), _pct(r["sp"])]
            + [_pct(v) for v in r["recall"]]
            + [
                r["fold"],
                r["repeats"],
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


def format_html(report: dict[str, Any], images: dict[str, Path]) -> str:
    """``report.html``: one self-contained page, images inlined as data URIs."""
    import base64
    import html

    def img(name: str, alt: str) -> str:
        data = base64.b64encode(Path(images[name]).read_bytes()).decode()
        caption = html.escape(alt)
        image = f'<img alt="{caption}" src="data:image/png;base64,{data}">'
        return f"<figure>{image}<figcaption>{caption}</figcaption></figure>"

    def table(header: list[str], rows: list[list[Any]]) -> str:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    systems = [("hmmclf", report)] + [(BASELINE_TITLES.get(k, k), v) for k, v in report.get("baselines", {}).items()]
    score_rows = [
        [name, _pct(m["score"]), _pct(m["sensitivity"]), _pct(m["specificity"])]
        + [_pct(m["per_class"][s]["recall"]) for s in CLASSES]
        for name, m in systems
    ]
    class_rows = [
        [
            s,
            _pct(report["per_class"][s]["precision"]),
            _pct(report["per_class"][s]["recall"]),
            _pct(report["per_class"][s]["f1"]),
            report["per_class"][s]["support"],
        ]
        for s in CLASSES
    ]
    confusion_rows = [[s] + row for s, row in zip(CLASSES, report["confusion_matrix"])]
    fold_rows = [
        [
            f["fold"],
            f["train_size"],
            f["test_size"],
            _pct(f["metrics"]["score"]),
            _pct(f["metrics"]["sensitivity"]),
            _pct(f["metrics"]["specificity"]),
            ", ".join(f["test_groups"]),
        ]
        for f in report["folds"]
    ]
    grouping = html.escape(describe_grouping(report))
    if not report["grouped"]:
        grouping = f"<strong class='warn'>{grouping}</strong>"
    leakage_html = (
        "<h2>Leakage audit</h2>"
        + "".join(f"<p>{html.escape(line)}</p>" for line in describe_leakage(report["leakage"]).splitlines())
        if report.get("leakage")
        else ""
    )
    cfg = report["config"]
    warnings_html = "".join(f"<p class='warn'>Warning: {html.escape(w)}</p>" for w in report.get("warnings", []))
    interval = report.get("score_interval")
    interval_html = (
        f"<p>Score {int(interval['level'] * 100)}% bootstrap interval (resampling {interval['resampled']}): "
        f"{_pct(interval['low'])} – {_pct(interval['high'])}</p>"
        if interval
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>hmmclf cross-validation report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.6em 0 1.4em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child {{ text-align: left; }}
figure {{ display: inline-block; margin: 0.5em; }} img {{ max-width: 100%; }}
.warn {{ color: #b00; }} code {{ background: #f3f3f3; padding: 0 0.2em; }}
</style></head><body>
<h1>hmmclf cross-validation report</h1>
<p>Command: <code>{html.escape(str(report.get("command")))}</code></p>
<p>{cfg["folds"]}-fold stratified CV, seed {cfg["seed"]}, {report["n_clips"]} clips, {grouping}.
Wall time {report["seconds"]:.1f} s.</p>
{warnings_html}
<h2>Scores (ICBHI 2017, pooled out-of-fold)</h2>
{table(["system", "Score", "Se", "Sp"] + [f"recall {s}" for s in CLASSES], score_rows)}
<p>Se: exact-class hits over all abnormal clips; Sp: recall of normal; Score = (Se+Sp)/2.
Always answering normal scores 50.</p>
{interval_html}
{leakage_html}
{img("confusion", "Confusion matrix: counts and row-normalised rates")}
{img("tradeoff", "Sensitivity-specificity trade-off as the abnormal offset moves")}
{img("folds", "Per-fold Score, Se and Sp")}
<h2>Per class</h2>
{table(["class", "precision", "recall", "F1", "support"], class_rows)}
<h2>Confusion matrix (rows true, columns predicted)</h2>
{table(["true / predicted"] + list(CLASSES), confusion_rows)}
<h2>Folds</h2>
{table(["fold", "train", "test", "Score", "Se", "Sp", "test groups"], fold_rows)}
<h2>Configuration</h2>
<pre>{html.escape(json.dumps(cfg, indent=2))}</pre>
</body></html>
"""


def format_fit_report(fit_report: dict[str, Any]) -> str:
    """What training did, per class HMM and for the decision rule, as indented lines."""
    lines = []
    for name in CLASSES:
        rep = fit_report[name]
        lines.append(
            f"  {name:8s} {rep['clips']:5d} clips {rep['frames']:7d} frames, {rep['n_states']} states, "
            f"{rep['iterations']} EM iterations, "
            + ("converged" if rep["converged"] else "NOT converged (n_iter reached)")
        )
    decision = fit_report.get("decision")
    if decision:
        if "offsets" in decision:
            offsets = ", ".join(f"{c} {v:+.3f}" for c, v in zip(CLASSES, decision["offsets"]))
            lines.append(
                f"  decision {decision['rule']}: offsets tuned on {decision['inner_folds']} inner folds: {offsets} "
                f"(inner Score {100 * decision['inner_score']:.1f})"
            )
        elif "thresholds" in decision:
            lines.append(
                f"  decision detectors: thresholds {decision['thresholds']} "
                f"(inner Score {100 * decision['inner_score']:.1f})"
            )
        else:
            lines.append(f"  decision: {decision.get('note', decision['rule'])}")
    return "\n".join(lines)


def format_predictions(results: list[dict], fmt: str) -> str:
    """Predictions as a table, JSON or CSV."""
    if fmt == "json":
        return json.dumps(results, indent=2)
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(
            ["file", "labels", "class"]
            + [f"posterior_{s}" for s in CLASSES]
            + [f"log_likelihood_{s}" for s in CLASSES]
            + ["error"]
        )
        for r in results:
            if "error" in r:
                writer.writerow([r["file"], "", ""] + [""] * 8 + [r["error"]])
            else:
                writer.writerow(
                    [r["file"], "+".join(r["labels"]), r["class"]]
                    + [r["posterior"][s] for s in CLASSES]
                    + [r["log_likelihood"][s] for s in CLASSES]
                    + [""]
                )
        return buf.getvalue().rstrip("\n")
    width = max([len(Path(r["file"]).name) for r in results] + [4])
    lines = [f"{'file':{width}s}  {'class':8s} " + " ".join(f"{'p_' + s:>9s}" for s in CLASSES)]
    for r in results:
        name = Path(r["file"]).name
        if "error" in r:
            lines.append(f"{name:{width}s}  ERROR: {r['error']}")
        else:
            lines.append(f"{name:{width}s}  {r['class']:8s} " + " ".join(f"{r['posterior'][s]:9.3f}" for s in CLASSES))
    return "\n".join(lines)
