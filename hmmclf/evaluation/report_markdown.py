"""``report.md``: a cv report for people, in Markdown."""

from __future__ import annotations

import json
from typing import Any

from ..task.classes import CLASSES
from . import report_text as words
from .figures import FIGURES, grouping_unit, is_grouped


def format_markdown(report: dict[str, Any]) -> str:
    """``report.md``: the same facts as the JSON, for people."""
    cfg = report["config"]
    out = ["# hmmclf cross-validation report", "", "| | |", "|---|---|"]
    for name, value in words.header_rows(report):
        out.append(f"| {name} | " + (f"`{value}`" if name == "command" else value.replace("|", "\\|")) + " |")
    grouping = words.describe_grouping(report) if is_grouped(report) else f"**{words.describe_grouping(report)}**"
    out += [
        "",
        f"{cfg['folds']}-fold stratified CV, seed {cfg['seed']}, {report['n_clips']} clips, {grouping}.",
        "",
    ]
    for warning in report.get("warnings", []):
        out += [f"> **Warning:** {warning}", ""]
    if report.get("leakage"):
        out += ["## Leakage audit", "", words.describe_leakage(report["leakage"]).replace("\n", "\n\n"), ""]
    out += ["## Scores (percent; ICBHI 2017 definitions, pooled out-of-fold predictions)", ""]
    out += ["| " + " | ".join(words.SCORE_HEADER) + " |", "|---" * len(words.SCORE_HEADER) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in words.score_rows(report, model_name="**hmmclf**")]
    out += ["", "Se: exact-class hits over all abnormal clips; Sp: recall of normal; Score = (Se+Sp)/2.", ""]
    sprsound = words.describe_sprsound_score(report)
    if sprsound:
        out += [sprsound + ".", ""]
    if report.get("repeats"):
        out += [
            "Repeated CV (the tables below detail the first seed):",
            "",
            "| seed | Score | Se | Sp |",
            "|---|---|---|---|",
        ]
        out += [
            f"| {r['seed']} | {words.pct(r['score'])} | {words.pct(r['sensitivity'])} | {words.pct(r['specificity'])} |"
            for r in report["repeats"]
        ]
        out += ["| mean ± std | " + " | ".join(v for _, v in words.mean_std(report["repeat_mean_std"])) + " |", ""]
        if report.get("repeat_fold_agreement") is not None:
            out += [words.describe_fold_agreement(report["repeat_fold_agreement"]) + ".", ""]
    if report.get("score_interval"):
        text = words.describe_interval(report) + "."
        out += [f"**{text}**" if "includes 50" in text or "below 50" in text else text, ""]
    out += ["## Figures", ""]
    out += [f"![{caption}]({name}.png)\n\n*{caption}*\n" for name, caption in FIGURES.items()]
    out += ["## Per class", "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for s in CLASSES:
        c = report["per_class"][s]
        out.append(
            f"| {s} | {words.pct(c['precision'])} | {words.pct(c['recall'])} | {words.pct(c['f1'])} | {c['support']} |"
        )
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
        f"| fold | train | test | Score | Se | Sp | decision rule | features | test {grouping_unit(report)} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in report["folds"]:
        m = f["metrics"]
        groups = ", ".join(f["test_groups"][:12]) + (" …" if len(f["test_groups"]) > 12 else "")
        out.append(
            f"| {f['fold']} | {f['train_size']} | {f['test_size']} | {words.pct(m['score'])} | "
            f"{words.pct(m['sensitivity'])} | {words.pct(m['specificity'])} | {words.rule_chosen(f)} | "
            f"{words.features_chosen(f, words.configured_features(report))} | {groups} |"
        )
    out += _per_group(report) + _errors(report)
    out += ["", "## Configuration", "", "| setting | value |", "|---|---|"]
    out += [f"| {name} | {value.replace('|', '/')} |" for name, value in words.config_rows(report)]
    out += ["", "<details><summary>full configuration (JSON)</summary>", "", "```json", json.dumps(cfg, indent=2)]
    out += ["```", "", "</details>", ""]
    return "\n".join(out)


MARKDOWN_GROUP_ROWS = 30


def _per_group(report: dict[str, Any]) -> list[str]:
    """The per-group table, worst first (the first rows; all are in groups.csv)."""
    rows = words.group_table_rows(report)
    if not rows:
        return []
    unit = grouping_unit(report)
    header = [unit.rstrip("s")] + words.GROUP_HEADER
    out = ["", f"## Per {unit.rstrip('s')} (worst first)", "", words.describe_groups_results(report), ""]
    out += [f"![Score, Se and Sp per {unit.rstrip('s')}](groups.png)", ""]
    out += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    out += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows[:MARKDOWN_GROUP_ROWS]]
    if len(rows) > MARKDOWN_GROUP_ROWS:
        out += ["", f"The other {len(rows) - MARKDOWN_GROUP_ROWS} {unit} are in groups.csv."]
    return out


def _errors(report: dict[str, Any]) -> list[str]:
    """Where to listen to the mistakes."""
    info = report.get("errors") or {}
    if not info.get("per_cell"):
        return []
    return [
        "",
        "## Errors",
        "",
        f"report.html plays the {info['per_cell']} most confident mistakes of each confusion cell, with their "
        "spectrogram and the model's per-frame evidence; `hmmclf errors REPORT_DIR` lists them and "
        "`--copy DIR` copies the clips.",
    ]
