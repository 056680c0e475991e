"""Bounded fuzzing of the input readers (tests/fuzzlib.py); the long run is scripts/fuzz_inputs.py.

Invariant: each reader returns a usable result or raises an HmmclfError (one line, exit 2 at the
CLI). Cases are seeded, so a failure names the (target, index) that replays it.
"""

import random

import fuzzlib
import pytest
from conftest import build_corpus

N_LABELS, N_MODEL, N_CACHE, N_AUDIO = 300, 120, 120, 40


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    from hmmclf.app.pipeline import train_model
    from hmmclf.data.extraction import extract_corpus
    from hmmclf.model.config import ModelConfig

    work = tmp_path_factory.mktemp("fuzz")
    corpus = build_corpus(work / "c", per_patient=1, patients=2)
    result = extract_corpus(corpus / "train", corpus / "train.csv", work / "f", n_jobs=1)
    train_model(result.features, work / "m.npz", ModelConfig(n_iter=2, kmeans_restarts=1, n_states=2))
    data, names = fuzzlib.make_labels_dir(work / "labels")
    case = work / "case"
    case.mkdir()
    model, cache = (work / "m.npz").read_bytes(), (work / "f" / "features.npz").read_bytes()
    return {"data": data, "names": names, "case": case, "model": model, "cache": cache,
            "model_arrays": fuzzlib.read_npz(model), "cache_arrays": fuzzlib.read_npz(cache),
            "probe": result.features.sequences[:1]}  # fmt: skip


def _each(target, n, run):
    failures = []
    for index in range(n):
        rng = random.Random(f"{target}:0:{index}")
        try:
            run(rng)
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{target}:{index} {type(exc).__name__}: {str(exc)[:200]}")
    assert not failures, "\n".join(failures[:10])


def test_labels_files(seeds):
    _each("labels", N_LABELS, lambda rng: fuzzlib.run_labels_case(rng, seeds["case"], seeds["data"], seeds["names"]))


def test_model_files(seeds):
    _each(
        "model",
        N_MODEL,
        lambda rng: fuzzlib.run_model_case(rng, seeds["case"], seeds["model"], seeds["model_arrays"], seeds["probe"]),
    )


def test_feature_caches(seeds):
    _each(
        "cache", N_CACHE, lambda rng: fuzzlib.run_cache_case(rng, seeds["case"], seeds["cache"], seeds["cache_arrays"])
    )


def test_audio_headers(seeds):
    _each("audio", N_AUDIO, lambda rng: fuzzlib.run_audio_case(rng, seeds["case"]))
