"""``report.html``: a cv report as one self-contained page (figures inlined as data URIs)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from ..task.classes import CLASSES
from .figures import FIGURES, grouping_unit, is_grouped
from .report_errors import STYLE as ERRORS_STYLE
from .report_text import (
    GROUP_HEADER,
    SCORE_HEADER,
    config_rows,
    configured_features,
    describe_fold_agreement,
    describe_grouping,
    describe_groups_results,
    describe_interval,
    describe_leakage,
    describe_sprsound_score,
    features_chosen,
    group_table_rows,
    header_rows,
    mean_std,
    pct,
    rule_chosen,
    score_rows,
)

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child { text-align: left; }
table.facts th { text-align: left; white-space: nowrap; } table.facts td { text-align: left; }
figure { display: inline-block; margin: 0.5em; } img { max-width: 100%; }
.warn { color: #b00; } code { background: #f3f3f3; padding: 0 0.2em; }
"""
GROUP_ROWS_OPEN = 30
"""Groups listed in the open per-group table; the others are in a closed <details> under it."""


def html_table(header: list[str], rows: list[list[Any]]) -> str:
    """An HTML table of escaped cells."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def png_figure(path: str | Path, caption: str) -> str:
    """A PNG inlined as a data URI, with its caption."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    caption = html.escape(caption)
    return (
        f'<figure><img alt="{caption}" src="data:image/png;base64,{data}"><figcaption>{caption}</figcaption></figure>'
    )


def facts_table(rows: list[tuple[str, str]], code: tuple[str, ...] = ()) -> str:
    """Two-column table of named facts; the values named in ``code`` set as code."""
    cells = "".join(
        f"<tr><th>{html.escape(k)}</th><td>"
        + (f"<code>{html.escape(v)}</code>" if k in code else html.escape(v))
        + "</td></tr>"
        for k, v in rows
    )
    return f'<table class="facts">{cells}</table>'


def _opening(report: dict[str, Any]) -> str:
    """The run's facts, its folds and grouping, and its warnings."""
    cfg = report["config"]
    grouping = html.escape(describe_grouping(report))
    if not is_grouped(report):
        grouping = f"<strong class='warn'>{grouping}</strong>"
    warnings = "".join(f"<p class='warn'>Warning: {html.escape(w)}</p>" for w in report.get("warnings", []))
    return (
        facts_table(header_rows(report), code=("command",))
        + f"<p>{cfg['folds']}-fold stratified CV, seed {cfg['seed']}, {report['n_clips']} clips, {grouping}.</p>"
        + warnings
    )


def _scores(report: dict[str, Any]) -> str:
    """The systems' Scores, the interval and the leakage audit."""
    interval = ""
    if report.get("score_interval"):
        text = html.escape(describe_interval(report))
        flagged = "includes 50" in text or "below 50" in text
        interval = f"<p class='warn'><strong>{text}.</strong></p>" if flagged else f"<p>{text}.</p>"
    leakage = ""
    if report.get("leakage"):
        lines = describe_leakage(report["leakage"]).splitlines()
        leakage = "<h2>Leakage audit</h2>" + "".join(f"<p>{html.escape(line)}</p>" for line in lines)
    sprsound = describe_sprsound_score(report)
    return (
        "<h2>Scores (percent; ICBHI 2017, pooled out-of-fold)</h2>"
        + html_table(SCORE_HEADER, score_rows(report))
        + "<p>Se: exact-class hits over all abnormal clips; Sp: recall of normal; Score = (Se+Sp)/2.\n"
        + "Always answering normal scores 50.</p>"
        + (f"<p>{html.escape(sprsound)}.</p>" if sprsound else "")
        + _repeats(report)
        + interval
        + leakage
    )


def _repeats(report: dict[str, Any]) -> str:
    """Each repeat's Score, Se and Sp, their mean and spread, and how alike the repeats' folds were."""
    if not report.get("repeats"):
        return ""
    rows = [[r["seed"], pct(r["score"]), pct(r["sensitivity"]), pct(r["specificity"])] for r in report["repeats"]]
    rows.append(["mean ± std", *(v for _, v in mean_std(report["repeat_mean_std"]))])
    agreement = report.get("repeat_fold_agreement")
    sentence = describe_fold_agreement(agreement) if agreement is not None else ""
    return (
        "<h3>Repeated CV (the tables below detail the first seed)</h3>"
        + html_table(["seed", "Score", "Se", "Sp"], rows)
        + (f"<p>{html.escape(sentence)}.</p>" if sentence else "")
    )


def _details(report: dict[str, Any]) -> str:
    """Per-class metrics, the confusion matrix, the folds and the configuration."""
    per_class = report["per_class"]
    class_rows = [
        [
            s,
            pct(per_class[s]["precision"]),
            pct(per_class[s]["recall"]),
            pct(per_class[s]["f1"]),
            per_class[s]["support"],
        ]
        for s in CLASSES
    ]
    fold_rows = [
        [f["fold"], f["train_size"], f["test_size"]]
        + [pct(f["metrics"][k]) for k in ("score", "sensitivity", "specificity")]
        + [rule_chosen(f), features_chosen(f, configured_features(report)), ", ".join(f["test_groups"])]
        for f in report["folds"]
    ]
    confusion_rows = [[s] + row for s, row in zip(CLASSES, report["confusion_matrix"])]
    fold_header = [
        "fold",
        "train",
        "test",
        "Score",
        "Se",
        "Sp",
        "decision rule",
        "features",
        f"test {grouping_unit(report)}",
    ]
    config_json = html.escape(json.dumps(report["config"], indent=2))
    return (
        "<h2>Per class</h2>"
        + html_table(["class", "precision", "recall", "F1", "support"], class_rows)
        + "<h2>Confusion matrix (rows true, columns predicted)</h2>"
        + html_table(["true / predicted"] + list(CLASSES), confusion_rows)
        + "<h2>Folds</h2>"
        + html_table(fold_header, fold_rows)
        + "<h2>Configuration</h2>"
        + facts_table(config_rows(report))
        + f"<details><summary>full configuration (JSON)</summary><pre>{config_json}</pre></details>"
    )


def _per_group(report: dict[str, Any], images: dict[str, Path]) -> str:
    """Se, Sp and Score per group, worst first: the table and the figure ("" without groups)."""
    rows = group_table_rows(report)
    if not rows:
        return ""
    unit = grouping_unit(report)
    header = [unit.rstrip("s")] + GROUP_HEADER
    table = html_table(header, rows[:GROUP_ROWS_OPEN])
    if len(rows) > GROUP_ROWS_OPEN:
        rest = html_table(header, rows[GROUP_ROWS_OPEN:])
        table += f"<details><summary>the other {len(rows) - GROUP_ROWS_OPEN} {unit}</summary>{rest}</details>"
    figure = (
        png_figure(images["groups"], f"Score, Se and Sp per {unit.rstrip('s')}, worst first")
        if "groups" in images
        else ""
    )
    return (
        f"<section id='groups'><h2>Per {unit.rstrip('s')} (worst first; also in groups.csv)</h2>"
        f"<p>{html.escape(describe_groups_results(report))} Se is n/a for a {unit.rstrip('s')} without abnormal "
        "clips, Sp without normal ones, and then the Score too (it needs both); such a row is ranked by the "
        "rate it has.</p>" + figure + table + "</section>"
    )


def format_html(report: dict[str, Any], images: dict[str, Path], errors_html: str = "") -> str:
    """``report.html``: one self-contained page, images inlined as data URIs.

    ``errors_html`` is the Errors section (:mod:`.report_errors`), placed after the per-group results.
    """
    figures = "".join(png_figure(images[name], caption) for name, caption in FIGURES.items() if name in images)
    style = STYLE + (ERRORS_STYLE if errors_html else "")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>hmmclf cross-validation report</title>\n'
        f"<style>{style}</style></head><body>\n<h1>hmmclf cross-validation report</h1>\n"
        + "\n".join(
            [_opening(report), _scores(report), figures, _per_group(report, images), errors_html, _details(report)]
        )
        + "\n</body></html>\n"
    )
