"""Reporting: cross-validation results as JSON, Markdown, CSV, a PNG and a terminal table."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..task.classes import CLASSES
from ..utils.files import atomic_open, atomic_write_text
from .cv import CVResult
from .figures import grouping_unit, is_grouped, plot_confusion, plot_folds, plot_tradeoff, tradeoff_curve

FIGURES = {
    "confusion": "Confusion matrix: counts and percent of each true class",
    "tradeoff": "Sensitivity-specificity trade-off as the abnormal offset moves",
    "folds": "Per-fold Score, Se and Sp",
}
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


def _mean_std(stats: dict[str, dict[str, float]]) -> list[tuple[str, str]]:
    """(Score, Se, Sp) as ("Score", "79.2 ± 4.5") pairs from {metric: {mean, std}}."""
    names = (("score", "Score"), ("sensitivity", "Se"), ("specificity", "Sp"))
    return [(n, f"{_pct(stats[k]['mean'])} ± {_pct(stats[k]['std'])}") for k, n in names]


def report_dict(result: CVResult, command: str | None = None, extra: dict | None = None) -> dict[str, Any]:
    """The content of ``report.json``."""
    m = result.metrics
    fold_stats = {
        key: dict(zip(("mean", "std"), result.fold_summary(key))) for key in ("score", "sensitivity", "specificity")
    }
    from datetime import datetime

    out = {
        "hmmclf_version": __version__,
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
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
        "folds": [fold.to_dict() for fold in result.folds],
        "baseline": result.baselines.get("always_normal"),
        "baselines": result.baselines,
        "groups": {
            **result.grouping.to_dict(),
            "n_groups": result.n_groups,
            "unit": result.grouping.unit,
            "description": result.grouping.describe(),
        },
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
        lines.append("over folds: " + ", ".join(f"{n} {v}" for n, v in _mean_std(report["fold_mean_std"])))
    if report.get("repeat_mean_std"):
        seeds = ", ".join(str(r["seed"]) for r in report["repeats"])
        mean_std = ", ".join(f"{n} {v}" for n, v in _mean_std(report["repeat_mean_std"]))
        lines.append(f"over {len(report['repeats'])} repeats (seeds {seeds}): {mean_std}")
        if report.get("baseline_repeat_mean_std"):
            lines.append(
                "baselines over the same repeats: "
                + ", ".join(
                    f"{BASELINE_TITLES.get(name, name)} Score {_pct(v['mean'])} ± {_pct(v['std'])}"
                    for name, v in report["baseline_repeat_mean_std"].items()
                )
            )
    if report.get("score_interval"):
        lines.append(describe_interval(report))
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
    if not is_grouped(report):
        return "folds: NOT grouped (no patient, recording or inferred groups): scores are optimistic"
    unit = grouping_unit(report)
    return f"folds: {info.get('n_groups', '?')} {unit}, from {info.get('description', info.get('note'))}"


def describe_interval(report: dict[str, Any]) -> str:
    """The Score's bootstrap interval, and plainly whether it is distinguishable from always answering normal."""
    ci = report["score_interval"]
    text = (
        f"Score {int(round(ci['level'] * 100))}% bootstrap interval (resampling {ci['resampled']}): "
        f"{_pct(ci['low'])} to {_pct(ci['high'])}"
    )
    if ci["low"] is None or ci["high"] is None:
        return text
    if ci["low"] <= 0.5 <= ci["high"]:
        return text + "; the interval includes 50: this result is not distinguishable from always answering normal"
    if ci["high"] < 0.5:
        return text + "; the whole interval is below 50: this result is worse than always answering normal"
    return text + "; the whole interval is above 50, the Score of always answering normal"


def _data_text(report: dict[str, Any]) -> str:
    """Where the clips came from, as far as the report knows."""
    data = report.get("data")
    if isinstance(data, dict):
        parts = [f"{k.replace('_', ' ')} {v}" for k, v in data.items() if v not in (None, "")]
    elif data:
        parts = [str(data)]
    else:
        parts = [f"{k.replace('_', ' ')} {report[k]}" for k in ("data_dir", "labels", "features") if report.get(k)]
    return ", ".join(parts) or "not recorded in this report (see the command)"


def header_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The facts a report opens with: version, date, command, data, clips, wall time."""
    cfg = report.get("config") or {}
    counts = cfg.get("counts") or {}
    clips = f"{report['n_clips']}" + (f" ({', '.join(f'{k} {v}' for k, v in counts.items())})" if counts else "")
    return [
        ("hmmclf version", str(report.get("hmmclf_version", "?"))),
        ("run finished", str(report.get("created") or "date not recorded").replace("T", " ")),
        ("experiment", str((report.get("experiment") or {}).get("name", "default"))),
        ("command", str(report.get("command") or "(not recorded)")),
        ("data", _data_text(report)),
        ("clips", clips),
        ("wall time", f"{report['seconds']:.1f} s"),
    ]


def config_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The configuration as readable rows: folds, seeds, groups, features, model."""
    cfg = report.get("config") or {}
    fc = cfg.get("feature_config") or {}
    params = dict(cfg.get("model_params") or {})
    repeats = report.get("repeats") or []
    rows = [
        ("folds", f"{cfg.get('folds', '?')}-fold stratified cross-validation"),
        ("seed", str(cfg.get("seed", "?"))),
        ("repeats", f"{len(repeats)} (seeds {', '.join(str(r['seed']) for r in repeats)})" if repeats else "1"),
        ("groups", describe_grouping(report).removeprefix("folds: ")),
    ]
    if fc:
        sr = fc.get("sample_rate", 0) or 1
        extra = ", ".join(fc.get("extra") or []) or "none"
        rows += [
            ("feature band", f"{fc.get('fmin', 0):.0f}–{fc.get('fmax', 0):.0f} Hz (clips resampled to {sr} Hz)"),
            (
                "features",
                f"{fc.get('n_mfcc')} MFCC from {fc.get('n_mels')} mel bands, deltas {fc.get('deltas')}, "
                f"frames {1000 * fc.get('frame_length', 0) / sr:.0f} ms every {1000 * fc.get('hop_length', 0) / sr:.0f}"
                f" ms, cepstral mean normalisation {'on' if fc.get('cepstral_mean_norm') else 'off'}, extra {extra}",
            ),
        ]
    if params:
        p = params.get
        model = f"{cfg.get('model', 'model')}: {p('n_states')} hidden states per class HMM, {p('topology')}, "
        model += f"decision rule {p('decision')}, class prior {p('class_prior')}, up to {p('n_iter')} EM iterations"
        main = ("n_states", "topology", "decision", "class_prior", "n_iter", "n_jobs")
        rest = ", ".join(f"{k} {v}" for k, v in params.items() if k not in main)
        rows += [("model", model), ("other model parameters", rest)]
    return rows


def describe_leakage(leakage: dict[str, Any]) -> str:
    """The leakage audit in one or two sentences."""
    text = (
        f"leakage audit ({leakage['probe']}): Score {leakage['score_folds_used']:.1f} under these folds, "
        f"{leakage['score_plain_folds']:.1f} under plain stratified folds; gap {leakage['gap']:+.1f} points"
    )
    if leakage["grouped"]:
        text += (
            " (the optimism these folds remove)"
            if leakage["gap"] > 0
            else " (plain folds give a memoriser no advantage on these data)"
        )
    return text + (f"\n{leakage['warning']}" if leakage.get("warning") else "")


def format_markdown(report: dict[str, Any]) -> str:
    """``report.md``: the same facts as the JSON, for people."""
    cfg = report["config"]
    out = ["# hmmclf cross-validation report", "", "| | |", "|---|---|"]
    for name, value in header_rows(report):
        out.append(f"| {name} | " + (f"`{value}`" if name == "command" else value.replace("|", "\\|")) + " |")
    grouping = describe_grouping(report) if is_grouped(report) else f"**{describe_grouping(report)}**"
    out += [
        "",
        f"{cfg['folds']}-fold stratified CV, seed {cfg['seed']}, {report['n_clips']} clips, {grouping}.",
        "",
    ]
    for warning in report.get("warnings", []):
        out += [f"> **Warning:** {warning}", ""]
    if report.get("leakage"):
        out += ["## Leakage audit", "", describe_leakage(report["leakage"]).replace("\n", "\n\n"), ""]
    out += ["## Scores (percent; ICBHI 2017 definitions, pooled out-of-fold predictions)", ""]
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
        out += ["| mean ± std | " + " | ".join(v for _, v in _mean_std(report["repeat_mean_std"])) + " |", ""]
    if report.get("score_interval"):
        text = describe_interval(report) + "."
        out += [f"**{text}**" if "includes 50" in text or "below 50" in text else text, ""]
    out += ["## Figures", ""]
    out += [f"![{caption}]({name}.png)\n\n*{caption}*\n" for name, caption in FIGURES.items()]
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
        f"| fold | train | test | Score | Se | Sp | test {grouping_unit(report)} |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in report["folds"]:
        m = f["metrics"]
        groups = ", ".join(f["test_groups"][:12]) + (" …" if len(f["test_groups"]) > 12 else "")
        out.append(
            f"| {f['fold']} | {f['train_size']} | {f['test_size']} | {_pct(m['score'])} | "
            f"{_pct(m['sensitivity'])} | {_pct(m['specificity'])} | {groups} |"
        )
    out += ["", "## Configuration", "", "| setting | value |", "|---|---|"]
    out += [f"| {name} | {value.replace('|', '/')} |" for name, value in config_rows(report)]
    out += ["", "<details><summary>full configuration (JSON)</summary>", "", "```json", json.dumps(cfg, indent=2)]
    out += ["```", "", "</details>", ""]
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
        title=f"Score {_pct(report['score'])}, Se {_pct(report['sensitivity'])}%, Sp {_pct(report['specificity'])}%",
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
    from ..utils.errors import HmmclfError

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
    from ..utils.errors import HmmclfError

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
                "fold": f"{_pct(fold.get('mean'))} ± {_pct(fold.get('std'))}",
                "repeats": f"{_pct(repeat['mean'])} ± {_pct(repeat['std'])} ({len(report['repeats'])})"
                if repeat
                else "",
                "grouped": "yes" if is_grouped(report) else "NO",
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
    if not is_grouped(report):
        grouping = f"<strong class='warn'>{grouping}</strong>"
    leakage_html = (
        "<h2>Leakage audit</h2>"
        + "".join(f"<p>{html.escape(line)}</p>" for line in describe_leakage(report["leakage"]).splitlines())
        if report.get("leakage")
        else ""
    )
    cfg = report["config"]
    warnings_html = "".join(f"<p class='warn'>Warning: {html.escape(w)}</p>" for w in report.get("warnings", []))
    interval_html = ""
    if report.get("score_interval"):
        text = html.escape(describe_interval(report))
        flagged = "includes 50" in text or "below 50" in text
        interval_html = f"<p class='warn'><strong>{text}.</strong></p>" if flagged else f"<p>{text}.</p>"
    facts = "".join(
        f"<tr><th>{html.escape(k)}</th><td>" + (f"<code>{html.escape(v)}</code>" if k == "command" else html.escape(v))
        for k, v in header_rows(report)
    )
    settings = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in config_rows(report))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>hmmclf cross-validation report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.6em 0 1.4em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child {{ text-align: left; }}
table.facts th {{ text-align: left; white-space: nowrap; }} table.facts td {{ text-align: left; }}
figure {{ display: inline-block; margin: 0.5em; }} img {{ max-width: 100%; }}
.warn {{ color: #b00; }} code {{ background: #f3f3f3; padding: 0 0.2em; }}
</style></head><body>
<h1>hmmclf cross-validation report</h1>
<table class="facts">{facts}</table>
<p>{cfg["folds"]}-fold stratified CV, seed {cfg["seed"]}, {report["n_clips"]} clips, {grouping}.</p>
{warnings_html}
<h2>Scores (percent; ICBHI 2017, pooled out-of-fold)</h2>
{table(["system", "Score", "Se", "Sp"] + [f"recall {s}" for s in CLASSES], score_rows)}
<p>Se: exact-class hits over all abnormal clips; Sp: recall of normal; Score = (Se+Sp)/2.
Always answering normal scores 50.</p>
{interval_html}
{leakage_html}
{"".join(img(name, caption) for name, caption in FIGURES.items())}
<h2>Per class</h2>
{table(["class", "precision", "recall", "F1", "support"], class_rows)}
<h2>Confusion matrix (rows true, columns predicted)</h2>
{table(["true / predicted"] + list(CLASSES), confusion_rows)}
<h2>Folds</h2>
{table(["fold", "train", "test", "Score", "Se", "Sp", f"test {grouping_unit(report)}"], fold_rows)}
<h2>Configuration</h2>
<table class="facts">{settings}</table>
<details><summary>full configuration (JSON)</summary><pre>{html.escape(json.dumps(cfg, indent=2))}</pre></details>
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
    stopped = [fit_report[name]["iterations"] for name in CLASSES if not fit_report[name]["converged"]]
    if stopped:
        lines.append(
            f"  NOT converged means EM stopped at its limit of n_iter = {max(stopped)} iterations (10 by default, "
            "since more iterations gained little on held-out data) while the likelihood was still rising; "
            "the fitted HMM is used as it is, and the cv Score, measured with the same limit, already reflects it."
        )
    decision = fit_report.get("decision")
    if decision:
        rule = decision["rule"] + (f" (chose {decision['chosen']})" if "chosen" in decision else "")
        inner = f" (inner Score {100 * decision['inner_score']:.1f})" if "inner_score" in decision else ""
        if "offsets" in decision:
            offsets = ", ".join(f"{c} {v:+.3f}" for c, v in zip(CLASSES, decision["offsets"]))
            length = f", clip-length weight {decision['length_weight']}" if "length_weight" in decision else ""
            lines.append(
                f"  decision {rule}: offsets tuned on {decision['inner_folds']} inner folds: {offsets}{length}{inner}"
            )
        elif "thresholds" in decision:
            lines.append(f"  decision {rule}: crackle and wheeze thresholds {decision['thresholds']}{inner}")
        else:
            lines.append(f"  decision {rule}: {decision.get('note', '')}".rstrip(": "))
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
