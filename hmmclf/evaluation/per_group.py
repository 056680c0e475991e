"""Per-patient (per-group) results: Se, Sp and Score of each group's out-of-fold predictions.

A pooled Score can hide that two patients hold a third of the clips and most
of the errors; these rows, worst first, show it.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pandas as pd

from ..utils.files import atomic_open

GROUP_COLUMNS = ("group", "clips", "normal", "abnormal", "errors", "sensitivity", "specificity", "score", "folds")


def _rate(hits: int, total: int) -> float | None:
    return hits / total if total else None


def group_rows(predictions: pd.DataFrame) -> list[dict[str, Any]]:
    """One row per group, worst first.

    Each row: ``group``, ``clips``, ``normal`` and ``abnormal`` clip counts,
    ``errors`` (clips not given exactly their class), ``sensitivity`` (None
    without abnormal clips), ``specificity`` (None without normal clips),
    ``score`` (None unless both exist: the ICBHI Score needs both) and the
    ``folds`` the group was tested in. Worst first: by Score, or by the one
    rate a group has; then most errors first. Empty when the run had no groups.
    """
    groups = predictions["group"].astype(str) if "group" in predictions else pd.Series([""] * len(predictions))
    if len(predictions) == 0 or (groups == "").all():
        return []
    true = predictions["true"].astype(str).to_numpy()
    hit = true == predictions["predicted"].astype(str).to_numpy()
    normal = true == "normal"
    folds = predictions["fold"].to_numpy() if "fold" in predictions else np.zeros(len(true), dtype=int)
    rows = []
    for name, index in groups.groupby(groups, sort=True).indices.items():
        n_normal, n_abnormal = int(normal[index].sum()), int((~normal[index]).sum())
        se = _rate(int((hit[index] & ~normal[index]).sum()), n_abnormal)
        sp = _rate(int((hit[index] & normal[index]).sum()), n_normal)
        rows.append(
            {
                "group": str(name),
                "clips": int(len(index)),
                "normal": n_normal,
                "abnormal": n_abnormal,
                "errors": int((~hit[index]).sum()),
                "sensitivity": se,
                "specificity": sp,
                "score": (se + sp) / 2 if se is not None and sp is not None else None,
                "folds": sorted({int(f) for f in folds[index]}),
            }
        )

    def badness(row: dict[str, Any]) -> tuple[float, int, str]:
        rates = [r for r in (row["sensitivity"], row["specificity"]) if r is not None]
        key = row["score"] if row["score"] is not None else sum(rates) / len(rates)
        return (key, -row["errors"], row["group"])

    return sorted(rows, key=badness)


def concentration(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How concentrated the clips and errors are: the fewest groups holding a third of the clips, with
    their share of the errors, and the share of errors in the groups with most errors."""
    if not rows:
        return None
    clips = sum(r["clips"] for r in rows)
    errors = sum(r["errors"] for r in rows)
    by_size = sorted(rows, key=lambda r: (-r["clips"], r["group"]))
    held, largest = 0, []
    for row in by_size:
        largest.append(row)
        held += row["clips"]
        if held >= clips / 3:
            break
    by_errors = sorted(rows, key=lambda r: (-r["errors"], r["group"]))
    top = by_errors[: len(largest)]
    return {
        "n_groups": len(rows),
        "largest": [r["group"] for r in largest],
        "largest_clip_share": held / clips if clips else None,
        "largest_error_share": sum(r["errors"] for r in largest) / errors if errors else None,
        "most_errors": [r["group"] for r in top],
        "most_errors_share": sum(r["errors"] for r in top) / errors if errors else None,
        "errors": errors,
        "clips": clips,
    }


COHORT_DRAWS = 2000


def cohort_spread(rows: list[dict[str, Any]], size: int, draws: int = COHORT_DRAWS, seed: int = 0) -> dict | None:
    """The Scores a new cohort of ``size`` groups can expect: 5th, 50th and 95th percentiles over
    ``draws`` cohorts drawn without replacement from these groups' out-of-fold results.

    The patient bootstrap interval of the Score is for the mean over every group; a cohort of a few
    patients varies far more, the more so when a few of them hold many clips. Cohorts without a
    normal or an abnormal clip (no Score) are left out. None with fewer than ``size`` + 1 groups.
    """
    if size < 1 or len(rows) <= size:
        return None
    normal = np.array([r["normal"] for r in rows], dtype=float)
    abnormal = np.array([r["abnormal"] for r in rows], dtype=float)
    normal_hits = np.array([round((r["specificity"] or 0.0) * r["normal"]) for r in rows], dtype=float)
    abnormal_hits = np.array([round((r["sensitivity"] or 0.0) * r["abnormal"]) for r in rows], dtype=float)
    rng = np.random.default_rng(seed)
    cohorts = np.argsort(rng.random((draws, len(rows))), axis=1)[:, :size]
    n_normal, n_abnormal = normal[cohorts].sum(axis=1), abnormal[cohorts].sum(axis=1)
    scored = (n_normal > 0) & (n_abnormal > 0)
    if not scored.any():
        return None
    specificity = normal_hits[cohorts].sum(axis=1)[scored] / n_normal[scored]
    sensitivity = abnormal_hits[cohorts].sum(axis=1)[scored] / n_abnormal[scored]
    low, median, high = np.percentile((sensitivity + specificity) / 2, [5, 50, 95])
    return {"size": int(size), "draws": int(scored.sum()), "low": low, "median": median, "high": high}


def describe_cohort(cohort: dict[str, Any] | None, unit: str = "groups") -> str:
    """One sentence from :func:`cohort_spread` ("" without one)."""
    if not cohort:
        return ""
    return (
        f"a new cohort of {cohort['size']} {unit} like these can expect a Score from {format_rate(cohort['low'])} "
        f"to {format_rate(cohort['high'])} (median {format_rate(cohort['median'])}; 5th to 95th percentile of "
        f"{cohort['draws']} cohorts drawn from the per-{unit.rstrip('s')} out-of-fold results)"
    )


def describe_concentration(summary: dict[str, Any] | None, unit: str = "groups") -> str:
    """One sentence from :func:`concentration`, e.g. "the 2 largest patients (of 68) hold 34 % of the clips
    and 61 % of the errors"."""
    if not summary:
        return ""
    n = len(summary["largest"])
    share = summary["largest_clip_share"]
    err = summary["largest_error_share"]
    text = (
        f"the {n} largest {unit} (of {summary['n_groups']}) hold {_pct(share)} % of the clips"
        + (f" and {_pct(err)} % of the errors" if err is not None else "")
        + f"; the {n} {unit} with most errors hold {_pct(summary['most_errors_share'])} % of the "
        f"{summary['errors']} errors"
    )
    return text if summary["errors"] else text.split(";")[0]


def _pct(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.0f}"


def format_rate(value: float | None) -> str:
    """A rate in percent with one decimal, or "n/a" when the group has no clip to measure it on."""
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def write_groups_csv(rows: list[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    """``groups.csv``: one row per group, worst first; rates in percent, "n/a" where a group has no clip
    to measure them on (pandas reads it as missing)."""
    table = pd.DataFrame(
        [
            {
                **{k: r[k] for k in ("group", "clips", "normal", "abnormal", "errors")},
                "sensitivity": format_rate(r["sensitivity"]),
                "specificity": format_rate(r["specificity"]),
                "score": format_rate(r["score"]),
                "folds": " ".join(str(f) for f in r["folds"]),
            }
            for r in rows
        ],
        columns=list(GROUP_COLUMNS),
    )
    with atomic_open(path, "w", newline="", encoding="utf-8") as fh:
        table.to_csv(fh, index=False)
