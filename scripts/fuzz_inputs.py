"""Long fuzz run of hmmclf's input readers: labels files, model files, feature caches, audio.

Usage::

    PYTHONPATH=. python scripts/fuzz_inputs.py --labels 10000 --model 2000 --cache 2000 --audio 1000 [--seed 0]
        [--work /tmp/hmmclf-fuzz] [--findings fuzz-findings]

A seeded mutation fuzzer (tests/fuzzlib.py), in this one process: each case is
rebuilt from (target, seed, index), so a finding is replayed with
``--replay TARGET:INDEX``. Invariant: each reader returns a usable result or
raises an HmmclfError subclass; every other exception (and every failed check
of what came out) is a finding, grouped by exception type and the line that
raised it. The first input of each group is written to --findings.
Exit status 1 when there is a finding.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import fuzzlib  # noqa: E402


def build_seeds(work: Path) -> dict:
    """A tiny corpus, its feature cache and models with three decision rules (made once, kept in work)."""
    from conftest import build_corpus
    from threadpoolctl import threadpool_limits

    from hmmclf.app.pipeline import train_model
    from hmmclf.data.extraction import extract_corpus
    from hmmclf.model.config import ModelConfig

    corpus = work / "corpus"
    cache = work / "features" / "features.npz"
    models = {name: work / f"model-{name}.npz" for name in ("argmax", "stacked", "detectors")}
    with threadpool_limits(1):
        if not (corpus / "train.csv").is_file():
            build_corpus(corpus, per_patient=2, patients=4)
        if not cache.is_file() or not all(p.is_file() for p in models.values()):
            result = extract_corpus(corpus / "train", corpus / "train.csv", work / "features", n_jobs=1)
            for name, path in models.items():
                train_model(result.features, path, ModelConfig(decision=name, n_iter=3, kmeans_restarts=1))
    from hmmclf.data.feature_store import load_feature_set

    features = load_feature_set(cache)
    return {"cache": cache, "models": models, "probe": features.sequences[:2]}


def where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in frames if "/hmmclf/" in f.filename] or frames
    f = inside[-1]
    return f"{Path(f.filename).name}:{f.lineno} {f.name}"


def main() -> int:
    ap = argparse.ArgumentParser()
    for target, default in (("labels", 10000), ("model", 2000), ("cache", 2000), ("audio", 1000)):
        ap.add_argument(f"--{target}", type=int, default=default)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "hmmclf-fuzz")
    ap.add_argument("--findings", type=Path, default=Path("fuzz-findings"))
    ap.add_argument("--replay", default=None, help="TARGET:INDEX: run one case with the traceback shown")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    seeds = build_seeds(args.work)
    data, names = fuzzlib.make_labels_dir(args.work / "labels")
    case_dir = args.work / "case"
    case_dir.mkdir(exist_ok=True)
    originals = {"cache": seeds["cache"].read_bytes()}
    model_files = [p.read_bytes() for p in seeds["models"].values()]
    arrays = {"cache": fuzzlib.read_npz(originals["cache"])}
    model_arrays = [fuzzlib.read_npz(b) for b in model_files]

    def run(target: str, rng: random.Random):
        if target == "labels":
            return fuzzlib.run_labels_case(rng, case_dir, data, names)
        if target == "model":
            k = rng.randrange(len(model_files))
            return fuzzlib.run_model_case(rng, case_dir, model_files[k], model_arrays[k], seeds["probe"])
        if target == "cache":
            return fuzzlib.run_cache_case(rng, case_dir, originals["cache"], arrays["cache"])
        return fuzzlib.run_audio_case(rng, case_dir)

    if args.replay:
        target, index = args.replay.split(":")
        rng = random.Random(f"{target}:{args.seed}:{index}")
        print(run(target, rng))
        return 0

    import warnings

    warnings.simplefilter("ignore")
    summary = {}
    findings: dict[str, dict] = {}
    for target in ("labels", "model", "cache", "audio"):
        n = getattr(args, target)
        counts = collections.Counter()
        started = time.perf_counter()
        for index in range(n):
            rng = random.Random(f"{target}:{args.seed}:{index}")
            try:
                outcome = run(target, rng)
                counts["accepted" if outcome is not None else "refused (HmmclfError)"] += 1
            except Exception as exc:  # noqa: BLE001 - every other exception is a finding
                key = f"{target}: {type(exc).__name__} at {where(exc)}"
                counts["FINDING"] += 1
                if key not in findings:
                    findings[key] = {"target": target, "index": index, "seed": args.seed, "count": 0,
                                     "message": str(exc).splitlines()[0][:300] if str(exc) else "",
                                     "replay": f"--replay {target}:{index} --seed {args.seed}"}  # fmt: skip
                    args.findings.mkdir(parents=True, exist_ok=True)
                    src = next(case_dir.iterdir(), None)
                    for f in case_dir.iterdir():
                        (args.findings / f"{target}-{index}-{f.name}").write_bytes(f.read_bytes())
                    del src
                findings[key]["count"] += 1
            for f in case_dir.iterdir():
                f.unlink()
        summary[target] = {"cases": n, "seconds": round(time.perf_counter() - started, 1), **counts}
        print(target, json.dumps(summary[target]), flush=True)
    print(json.dumps({"summary": summary, "findings": findings}, indent=1))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
