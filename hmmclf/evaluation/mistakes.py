"""The clips a cv run gets wrong: which ones to listen to, and ``hmmclf errors``.

One selection serves the report page and the command line, so both show the
same clips: for every off-diagonal cell of the confusion matrix, its ``top``
most confident mistakes (highest posterior of the predicted class, as
rounded in ``predictions.csv``; ties in table order), then for each class its
few most confident correct clips, for comparison.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..task.classes import CLASSES
from ..utils.errors import HmmclfError

DEFAULT_ERRORS = 5
"""Mistakes shown per off-diagonal cell of the confusion matrix (``hmmclf cv --errors``)."""
CORRECT_PER_CLASS = 2
"""Correct clips shown per class beside the mistakes, for comparison."""
POSTERIOR_DECIMALS = 6
"""The rounding of the posteriors in ``predictions.csv``: the selection ranks the rounded values, so the
report page (computed in memory) and ``hmmclf errors`` (reading the CSV) pick the same clips."""


def n_correct_for(top: int) -> int:
    """Correct clips per class shown beside ``top`` mistakes per cell (none when the section is off)."""
    return min(CORRECT_PER_CLASS, top)


def confidence(posterior: np.ndarray, predicted: Sequence[str]) -> np.ndarray:
    """Each clip's posterior of its predicted class, rounded as in ``predictions.csv``."""
    index = {c: i for i, c in enumerate(CLASSES)}
    column = np.array([index[c] for c in np.asarray(predicted, dtype=str).tolist()], dtype=np.int64)
    picked = np.asarray(posterior, dtype=float)[np.arange(len(column)), column]
    return np.round(picked, POSTERIOR_DECIMALS)


def select_clips(
    true: Sequence[str], predicted: Sequence[str], conf: np.ndarray, top: int, n_correct: int | None = None
) -> list[tuple[int, str]]:
    """The clips to listen to, as (row, kind) with kind ``"mistake"`` or ``"correct"``.

    Parameters
    ----------
    true, predicted : sequence of str
        Classes per row.
    conf : array
        Posterior of the predicted class per row (:func:`confidence`).
    top : int
        Mistakes per off-diagonal cell; 0 selects nothing.
    n_correct : int, optional
        Correct clips per class (default :func:`n_correct_for`).

    Returns
    -------
    list of (int, str)
        Rows in display order: cells by true then predicted class (order of
        :data:`~hmmclf.task.classes.CLASSES`), most confident first, then the
        correct clips class by class.
    """
    if top <= 0:
        return []
    n_correct = n_correct_for(top) if n_correct is None else n_correct
    true, predicted = np.asarray(true, dtype=str), np.asarray(predicted, dtype=str)
    # Most confident first; a stable sort keeps equal posteriors in row order.
    order = np.argsort(-np.asarray(conf, dtype=float), kind="stable")
    chosen: list[tuple[int, str]] = []
    for t in CLASSES:
        for p in CLASSES:
            if t != p:
                rows = order[(true[order] == t) & (predicted[order] == p)][:top]
                chosen += [(int(r), "mistake") for r in rows]
    for c in CLASSES:
        rows = order[(true[order] == c) & (predicted[order] == c)][:n_correct]
        chosen += [(int(r), "correct") for r in rows]
    return chosen


def table_confidence(predictions: pd.DataFrame) -> np.ndarray:
    """:func:`confidence` of every row of a prediction table (``predictions.csv``)."""
    posterior = predictions[[f"posterior_{c}" for c in CLASSES]].to_numpy(float)
    return confidence(posterior, predictions["predicted"].astype(str).to_numpy())


def selected_rows(predictions: pd.DataFrame, top: int, n_correct: int | None = None) -> pd.DataFrame:
    """The selected clips of a prediction table, with columns ``row``, ``kind`` and ``posterior``
    (of the predicted class) added, in display order."""
    conf = table_confidence(predictions)
    chosen = select_clips(predictions["true"].astype(str), predictions["predicted"].astype(str), conf, top, n_correct)
    rows = [r for r, _ in chosen]
    out = predictions.iloc[rows].copy()
    out.insert(0, "row", rows)
    out.insert(1, "kind", [k for _, k in chosen])
    out["posterior"] = conf[rows]
    return out.reset_index(drop=True)


def load_report_folder(folder: str | os.PathLike[str]) -> tuple[dict[str, Any], pd.DataFrame]:
    """``report.json`` and ``predictions.csv`` of a cv report folder.

    Raises
    ------
    HmmclfError
        One line when the folder is missing or is not an hmmclf cv report.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise HmmclfError(f"{folder}: no such report folder")
    try:
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        report["confusion_matrix"]  # noqa: B018 - a key every cv report has
    except FileNotFoundError:
        raise HmmclfError(f"{folder}: not an hmmclf cv report folder (no report.json)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HmmclfError(f"{folder}/report.json: not an hmmclf cv report ({type(exc).__name__})") from None
    wanted = {"file", "true", "predicted", *(f"posterior_{c}" for c in CLASSES)}
    try:
        predictions = pd.read_csv(folder / "predictions.csv", dtype={"file": str, "group": str}, keep_default_na=False)
    except FileNotFoundError:
        raise HmmclfError(f"{folder}: not an hmmclf cv report folder (no predictions.csv)") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise HmmclfError(f"{folder}/predictions.csv: unreadable ({type(exc).__name__})") from None
    missing = wanted - set(predictions.columns)
    if missing:
        raise HmmclfError(f"{folder}/predictions.csv: not an hmmclf prediction table (no {', '.join(sorted(missing))})")
    return report, predictions


def list_mistakes(
    folder: str | os.PathLike[str], true_class: str | None = None, top: int | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The mistakes of a cv report: per off-diagonal cell the ``top`` most confident.

    ``top`` defaults to the number the report page shows (``--errors`` of its
    cv run, else :data:`DEFAULT_ERRORS`), so the defaults list the page's
    mistakes. ``true_class`` keeps the cells of that true class.

    Returns
    -------
    mistakes : pandas.DataFrame
        Columns ``file``, ``true``, ``predicted``, ``posterior``, ``group``, ``fold``.
    report : dict
        The report's ``report.json``.
    """
    if true_class is not None and true_class not in CLASSES:
        raise HmmclfError(f"--class {true_class!r}: not a class (use one of {', '.join(CLASSES)})")
    report, predictions = load_report_folder(folder)
    if top is None:
        top = int((report.get("errors") or {}).get("per_cell") or DEFAULT_ERRORS)
    chosen = selected_rows(predictions, max(top, 0), n_correct=0)
    chosen = chosen[chosen["kind"] == "mistake"]
    if true_class is not None:
        chosen = chosen[chosen["true"] == true_class]
    columns = [c for c in ("file", "true", "predicted", "posterior", "group", "fold") if c in chosen.columns]
    return chosen[columns].reset_index(drop=True), report


def format_mistakes(mistakes: pd.DataFrame) -> str:
    """The mistakes as an aligned text table (one clip a line)."""
    if mistakes.empty:
        return "no mistakes to list"
    header = ["file", "true", "predicted", "posterior", "group"]
    rows = [
        [str(m["file"]), str(m["true"]), str(m["predicted"]), f"{float(m['posterior']):.3f}", str(m.get("group", ""))]
        for _, m in mistakes.iterrows()
    ]
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip() for line in [header] + rows)


def clip_folder_of(report: dict[str, Any], folder: str | os.PathLike[str]) -> Path | None:
    """Where the report's clips are: the folder recorded at cv (absolute), else the data folder it names."""
    recorded = (report.get("errors") or {}).get("clip_folder") or (report.get("data") or {}).get("data_dir")
    if not recorded:
        return None
    path = Path(recorded)
    # A relative data folder was relative to where cv ran: most likely next to the report's parent.
    return path if path.is_absolute() else Path(folder).resolve().parent.parent / path


def copy_mistakes(
    mistakes: pd.DataFrame, clip_folder: Path | None, target: str | os.PathLike[str], link: bool = False
) -> tuple[list[Path], list[str]]:
    """Copy (or symlink) each mistake's clip into ``target``, named ``NN_true-as-predicted_file``.

    The number keeps the listing's order in a file browser. Existing files
    are never overwritten (a one-line error before anything is copied).

    Returns
    -------
    written : list of Path
    missing : list of str
        Clips not found in ``clip_folder``.
    """
    target = Path(target)
    plan = []
    for k, m in enumerate(mistakes.itertuples(index=False), start=1):
        source = clip_folder / m.file if clip_folder is not None else Path(m.file)
        name = f"{k:02d}_{m.true}-as-{m.predicted}_{Path(m.file).name}"
        plan.append((source, target / name))
    taken = [str(dest) for _, dest in plan if dest.exists() or dest.is_symlink()]
    if taken:
        raise HmmclfError(f"{taken[0]}: already exists; give an empty or new --copy folder")
    target.mkdir(parents=True, exist_ok=True)
    written, missing = [], []
    for source, dest in plan:
        if not source.is_file():
            missing.append(str(source))
            continue
        if link:
            dest.symlink_to(source.resolve())
        else:
            shutil.copy2(source, dest)
        written.append(dest)
    return written, missing
