"""Scripted interrupts of ``hmmclf extract``: signal at a random point, measure exit, check resume.

Usage::

    PYTHONPATH=. python scripts/interrupt_extract.py --iterations 200 [--signal INT|KILL|MIX]
        [--corpus /tmp/interrupt-corpus] [--clips 1000] [--jobs 2] [--hang 5] [--seed 0]

Each iteration starts ``python -m hmmclf extract`` (what the ``hmmclf`` command runs) in its own process
group (as a terminal runs a foreground job), waits a random time, sends the
signal to the whole group (what Ctrl-C does: the loky workers get it too),
and measures how long the command takes to exit. A command still alive
``--hang`` seconds after the signal counts as a hang (it is then SIGKILLed
and its stack, if py-spy is there, is not needed: the log keeps its stderr).

Runs are chained on one cache directory: the next iteration resumes what
the previous one left. When a run completes, its features.npz is compared
with an uninterrupted reference extraction (files, classes, every frame
bit-for-bit) and the cache is removed, so the next chain starts from zero.

After every run: no process of its group may outlive it by more than 2 s,
no temporary file may be left in the cache directory, and a features.npz
present must load (load_feature_set). Results: one JSON line per
iteration in --log, and a summary on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(corpus: Path, clips: int) -> None:
    if (corpus / "train.csv").is_file():
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import build_corpus

    patients = max(1, clips // 40)
    build_corpus(corpus, per_patient=10, patients=patients)


def command(corpus: Path, out: Path, jobs: int) -> list[str]:
    return [
        sys.executable, "-m", "hmmclf", "extract", "--data", str(corpus / "train"),
        "--labels", str(corpus / "train.csv"), "--out", str(out), "-j", str(jobs),
    ]  # fmt: skip


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def same_features(a: Path, b: Path) -> bool:
    import numpy as np

    from hmmclf.data.feature_store import load_feature_set

    x, y = load_feature_set(a), load_feature_set(b)
    return (
        x.files == y.files
        and list(x.classes) == list(y.classes)
        and x.hashes == y.hashes
        and all(np.array_equal(s, t) for s, t in zip(x.sequences, y.sequences))
        and x.complete
        and y.complete
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--signal", choices=["INT", "KILL", "MIX"], default="INT")
    ap.add_argument("--corpus", type=Path, default=Path("/tmp/interrupt-corpus"))
    ap.add_argument("--clips", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--hang", type=float, default=5.0)
    ap.add_argument("--max-delay", type=float, default=None, help="latest signal time (default: 1.2 x a full run)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log", type=Path, default=Path("interrupt-log.jsonl"))
    args = ap.parse_args()
    # A shell starts background jobs with SIGINT ignored, and an ignored signal stays ignored in
    # the children: give them the terminal's default (a Python handler becomes SIG_DFL at exec).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rng = random.Random(args.seed)
    build(args.corpus, args.clips)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    reference = args.corpus / "reference-features"
    if not (reference / "features.npz").is_file():
        t0 = time.monotonic()
        subprocess.run(command(args.corpus, reference, args.jobs), env=env, check=True, capture_output=True)
        print(f"reference extraction: {time.monotonic() - t0:.1f} s")
    t0 = time.monotonic()
    probe = args.corpus / "probe"
    shutil.rmtree(probe, ignore_errors=True)
    subprocess.run(command(args.corpus, probe, args.jobs), env=env, check=True, capture_output=True)
    full = time.monotonic() - t0
    shutil.rmtree(probe, ignore_errors=True)
    max_delay = args.max_delay or 1.2 * full
    print(f"full run {full:.1f} s; signals at uniform(0.2, {max_delay:.1f}) s")

    out = args.corpus / "interrupted"
    shutil.rmtree(out, ignore_errors=True)
    stats = {"iterations": 0, "hangs": 0, "orphans": 0, "tmp_left": 0, "bad_cache": 0, "tracebacks": 0,
             "internal_errors": 0, "completed_before_signal": 0, "chains_completed": 0, "chains_equal": 0,
             "resumed_runs": 0, "runs_after_partial": 0, "exit_codes": {}}  # fmt: skip
    exit_times = []
    had_partial = False
    with args.log.open("a") as log:
        for it in range(args.iterations):
            sig = {"INT": signal.SIGINT, "KILL": signal.SIGKILL}.get(args.signal) or rng.choice(
                [signal.SIGINT, signal.SIGKILL]
            )
            delay = rng.uniform(0.2, max_delay)
            started = time.monotonic()
            # Files, not pipes: a worker outliving its command would hold a pipe open.
            out_log, err_log = args.log.with_suffix(".stdout"), args.log.with_suffix(".stderr")
            with out_log.open("wb") as so, err_log.open("wb") as se:
                proc = subprocess.Popen(
                    command(args.corpus, out, args.jobs), env=env, stdout=so, stderr=se, start_new_session=True
                )
            pgid = proc.pid
            try:
                proc.wait(timeout=delay)
                signalled = None
            except subprocess.TimeoutExpired:
                signalled = time.monotonic()
                os.killpg(pgid, sig)
            hang = False
            try:
                proc.wait(timeout=args.hang if signalled else 600)
            except subprocess.TimeoutExpired:
                hang = True
                os.killpg(pgid, signal.SIGKILL)
                proc.wait()
            ended = time.monotonic()
            stderr = err_log.read_text(errors="replace")
            orphan = False
            deadline = time.monotonic() + 2.0
            while group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if group_alive(pgid):
                orphan = True
                os.killpg(pgid, signal.SIGKILL)
            tmp = [p.name for p in out.glob("*") if ".tmp" in p.name] if out.exists() else []
            for p in tmp:
                (out / p).unlink()
            cache_ok = True
            cache = out / "features.npz"
            if cache.exists():
                try:
                    from hmmclf.data.feature_store import load_feature_set

                    load_feature_set(cache)
                except Exception:  # noqa: BLE001
                    cache_ok = False
            first = re.search(r"extract: (\d+)/(\d+)", stderr)
            reused_at_start = int(first.group(1)) if first else None
            rec = {
                "it": it, "signal": signal.Signals(sig).name if signalled else None, "delay": round(delay, 2),
                "exit_s": round(ended - signalled, 3) if signalled else None, "rc": proc.returncode, "hang": hang,
                "orphan": orphan, "tmp_left": tmp, "cache_ok": cache_ok, "reused_at_start": reused_at_start,
                "stderr_tail": stderr.strip().splitlines()[-1:] if stderr.strip() else [],
            }  # fmt: skip
            stats["iterations"] += 1
            stats["hangs"] += hang
            stats["orphans"] += orphan
            stats["tmp_left"] += bool(tmp)
            stats["bad_cache"] += not cache_ok
            stats["tracebacks"] += "Traceback" in stderr
            stats["internal_errors"] += "internal error" in stderr
            stats["exit_codes"][str(proc.returncode)] = stats["exit_codes"].get(str(proc.returncode), 0) + 1
            if had_partial:
                stats["runs_after_partial"] += 1
                stats["resumed_runs"] += bool(reused_at_start)
            if signalled and not hang:
                exit_times.append(ended - signalled)
            if proc.returncode == 0:
                if signalled is None:
                    stats["completed_before_signal"] += 1
                stats["chains_completed"] += 1
                equal = same_features(cache, reference / "features.npz")
                stats["chains_equal"] += equal
                rec["equal_to_reference"] = equal
                shutil.rmtree(out, ignore_errors=True)
                had_partial = False
            else:
                had_partial = cache.exists()
            log.write(json.dumps(rec) + "\n")
            log.flush()
            if hang or orphan or tmp or not cache_ok or "Traceback" in stderr:
                print("PROBLEM", json.dumps(rec), flush=True)
                problem_dir = args.log.with_suffix(".problems")
                problem_dir.mkdir(exist_ok=True)
                (problem_dir / f"it{it:04d}.stderr").write_text(stderr)
            del started
    exit_times.sort()
    if exit_times:
        stats["exit_s_median"] = round(exit_times[len(exit_times) // 2], 3)
        stats["exit_s_p95"] = round(exit_times[int(0.95 * (len(exit_times) - 1))], 3)
        stats["exit_s_max"] = round(exit_times[-1], 3)
    print(json.dumps(stats, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
