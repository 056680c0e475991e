#!/usr/bin/env python3
"""How hmmclf's cost grows with the corpus: extract and cv on a quarter, a half and the whole.

For each corpus (a folder holding ``train/`` and ``train.csv``) this runs, from an empty cache,
``hmmclf extract`` then ``hmmclf cv --folds 5`` on the first 25, 50 and 100 % of its patients
(sorted patient IDs), or of its clips (a seeded shuffle) when the labels have no patient column,
each clip read once just before (a warm file cache, as in ``benchmark.py``), and records wall
time, audio seconds and the peak memory of the process tree, after one untimed warm-up run of the
first cell. It prints a table, writes the numbers as JSON and draws them (seconds against clips,
one line per corpus and command).

With ``--runs N`` the whole sweep runs N times, one after the other, and each cell keeps the
shortest of its N times and the largest of its N memory peaks: on a shared machine a single run
of a cell can take half as long again when the disk stalls, and a second sweep seldom stalls on
the same cell.

With ``--dask-workers N`` the same commands run their parallel work on a Dask ``LocalCluster``
of N single-threaded worker processes, started once by this script and passed to every command
as ``--scheduler``. The cluster's workers are not children of the command, so the memory column
then counts the command's own process only.

usage: python scripts/scaling.py NAME=DIR [NAME=DIR ...] --out scaling.png [--json scaling.json]
       [--dask-workers N] [--runs N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import hmmclf, run, warm_file_cache  # noqa: E402 - the benchmark's timed runner, shared

FRACTIONS = (0.25, 0.5, 1.0)


def subset(work: Path, corpus: Path, fraction: float) -> None:
    """``work/train`` linked to the corpus's clips and ``work/train.csv`` with ``fraction`` of its rows."""
    import pandas as pd

    work.mkdir(parents=True)
    (work / "train").symlink_to((corpus / "train").resolve(), target_is_directory=True)
    table = pd.read_csv(corpus / "train.csv")
    if fraction < 1.0:
        if "patient_id" in table:
            ids = sorted(table["patient_id"].unique())
            table = table[table["patient_id"].isin(ids[: max(5, round(len(ids) * fraction))])]
        else:
            table = table.sample(frac=1.0, random_state=0).head(round(len(table) * fraction))
    table.to_csv(work / "train.csv", index=False)


def measure(corpus: Path, fraction: float, root: Path, scheduler: str | None = None) -> dict:
    import pandas as pd

    work = root / f"{corpus.name}-{fraction}"
    subset(work, corpus, fraction)
    where = ["--scheduler", scheduler] if scheduler else []
    # Every clip read once, untimed, just before: the OS may have dropped them from its cache since.
    warm_file_cache(work / "train", work / "train.csv")
    extract_s, extract_mib, _ = run(hmmclf("extract", *where), work)
    index = pd.read_csv(work / "features" / "index.csv")
    cv_s, cv_mib, _ = run(hmmclf("cv", "--folds", "5", "--out", "report", *where), work)
    return {
        "fraction": fraction,
        "clips": len(index),
        "audio_s": round(float(index["duration"].sum()), 1),
        "extract_s": round(extract_s, 2),
        "cv_s": round(cv_s, 2),
        "peak_rss_mib": round(max(extract_mib, cv_mib), 0),
    }


def shortest(kept: dict, new: dict) -> dict:
    """One cell over two sweeps: the shorter of each time, the larger memory peak."""
    return {
        **kept,
        "extract_s": min(kept["extract_s"], new["extract_s"]),
        "cv_s": min(kept["cv_s"], new["cv_s"]),
        "peak_rss_mib": max(kept["peak_rss_mib"], new["peak_rss_mib"]),
    }


def draw(results: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    for name, rows in results.items():
        clips = [r["clips"] for r in rows]
        (line,) = axes[0].plot(clips, [r["extract_s"] for r in rows], "o-", label=f"{name}: extract")
        axes[0].plot(clips, [r["cv_s"] for r in rows], "s--", color=line.get_color(), label=f"{name}: cv --folds 5")
        axes[1].plot(clips, [r["peak_rss_mib"] for r in rows], "o-", color=line.get_color(), label=name)
    axes[0].set(xlabel="clips", ylabel="wall seconds (2 cores)", title="time, from an empty cache")
    axes[1].set(xlabel="clips", ylabel="MiB", title="peak memory of the process tree")
    for ax in axes:
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        # Below the axes: inside, the legend hid part of a line.
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpora", nargs="+", help="NAME=DIR, DIR holding train/ and train.csv")
    parser.add_argument("--out", type=Path, required=True, help="the figure (PNG)")
    parser.add_argument("--json", type=Path, help="the numbers")
    parser.add_argument(
        "--dask-workers", type=int, default=0, help="run on a local Dask cluster of this many worker processes"
    )
    parser.add_argument("--runs", type=int, default=1, help="sweeps; each cell keeps its shortest times")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    results: dict[str, list[dict]] = {}
    root = Path(tempfile.mkdtemp(prefix="hmmclf-scaling-"))
    with contextlib.ExitStack() as stack:
        scheduler = None
        if args.dask_workers > 0:
            from distributed import LocalCluster

            cluster = stack.enter_context(
                LocalCluster(n_workers=args.dask_workers, threads_per_worker=1, processes=True, dashboard_address=None)
            )
            scheduler = cluster.scheduler_address
            print(f"scaling: local Dask cluster at {scheduler}, {args.dask_workers} workers", file=sys.stderr)
        try:
            # One untimed run first: the interpreter, its libraries and the compiled kernels come from
            # disk the first time, and the first timed cell would otherwise pay for it (it took 2-3x as long).
            first = Path(args.corpora[0].partition("=")[2])
            print(
                f"scaling: warm-up run, untimed: {measure(first, FRACTIONS[0], root / 'warm-up', scheduler)}",
                file=sys.stderr,
            )
            for sweep in range(args.runs):
                for item in args.corpora:
                    name, _, directory = item.partition("=")
                    for k, fraction in enumerate(FRACTIONS):
                        row = measure(Path(directory), fraction, root / f"sweep-{sweep + 1}", scheduler)
                        print(f"scaling: sweep {sweep + 1}, {name} {fraction:.0%}: {row}", file=sys.stderr)
                        rows = results.setdefault(name, [])
                        if sweep == 0:
                            rows.append(row)
                        else:
                            rows[k] = shortest(rows[k], row)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    print("| corpus | clips | audio s | extract s | cv s | peak MiB |\n|---|---|---|---|---|---|")
    for name, rows in results.items():
        for r in rows:
            cells = [name, r["clips"], f"{r['audio_s']:.0f}", f"{r['extract_s']:.1f}", f"{r['cv_s']:.1f}"]
            print("| " + " | ".join(str(c) for c in cells + [f"{r['peak_rss_mib']:.0f}"]) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    draw(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
