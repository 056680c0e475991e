#!/usr/bin/env python3
"""Trained on some patients, used on others: ``hmmclf train`` on one half, ``hmmclf predict`` on the other.

Cross-validation scores folds of one run; a user trains once and predicts patients the model
never saw. This does the second, as a user would, on a database with a patient column:

1. the patients are split at random (seed 2026) into a design half and a confirm half, the same
   split as ``scripts/grouping_study.py`` (which it reuses: hashed links to the clips in
   WORK/train, and WORK/design_patients.csv, WORK/confirm_patients.csv);
2. ``hmmclf train --groups patient_id`` on one half (its own feature cache, the default
   configuration unless ``--config`` is given);
3. ``hmmclf predict --format csv`` on every clip of the other half;
4. the ICBHI Score, Se, Sp and per-class recall of those predictions against their labels;

both ways round. It prints a table and writes WORK/new_patients.json.

usage: python scripts/new_patients.py DATABASE WORK [--config NAME|PATH]
       (DATABASE holds train/ and a train.csv with filename, label and patient_id columns)
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grouping_study import anonymise  # noqa: E402 - the same split and hashed links

from hmmclf.task.classes import CLASSES  # noqa: E402
from hmmclf.task.metrics import icbhi_metrics  # noqa: E402


def hmmclf(*args: str, cwd: Path) -> tuple[str, str]:
    """Run ``hmmclf ARGS`` in ``cwd``; its standard output and standard error."""
    done = subprocess.run([sys.executable, "-m", "hmmclf", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode not in (0, 1):  # 1: predict found a clip it could not use (listed in its output)
        raise SystemExit(f"new_patients: hmmclf {' '.join(args[:1])} failed: {done.stderr.strip()[-500:]}")
    return done.stdout, done.stderr


def train_and_predict(work: Path, train_half: str, test_half: str, config: str | None) -> dict:
    model = f"model-{train_half}.npz"
    extra = ["--config", config] if config else []
    train_labels = f"{train_half}_patients.csv"
    cache = f"features-{train_half}"
    train = ["train", "--labels", train_labels, "--groups", "patient_id", "--features", cache, "--out", model]
    printed = "\n".join(hmmclf(*train, *extra, cwd=work))
    test = pd.read_csv(work / f"{test_half}_patients.csv")
    clips = [f"train/{f}" for f in test["file"]]
    output, _ = hmmclf("predict", "--model", model, "--format", "csv", "-j", "2", *clips, cwd=work)
    predicted = pd.read_csv(io.StringIO(output))
    predicted["file"] = predicted["file"].str.rsplit("/", n=1).str[-1]
    rows = test.merge(predicted[["file", "class", "error"]], on="file", how="left")
    usable = rows["class"].notna() & rows["error"].isna()
    metrics = icbhi_metrics(rows.loc[usable, "label"].to_numpy(str), rows.loc[usable, "class"].to_numpy(str))
    return {
        "trained_on": train_half,
        "predicted": test_half,
        "patients": {
            "trained": int(pd.read_csv(work / train_labels)["patient_id"].nunique()),
            "predicted": int(test["patient_id"].nunique()),
        },
        "clips": int(usable.sum()),
        "unusable": int((~usable).sum()),
        "score": metrics["score"],
        "sensitivity": metrics["sensitivity"],
        "specificity": metrics["specificity"],
        "recall": {name: metrics["per_class"][name]["recall"] for name in CLASSES},
        # What train chose, as it printed it.
        "train_printed": [s.strip() for s in printed.splitlines() if s.strip().startswith(("features", "decision"))],
    }


def _percent(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("database", type=Path, help="folder with train/ and train.csv (with patient_id)")
    parser.add_argument("work", type=Path, help="working folder (created; reused by a later run)")
    parser.add_argument("--config", help="experiment config for train (default: the default configuration)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    anonymise(args.database, args.work)
    ways = (("design", "confirm"), ("confirm", "design"))
    results = [train_and_predict(args.work, a, b, args.config) for a, b in ways]
    recall_heads = " | ".join(f"recall {c}" for c in CLASSES)
    print(f"| trained on -> predicted | patients | clips | Score | Se | Sp | {recall_heads} |")
    print("|---|---|---|---|---|---|" + "---|" * len(CLASSES))
    for r in results:
        cells = [
            f"{r['trained_on']} -> {r['predicted']}",
            f"{r['patients']['trained']} -> {r['patients']['predicted']}",
            str(r["clips"]),
            *(_percent(r[k]) for k in ("score", "sensitivity", "specificity")),
            *(_percent(r["recall"][c]) for c in CLASSES),
        ]
        print("| " + " | ".join(cells) + " |")
        for line in r["train_printed"]:
            print(f"    trained on {r['trained_on']}: {line}")
    (args.work / "new_patients.json").write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
