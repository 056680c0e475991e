"""Writing a cv report: ``report.json`` and the files rendered from it.

The JSON holds every number (:func:`report_dict`); the Markdown
(:mod:`.report_markdown`), HTML (:mod:`.report_html`) and terminal
(:mod:`.report_text`) forms are rendered from it, with the figures of
:mod:`.figures`.
"""

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
from .figures import (
    FIGURES,
    grouping_unit,
    plot_confusion,
    plot_folds,
    plot_groups,
    plot_leakage,
    plot_tradeoff,
    tradeoff_curve,
)
from .per_group import cohort_spread, concentration, group_rows, write_groups_csv
from .report_html import format_html
from .report_markdown import format_markdown
from .report_text import pct


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
        "sprsound_score": m.get("sprsound_score"),
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
            "sizes": result.group_sizes,
            "unit": result.grouping.unit,
            "description": result.grouping.describe(),
        },
        "leakage": result.leakage,
        "per_group": group_rows(result.predictions),
        "warnings": result.warnings,
        "seconds": round(result.seconds, 3),
        "config": result.config,
    }
    out["per_group_summary"] = concentration(out["per_group"])
    if out["per_group_summary"]:
        # A new cohort the size of one test fold: what a user testing the model on new patients meets.
        size = max(1, round(len(out["per_group"]) / max(1, int(result.config.get("folds", 5)))))
        out["per_group_summary"]["cohort"] = cohort_spread(out["per_group"], size, seed=int(result.config["seed"]))
    if extra:
        out.update(extra)
    return _jsonable(out)


def write_cv_report(
    result: CVResult,
    out_dir: str | os.PathLike[str],
    command: str | None = None,
    extra: dict | None = None,
    errors: int = 0,
    clip_folder: str | os.PathLike[str] | None = None,
    n_jobs: int | None = 1,
) -> dict[str, Any]:
    """Write the report files into ``out_dir``.

    ``report.json`` (all numbers), ``report.md``, ``report.html`` (self-contained,
    images inlined), ``predictions.csv`` (every clip's out-of-fold prediction),
    ``groups.csv`` (Se, Sp and Score per group), ``confusion.png``,
    ``tradeoff.png`` (Se-Sp curve), ``folds.png``, ``leakage.png`` and ``groups.png``.

    ``errors`` > 0 adds the Errors section to ``report.html``: that many of
    the most confident mistakes per confusion cell, playable, read from
    ``clip_folder`` (:mod:`.report_errors`; ``result`` must come from
    ``cross_validate(..., errors=errors)`` for their evidence).

    ``n_jobs`` processes of this machine draw the figures and the Errors
    section (never a cluster's: they write files here). The files are the
    same for any ``n_jobs``.

    ``out_dir`` must not hold an earlier report: reports are never overwritten.
    Returns the report dictionary.
    """
    from ..utils.parallel import parallel_map

    out_dir = Path(out_dir)
    if (out_dir / "report.json").exists():
        raise FileExistsError(f"{out_dir}: already holds a report; choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    report = report_dict(result, command=command, extra=extra)
    with atomic_open(out_dir / "predictions.csv", "w", newline="", encoding="utf-8") as fh:
        result.predictions.to_csv(fh, index=False)
    title = f"Score {pct(report['score'])}, Se {pct(report['sensitivity'])}%, Sp {pct(report['specificity'])}%"
    chosen = (report["sensitivity"] or 0.0, report["specificity"] or 0.0)
    # Independent drawings, the two whose results the report keeps first, then roughly the slowest
    # first: after the folds, the cores would otherwise sit idle while this process draws them one by one.
    jobs: list[tuple[Any, tuple]] = [
        (_errors_section, (result.predictions, result.evidence, report, errors, clip_folder)),
        (_tradeoff, (result.predictions, chosen, out_dir / "tradeoff.png")),
        (plot_confusion, (report["confusion_matrix"], out_dir / "confusion.png", title)),
        (plot_leakage, (report, out_dir / "leakage.png")),
        (plot_folds, (report, out_dir / "folds.png")),
    ]
    images = {name: out_dir / f"{name}.png" for name in FIGURES}
    if report["per_group"]:
        write_groups_csv(report["per_group"], out_dir / "groups.csv")
        jobs.insert(2, (plot_groups, (report["per_group"], out_dir / "groups.png", grouping_unit(report))))
        images["groups"] = out_dir / "groups.png"
    section, curve, *_ = parallel_map(_call, jobs, n_jobs=n_jobs, local=True)
    report["tradeoff_curve"] = _jsonable(curve)
    report["errors"] = _jsonable(section.info)
    atomic_write_text(out_dir / "report.md", format_markdown(report))
    atomic_write_text(out_dir / "report.html", format_html(report, images, errors_html=section.html))
    # report.json last: its presence marks a complete report.
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2))
    return report


def _call(job: tuple[Any, tuple]) -> Any:
    """Worker: one drawing job, ``(function, arguments)``."""
    function, arguments = job
    return function(*arguments)


def _tradeoff(predictions: Any, chosen: tuple[float, float], path: Path) -> dict[str, list[float]]:
    """The Se-Sp trade-off curve, drawn into ``path``; returned for ``report.json``."""
    curve = tradeoff_curve(predictions)
    plot_tradeoff(curve, chosen, path)
    return curve


def _errors_section(predictions: Any, evidence: dict, report: dict[str, Any], errors: int, clip_folder: Any) -> Any:
    """The Errors section of the page (empty with ``errors`` 0)."""
    from ..data.features import FeatureConfig
    from .report_errors import build_errors_section

    config = FeatureConfig.from_dict(report["config"]["feature_config"])
    return build_errors_section(predictions, evidence, errors, clip_folder, config, unit=grouping_unit(report))
