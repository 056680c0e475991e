"""What ``train`` and ``predict`` print: the fit report and the predictions as a table, JSON or CSV."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..model.label_hmm import WARM_START_ITERATIONS
from ..task.classes import CLASSES


def format_fit_report(fit_report: dict[str, Any]) -> str:
    """What training did, per class HMM and for the decision rule, as indented lines."""
    lines = []
    for name in CLASSES:
        rep = fit_report[name]
        available = rep.get("clips_available", rep["clips"])
        drawn = f" of {available}" if available > rep["clips"] else ""
        lines.append(
            f"  {name:8s} {rep['clips']:5d}{drawn} clips {rep['frames']:7d} frames, {rep['n_states']} states, "
            f"{rep['iterations']} EM iterations{' from an inner fold' if rep.get('warm_start') else ''}, "
            + ("converged" if rep["converged"] else "NOT converged (limit reached)")
        )
    if any(fit_report[name].get("clips_available", 0) > fit_report[name]["clips"] for name in CLASSES):
        lines.append(
            "  'N of M clips': a class with more than fit_frames frames is fitted on clips drawn at random "
            "(seeded) up to that many frames; its prior still counts all M."
        )
    limits = [
        rep.get("iteration_limit", rep["iterations"]) for rep in map(fit_report.get, CLASSES) if not rep["converged"]
    ]
    if limits:
        lines.append(
            f"  NOT converged means EM stopped at its limit of {max(limits)} iterations while the likelihood was still "
            "rising. The limit is n_iter (10 by default, since more iterations gained little on held-out data), or "
            f"at most {WARM_START_ITERATIONS} 'from an inner fold': EM then started from the HMM an inner fold had "
            "fitted on part of these clips. The fitted HMM is used as it is, and the cv Score, measured with the "
            "same limits, already reflects it."
        )
    features = fit_report.get("features")
    if features:
        inner = features.get("inner_scores") or {}
        scores = ", ".join(f"{name} {100 * v:.1f}" for name, v in inner.items())
        how = f"chosen on the inner folds (inner Score {scores})" if inner else features.get("note", "the only set")
        lines.append(f"  features {features['chosen']} ({features['columns']} columns): {how}")
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
