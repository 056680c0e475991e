"""The words of a cv report: the terminal summary and the sentences every format shares.

Every format (terminal, ``report.md``, ``report.html``) builds its table of
systems with :func:`score_rows` and its sentences with the ``describe_*``
functions, so the formats never disagree.
"""

from __future__ import annotations

import math
from typing import Any

from ..task.classes import CLASSES
from .figures import grouping_unit, is_grouped
from .leakage import INFERRED_GROUP_OPTIMISM, INFERRED_GROUP_PROBE_RESIDUAL, PROBE_VIEWS
from .per_group import describe_cohort, describe_concentration, format_rate

BASELINE_TITLES = {
    "always_normal": "always normal",
    "prior_random": "class-prior random",
    "gbm_clip_stats": "GBM on clip feature stats",
}


def pct(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def mean_std(stats: dict[str, dict[str, float]]) -> list[tuple[str, str]]:
    """(Score, Se, Sp) as ("Score", "79.2 ± 4.5") pairs from {metric: {mean, std}}."""
    names = (("score", "Score"), ("sensitivity", "Se"), ("specificity", "Sp"))
    return [(n, f"{pct(stats[k]['mean'])} ± {pct(stats[k]['std'])}") for k, n in names]


def score_rows(report: dict[str, Any], model_name: str = "hmmclf") -> list[list[str]]:
    """One row per system (the model, then each baseline): name, Score, Se, Sp and per-class recall, in percent."""
    systems = [(model_name, report)] + [(BASELINE_TITLES.get(k, k), v) for k, v in report.get("baselines", {}).items()]
    return [
        [name, pct(m["score"]), pct(m["sensitivity"]), pct(m["specificity"])]
        + [pct(m["per_class"][s]["recall"]) for s in CLASSES]
        for name, m in systems
    ]


SCORE_HEADER = ["system", "Score", "Se", "Sp"] + [f"recall {s}" for s in CLASSES]


def rule_chosen(fold: dict[str, Any]) -> str:
    """The decision rule a fold's model used (``auto`` names the one it chose on its inner folds), with
    the Score it reached on them when it reports one."""
    decision = (fold.get("fit_report") or {}).get("decision") or {}
    name = str(decision.get("chosen") or decision.get("rule") or "argmax")
    inner = decision.get("inner_score")
    return f"{name} (inner {pct(inner)})" if inner is not None and "chosen" not in decision else name


def features_chosen(fold: dict[str, Any], configured: str | None = None) -> str:
    """The frame columns a fold's HMMs modelled: ``features="auto"`` names the set it chose on its inner
    folds; otherwise the configured set (``configured``, when known)."""
    features = (fold.get("fit_report") or {}).get("features") or {}
    if not features:
        return configured or "as configured"
    inner = features.get("inner_scores") or {}
    scores = " (inner " + ", ".join(f"{k} {pct(v)}" for k, v in inner.items()) + ")" if inner else ""
    return f"{features['chosen']}{scores}"


def configured_features(report: dict[str, Any]) -> str | None:
    """The ``features`` setting a report's model was configured with, if recorded."""
    return ((report.get("config") or {}).get("model_params") or {}).get("features")


def describe_fold_agreement(agreement: float) -> str:
    """One sentence on how alike the repeats' folds were (the largest adjusted Rand index of two)."""
    return (
        f"The repeats' folds agree at most at an adjusted Rand index of {agreement:.2f} "
        "(1: the same folds, 0: no more alike than chance)"
    )


def describe_sprsound_score(report: dict[str, Any]) -> str | None:
    """The SPRSound challenge score in one sentence, or None for a report without it."""
    value = report.get("sprsound_score")
    if value is None:
        return None
    return (
        f"SPRSound challenge score (AS + HS) / 2 = {pct(value)} (AS = (Se + Sp) / 2, HS = 2 Se Sp / (Se + Sp); "
        "always normal scores 25.0 on it)"
    )


def format_summary(report: dict[str, Any]) -> str:
    """Compact terminal table: Score/Se/Sp of the model and the baselines, per-class recall, confusion."""
    lines = [f"{'':24s} {'Score':>6s} {'Se':>6s} {'Sp':>6s}   " + " ".join(f"{s:>7s}" for s in CLASSES)]
    for name, score, se, sp, *recalls in score_rows(report):
        lines.append(f"{name:24s} {score:>6s} {se:>6s} {sp:>6s}   " + " ".join(f"{r:>7s}" for r in recalls))
    lines.append("(percent; the last four columns are per-class recall)")
    sprsound = describe_sprsound_score(report)
    if sprsound:
        lines.append(sprsound)
    if "fold_mean_std" in report:
        lines.append("over folds: " + ", ".join(f"{n} {v}" for n, v in mean_std(report["fold_mean_std"])))
    if report.get("repeat_mean_std"):
        seeds = ", ".join(str(r["seed"]) for r in report["repeats"])
        spread = ", ".join(f"{n} {v}" for n, v in mean_std(report["repeat_mean_std"]))
        lines.append(f"over {len(report['repeats'])} repeats (seeds {seeds}): {spread}")
        if report.get("repeat_fold_agreement") is not None:
            lines.append(describe_fold_agreement(report["repeat_fold_agreement"]))
        if report.get("baseline_repeat_mean_std"):
            lines.append(
                "baselines over the same repeats: "
                + ", ".join(
                    f"{BASELINE_TITLES.get(name, name)} Score {pct(v['mean'])} ± {pct(v['std'])}"
                    for name, v in report["baseline_repeat_mean_std"].items()
                )
            )
    if report.get("score_interval"):
        lines.append(describe_interval(report))
    lines.append(describe_grouping(report))
    if report.get("per_group_summary"):
        lines.append(describe_groups_results(report) + " Every group in groups.csv.")
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
    # One wording everywhere: "bootstrap over patients (or groups)", or clips when the folds had no groups.
    over = grouping_unit(report) if ci.get("resampled") == "groups" else "clips"
    text = (
        f"Score {int(round(ci['level'] * 100))}% interval, bootstrap over {over}: {pct(ci['low'])} to {pct(ci['high'])}"
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
    """The leakage audit in a few sentences, one a line: the verdict, every probe, and what may remain."""
    if "views" not in leakage:  # a report of hmmclf 0.3: one probe
        text = (
            f"leakage audit ({leakage['probe']}): Score {leakage['score_folds_used']:.1f} under these folds, "
            f"{leakage['score_plain_folds']:.1f} under plain stratified folds; gap {leakage['gap']:+.1f} points"
        )
        return text + (f"\n{leakage['warning']}" if leakage.get("warning") else "")
    used, plain = leakage["score_folds_used"], leakage["score_plain_folds"]
    lines = [
        f"leakage audit: a memorising 1-nearest-neighbour probe, reading the {PROBE_VIEWS[leakage['worst']]} "
        "(of the views that keep the recording channel, the one that recognises recordings best), scores "
        f"{used:.1f} under these folds and {plain:.1f} under plain stratified folds"
        + (
            f": the grouping removes {plain - used:.1f} points of the optimism plain folds would give."
            if leakage["grouped"] and plain > used
            else "."
        ),
        "probes (Score under these folds / plain folds): "
        + "; ".join(
            f"{PROBE_VIEWS[name]} {view['score_folds_used']:.1f} / {view['score_plain_folds']:.1f}"
            for name, view in leakage["views"].items()
        ),
    ]
    if leakage.get("inferred_groups"):
        zoned = bool(leakage.get("folds_have_dead_zone"))
        low, high = INFERRED_GROUP_OPTIMISM["dead zone" if zoned else "no dead zone"]
        gain = leakage.get("dead_zone_gain")
        if zoned:
            zone = (
                " Each training part leaves out the clips that sound like its test part's recordings "
                f"(a dead zone), which took {gain:.1f} points from the probe."
            )
        elif gain is not None:
            zone = (
                " Leaving out of each training part the clips that sound like its test part's recordings "
                f"(--dead-zone on) would take {gain:.1f} more points from the probe."
            )
        else:
            zone = ""
        probe_low, probe_high = INFERRED_GROUP_PROBE_RESIDUAL["dead zone" if zoned else "no dead zone"]
        lines.append(
            "The groups were inferred from the audio, so one patient's recordings may still sit on both sides "
            f"of a split.{zone} On two public databases with known patients, the memorising probe under such "
            f"folds scored {probe_low:.1f} to {probe_high:.1f} points above its Score under patient folds, "
            "and the Score with such groups "
            f"{'and this dead zone ' if zoned else ''}lay {low:+.1f} to {high:+.1f} points from the "
            f"patient-grouped Score: read this Score as up to {high:.0f} points optimistic"
            + (f" or {-low:.0f} pessimistic" if low <= -0.5 else "")
            + ", and give a patient column when you have one."
        )
    if leakage.get("warning"):
        lines.append(leakage["warning"])
    return "\n".join(lines)


GROUP_HEADER = [
    "clips",
    "% of clips",
    "normal",
    "abnormal",
    "errors",
    "% of errors",
    "Se",
    "Sp",
    "Score",
    "tested in fold",
]


def group_table_rows(report: dict[str, Any]) -> list[list[str]]:
    """The per-group table, worst first: group, clips and shares, Se, Sp and Score ("n/a" when a group has
    no clip to measure a rate on), the folds it was tested in."""
    rows = report.get("per_group") or []
    clips = sum(r["clips"] for r in rows) or 1
    errors = sum(r["errors"] for r in rows) or 1
    return [
        [
            str(r["group"]),
            str(r["clips"]),
            f"{100 * r['clips'] / clips:.1f}",
            str(r["normal"]),
            str(r["abnormal"]),
            str(r["errors"]),
            f"{100 * r['errors'] / errors:.1f}",
            format_rate(r["sensitivity"]),
            format_rate(r["specificity"]),
            format_rate(r["score"]),
            " ".join(str(f) for f in r["folds"]),
        ]
        for r in rows
    ]


def describe_groups_results(report: dict[str, Any]) -> str:
    """How the clips and errors spread over the groups, and what a new cohort can expect ("" without groups)."""
    summary, unit = report.get("per_group_summary") or {}, grouping_unit(report)
    parts = [describe_concentration(summary, unit), describe_cohort(summary.get("cohort"), unit)]
    return " ".join(p[0].upper() + p[1:] + "." for p in parts if p)
