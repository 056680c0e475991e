#!/usr/bin/env python3
"""How close do inferred groups come to true patients? The study behind the README's grouping table.

For a database whose labels file has a patient column, this script
1. anonymises it as a user would receive it: clips linked under hashed names, rows shuffled, only a
   file and a label column; the patients are split at random (seed 2026) into a design half and a
   confirm half, each anonymised the same way;
2. runs ``hmmclf cv --folds 5`` with seeds 0-2 on each half and on the whole, three ways: grouped by
   the true patient column; with groups inferred from the audio and no dead zone; with inferred
   groups and the dead zone (the default for inferred groups);
3. prints, per set: hmmclf's Score (mean ± sd over seeds) each way, its distance to the
   patient-grouped Score, the leakage audit's memorising probe (MFCC statistics without mean
   normalisation) under each kind of fold, the largest adjusted Rand index between the folds of two
   seeds (beside two chance levels for the same groups: the mean index between folds that deal each
   group to a fold uniformly at random, and the largest index among three such deals whose fold
   sizes are similar), the share of training clips the dead zone leaves out, and the share of test
   clips that have a clip of their own patient in the training part (inferred groups, without and
   with the dead zone: how far the groups keep patients apart).

usage: python scripts/grouping_study.py DATABASE_DIR WORK_DIR [--jobs N]
  DATABASE_DIR  holds train/ and train.csv (columns filename, label, patient_id)
  WORK_DIR      where the anonymised copies, feature cache and reports go (re-runs reuse them)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from hmmclf.task.splits import fold_agreement

if TYPE_CHECKING:
    from hmmclf.data.feature_store import FeatureSet

VARIANTS = {
    "true": ["--groups", "patient_id", "--dead-zone", "off"],
    "inferred": ["--groups", "infer", "--dead-zone", "off"],
    "inferred+dead zone": ["--groups", "infer", "--dead-zone", "on"],
}
SEEDS = (0, 1, 2)


def anonymise(database: Path, work: Path) -> list[str]:
    """Hashed links to every clip, and per set a labels file with and without the patient column."""
    table = pd.read_csv(database / "train.csv")
    (work / "train").mkdir(parents=True, exist_ok=True)
    table["anon"] = [hashlib.sha1(f.encode()).hexdigest()[:16] + Path(f).suffix for f in table["filename"]]
    for anon, name in zip(table["anon"], table["filename"]):
        link = work / "train" / anon
        if not link.is_symlink():
            link.symlink_to((database / "train" / name).resolve())
    patients = np.array(sorted(table["patient_id"].astype(str).unique()))
    design = set(patients[np.random.default_rng(2026).permutation(len(patients))[: len(patients) // 2]])
    table["half"] = np.where(table["patient_id"].astype(str).isin(design), "design", "confirm")
    for name in ("design", "confirm", "whole"):
        rows = table if name == "whole" else table[table["half"] == name]
        rows = rows.sample(frac=1, random_state=2026).rename(columns={"anon": "file"})
        rows[["file", "label"]].to_csv(work / f"{name}.csv", index=False)
        rows[["file", "label", "patient_id"]].to_csv(work / f"{name}_patients.csv", index=False)
    return ["design", "confirm", "whole"]


def run_cv(work: Path, name: str, variant: str, seed: int, jobs: str) -> dict:
    out = work / "reports" / f"{name}-{variant.replace(' ', '').replace('+', '-')}-{seed}"
    if not (out / "report.json").exists():
        labels = f"{name}_patients.csv" if variant == "true" else f"{name}.csv"
        command = [sys.executable, "-m", "hmmclf", "cv", "--folds", "5", "--seed", str(seed), "--labels", labels]
        command += ["--features", "features", "--out", str(out), "--jobs", jobs, *VARIANTS[variant]]
        subprocess.run(command, cwd=work, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    report = json.loads((out / "report.json").read_text())
    predictions = pd.read_csv(out / "predictions.csv").sort_values("file")
    report["fold_of"] = predictions["fold"].to_numpy()
    report["file_of"] = predictions["file"].astype(str).to_numpy()
    report["group_of"] = predictions["group"].astype(str).to_numpy()
    return report


def random_deal(group_index: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Each clip's fold when every group (``group_index``: 0..G-1 per clip) goes whole to a fold drawn
    uniformly at random."""
    return rng.integers(n_folds, size=int(group_index.max()) + 1)[group_index]


def chance_agreement(group_index: np.ndarray, n_folds: int = 5, draws: int = 20) -> float:
    """Mean adjusted Rand index between folds that deal each group (``group_index``: 0..G-1 per clip)
    to a fold uniformly at random.

    What the groups alone impose: clips of one group always share a fold, so even folds drawn with
    no balancing at all agree beyond 0 when a few groups hold many clips (seeded draws 0..draws-1).
    """
    folds = [random_deal(group_index, n_folds, np.random.default_rng(d)) for d in range(draws)]
    return float(np.mean([adjusted_rand_score(a, b) for a, b in combinations(folds, 2)]))


def balanced_chance(group_index: np.ndarray, n_folds: int = 5, tolerance: float = 0.10, triples: int = 10) -> float:
    """Median over ``triples`` of the largest adjusted Rand index among three random deals of similar size.

    Groups dealt to folds uniformly at random, keeping only deals whose fold sizes vary by at most
    ``tolerance`` (standard deviation over mean; rejection sampling, seed 0): how alike three seeds'
    folds typically are when similar fold sizes are the only constraint (hmmclf also evens out the
    classes).
    """
    rng = np.random.default_rng(0)
    kept: list[np.ndarray] = []
    for _ in range(1_000_000):
        fold_of = random_deal(group_index, n_folds, rng)
        sizes = np.bincount(fold_of, minlength=n_folds)
        if sizes.std() <= tolerance * sizes.mean():
            kept.append(fold_of)
            if len(kept) == 3 * triples:
                break
    largest = [fold_agreement(kept[3 * t : 3 * t + 3]) for t in range(len(kept) // 3)]
    return float(np.median(largest)) if largest else float("nan")


def set_clips(work: Path, name: str) -> tuple[FeatureSet, np.ndarray]:
    """One set's clips from the study's feature cache (read once per set) and each clip's patient."""
    from hmmclf.data.feature_store import load_feature_set
    from hmmclf.data.labels import read_labels

    features = load_feature_set(work / "features" / "features.npz")
    features = features.with_labels(read_labels(work / f"{name}.csv", groups="none"))
    patients = pd.read_csv(work / f"{name}_patients.csv", dtype=str).set_index("file")["patient_id"]
    return features, patients.loc[list(features.files)].to_numpy()


def patients_in_training(features: FeatureSet, patient_of: np.ndarray, run: dict, dead_zone: bool) -> float:
    """Share (%) of test clips that have a clip of their own patient in the training part of their
    fold, under one run's folds (with its dead zone, recomputed as cv computes it, when asked)."""
    from hmmclf.evaluation.dead_zone import dead_zone as make_dead_zone

    fold_by_file = dict(zip(run["file_of"], run["fold_of"]))
    fold_of = np.array([fold_by_file[f] for f in features.files])
    index = np.arange(len(fold_of))
    folds = [(index[fold_of != k], index[fold_of == k]) for k in range(int(fold_of.max()) + 1)]
    if dead_zone:
        zone = make_dead_zone(features, folds, run["config"]["seed"])
        if abs(zone["dropped"] - run["config"]["dead_zone"]["dropped"]) > 1e-3:
            raise RuntimeError("the recomputed dead zone is not the one cv used")
        folds = zone["folds"]
    shared = sum(np.isin(patient_of[test], patient_of[train]).sum() for train, test in folds)
    return 100 * shared / len(patient_of)


def summarise(name: str, runs: dict[str, list[dict]], work: Path) -> dict:
    score = {v: np.array([100 * r["score"] for r in rs]) for v, rs in runs.items()}
    probe = {v: np.mean([r["leakage"]["views"]["mfcc"]["score_folds_used"] for r in rs]) for v, rs in runs.items()}
    row = {"set": name, "clips": runs["true"][0]["n_clips"], "patients": runs["true"][0]["groups"]["n_groups"]}
    row["inferred groups"] = runs["inferred"][0]["groups"]["n_groups"]
    for v in runs:
        row[f"Score {v}"] = f"{score[v].mean():.1f} ± {score[v].std():.1f}"
    for v in ("inferred", "inferred+dead zone"):
        row[f"{v} − true"] = round(score[v].mean() - score["true"].mean(), 1)
    row["probe plain"] = round(np.mean([r["leakage"]["views"]["mfcc"]["score_plain_folds"] for r in runs["true"]]), 1)
    for v in runs:
        row[f"probe {v}"] = round(probe[v], 1)
    for v in ("true", "inferred"):
        folds = [r["fold_of"] for r in runs[v]]
        row[f"ARI {v}"] = round(fold_agreement(folds), 2)
        group_index = np.unique(runs[v][0]["group_of"], return_inverse=True)[1]
        row[f"ARI {v}, groups dealt at random"] = round(chance_agreement(group_index), 2)
        row[f"ARI {v}, random deals of similar size"] = round(balanced_chance(group_index), 2)
    dropped = [r["config"]["dead_zone"]["dropped"] for r in runs["inferred+dead zone"]]
    row["dead zone drops %"] = round(100 * np.mean(dropped))
    features, patient_of = set_clips(work, name)
    for v in ("inferred", "inferred+dead zone"):
        shared = [patients_in_training(features, patient_of, r, v != "inferred") for r in runs[v]]
        row[f"test clips with their patient in training %, {v}"] = round(np.mean(shared))
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("--jobs", default=str(os.cpu_count() or 1))
    args = parser.parse_args()
    work = args.work.resolve()
    names = anonymise(args.database.resolve(), work)
    if not (work / "features" / "features.npz").exists():
        subprocess.run([sys.executable, "-m", "hmmclf", "extract", "--labels", "whole.csv", "--out", "features",
                        "--jobs", args.jobs], cwd=work, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    rows = []
    for name in names:
        runs = {v: [run_cv(work, name, v, seed, args.jobs) for seed in SEEDS] for v in VARIANTS}
        rows.append(summarise(name, runs, work))
        print(f"{name}: done", file=sys.stderr)
    table = pd.DataFrame(rows).astype(str)
    print("| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns))
    for row in table.itertuples(index=False):
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
