"""Channel statistics, the channel-keeping leakage audit and the dead zone."""

from __future__ import annotations

import numpy as np
import pytest

from hmmclf.data.channel import CHANNEL_WIDTH, VIEWS, channel_statistics


def test_channel_mfcc_statistics_equal_the_reference_memorisers_librosa_features():
    librosa = pytest.importorskip("librosa")
    rng = np.random.default_rng(0)
    t = np.arange(6000) / 4000
    samples = (0.1 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * 400 * t)).astype(np.float32)
    ours = channel_statistics(samples, 4000)
    assert ours.shape == (CHANNEL_WIDTH,) and ours.dtype == np.float32
    mfcc = librosa.feature.mfcc(y=samples, sr=4000, n_mfcc=13, n_fft=256, hop_length=80, n_mels=30, fmax=2000)
    reference = np.r_[mfcc.mean(axis=1), mfcc.std(axis=1)]
    np.testing.assert_allclose(ours[VIEWS["mfcc"]], reference, rtol=1e-3, atol=1e-2)


def _corpus_with_recordings(n_recordings: int = 40, per_recording: int = 8, seed: int = 0):
    """Clips of one recording share a channel (a random spectral colouring); classes follow recordings."""
    from hmmclf.data.feature_store import FeatureSet
    from hmmclf.data.features import FeatureConfig
    from hmmclf.data.grouping import Grouping

    rng = np.random.default_rng(seed)
    n = n_recordings * per_recording
    colour = np.repeat(rng.normal(0, 3, (n_recordings, CHANNEL_WIDTH)), per_recording, axis=0)
    channel = (colour + rng.normal(0, 0.5, (n, CHANNEL_WIDTH))).astype(np.float32)
    signatures = np.repeat(rng.normal(0, 3, (n_recordings, 49)), per_recording, axis=0) + rng.normal(0, 0.5, (n, 49))
    classes = np.repeat(rng.choice(["normal", "crackle", "wheeze", "both"], n_recordings), per_recording)
    recordings = np.repeat([f"r{r}" for r in range(n_recordings)], per_recording)
    features = FeatureSet(
        files=[f"c{i}.wav" for i in range(n)],
        classes=classes,
        groups=recordings,
        sequences=[rng.normal(size=(20, 4)).astype(np.float32) for _ in range(n)],
        original_rates=np.full(n, 4000),
        durations=np.ones(n),
        hashes=[""] * n,
        config=FeatureConfig(),
        signatures=signatures.astype(np.float32),
        channel=channel,
        grouping=Grouping("column", column="recording"),
    )
    return features


def test_the_audit_probes_every_channel_view_and_the_worst_drives_the_verdict():
    from hmmclf.evaluation.leakage import leakage_audit
    from hmmclf.task.splits import make_folds

    features = _corpus_with_recordings()
    audit = leakage_audit(features, make_folds(features.classes, features.groups, 5, 0), seed=0)
    assert set(audit["views"]) == {"mfcc", "signature", "ltas", "model"}
    worst = audit["views"][audit["worst"]]
    channel = [v for name, v in audit["views"].items() if name != "model"]
    assert audit["worst"] != "model" and worst["score_folds_used"] == max(v["score_folds_used"] for v in channel)
    # Recordings are near copies in the channel: plain folds let the probe recognise them, grouped folds do not.
    for name in ("mfcc", "signature", "ltas"):
        assert audit["views"][name]["score_plain_folds"] > 90 > audit["views"][name]["score_folds_used"] + 20


def test_the_dead_zone_leaves_out_the_training_clips_that_sound_like_the_test_part():
    from hmmclf.evaluation.dead_zone import channel_space, dead_zone_folds, dead_zone_radius
    from hmmclf.task.splits import make_folds

    features = _corpus_with_recordings()
    # Folds that split recordings (plain folds): the dead zone must remove each test clip's recording-mates.
    folds = make_folds(features.classes, None, 5, 0)
    space = channel_space(features)
    zoned, dropped = dead_zone_folds(space, folds, dead_zone_radius(space))
    assert 0 < dropped < 1
    for (train, test), (kept, same_test) in zip(folds, zoned):
        assert np.array_equal(test, same_test) and set(kept) <= set(train)
        shared = set(features.groups[kept]) & set(features.groups[test])
        assert len(shared) <= 0.1 * len(set(features.groups[test]))


def test_on_patients_with_several_recordings_the_dead_zone_closes_the_channel_leak(tmp_path):
    """Synthetic patients own several recordings that share a channel; the truth is known."""
    from hmmclf.data.extraction import extract_corpus
    from hmmclf.data.labels import read_labels
    from hmmclf.data.synthetic import synthesize_patient_corpus
    from hmmclf.evaluation.cv import _dead_zone
    from hmmclf.evaluation.leakage import leakage_audit
    from hmmclf.task.splits import make_folds

    root = synthesize_patient_corpus(tmp_path, n_patients=16, clips_per_recording=4, rates=(4000, 8000, 16000))
    patients = extract_corpus(root / "train", root / "train.csv", root / "f", groups="patient_id", n_jobs=1).features
    inferred = patients.with_labels(read_labels(root / "train.csv", root / "train", groups="infer"))
    assert inferred.grouping.kind == "inferred" and patients.grouping.patients
    true_folds = make_folds(patients.classes, patients.groups, 5, 0)
    true_audit = leakage_audit(patients, true_folds, 0)
    folds = make_folds(inferred.classes, inferred.groups, 5, 0)
    zone = _dead_zone(inferred, folds, "auto", 0)
    assert zone is not None and 0 < zone["dropped"] < 0.6
    audit = leakage_audit(inferred, zone["folds"], 0, grouped_folds=folds)
    for view in ("signature", "ltas"):  # the views that see only the channel
        true, ours = true_audit["views"][view], audit["views"][view]
        assert true["score_plain_folds"] >= true["score_folds_used"] + 10  # plain folds leak
        assert ours["score_folds_used"] <= true["score_folds_used"] + 3  # the dead zone holds it back
        assert ours["score_folds_used"] < ours["score_grouped_folds"]
