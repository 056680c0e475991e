"""Recording signatures and inferred groups; labels re-read at every run; the leakage audit."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.signal import lfilter
from sklearn.metrics import homogeneity_score

from hmmclf.app.pipeline import ensure_features
from hmmclf.data.groups import clip_signature, infer_groups, n_inferred_groups, signature_matrix


def recording_clips(n_recordings=12, per_recording=10, seconds=1.5, sr=4000, seed=0):
    """Clips whose recording imprints a channel: its own colouring filter, gain and noise floor."""
    rng = np.random.default_rng(seed)
    clips, recording = [], []
    for r in range(n_recordings):
        pole = rng.uniform(-0.9, 0.9)
        gain, floor = rng.uniform(0.2, 1.0), rng.uniform(0.001, 0.05)
        for _ in range(per_recording):
            n = int(seconds * sr)
            breath = rng.standard_normal(n) * (0.5 + 0.5 * np.sin(np.pi * np.arange(n) / n)) ** 2
            clips.append(lfilter([1.0], [1.0, -pole], gain * breath) + floor * rng.standard_normal(n))
            recording.append(r)
    return clips, np.array(recording)


def test_signature_shape_and_determinism():
    clips, _ = recording_clips(n_recordings=1, per_recording=2)
    a = clip_signature(clips[0], 4000, 44100)
    assert a.shape == (49,) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, clip_signature(clips[0], 4000, 44100))
    assert a[-1] == pytest.approx(np.log2(44100))
    with pytest.raises(ValueError, match="too short"):
        clip_signature(np.zeros(10), 4000, 4000)


def test_inferred_groups_recover_recordings():
    clips, recording = recording_clips()
    signatures = np.stack([clip_signature(c, 4000, 4000) for c in clips])
    groups = infer_groups(signatures)
    assert len(set(groups.tolist())) == n_inferred_groups(len(clips))
    # Coarser than recordings (groups merge them), but a recording is rarely split.
    assert homogeneity_score(groups, recording) > 0.9
    np.testing.assert_array_equal(groups, infer_groups(signatures))
    assert groups[0] == 0


def test_inferred_groups_are_scikit_learns_ward_clusters_and_exactly_as_many_as_asked():
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import adjusted_rand_score

    signatures = np.random.default_rng(3).standard_normal((300, 49))
    for k in (2, 12, 40):
        reference = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(signature_matrix(signatures))
        assert adjusted_rand_score(reference, infer_groups(signatures, n_groups=k)) == 1.0
    # Identical signatures tie the merge heights; the count still holds.
    tied = np.vstack([signatures[:20], signatures[:20]])
    assert len(set(infer_groups(tied, n_groups=30).tolist())) == 30


def test_labels_are_read_again_at_every_run(corpus, tmp_path):
    features_dir = tmp_path / "features"
    messages = []
    first = ensure_features(features_dir, corpus / "train", corpus / "train.csv", n_jobs=1, log=messages.append)
    assert len(first) == 32 and first.grouping.kind == "column"
    labels = pd.read_csv(corpus / "train.csv")
    labels = labels.drop(index=[0, 1]).reset_index(drop=True)
    labels.loc[labels["filename"] == "p1_both_0.wav", "label"] = "normal"
    labels.to_csv(corpus / "train.csv", index=False)
    messages.clear()
    second = ensure_features(features_dir, corpus / "train", corpus / "train.csv", n_jobs=1, log=messages.append)
    assert len(second) == 30 and "p0_normal_0.wav" not in second.files
    assert second.classes[second.files.index("p1_both_0.wav")] == "normal"
    assert any("2 removed, 1 relabelled" in m and "no feature recomputed" in m for m in messages)
    assert not any("extracting" in m for m in messages)
    ungrouped = ensure_features(features_dir, corpus / "train", corpus / "train.csv", groups="none", n_jobs=1)
    assert ungrouped.groups is None and ungrouped.grouping.kind == "none"
    inferred = ensure_features(features_dir, corpus / "train", corpus / "train.csv", groups="infer", n_jobs=1)
    assert inferred.grouping.kind == "inferred" and inferred.n_groups >= 2


def test_leakage_audit_sees_near_copies(tmp_path):
    from hmmclf.data.feature_store import FeatureSet
    from hmmclf.data.features import FeatureConfig
    from hmmclf.data.grouping import Grouping
    from hmmclf.evaluation.leakage import leakage_audit
    from hmmclf.task.splits import make_folds

    rng = np.random.default_rng(0)
    # 40 recordings of 8 near-identical clips each; the label is the recording's, unrelated to the sound.
    centres = rng.standard_normal((40, 6)) * 3
    sequences = [
        (centres[r] + 0.05 * rng.standard_normal((20, 6))).astype(np.float32) for r in range(40) for _ in range(8)
    ]
    classes = np.repeat(rng.choice(["normal", "crackle", "wheeze", "both"], size=40), 8)
    groups = np.repeat([f"r{r}" for r in range(40)], 8)
    features = FeatureSet(
        files=[f"c{i}.wav" for i in range(320)],
        classes=classes,
        groups=groups,
        sequences=sequences,
        original_rates=np.full(320, 4000),
        durations=np.ones(320),
        hashes=[""] * 320,
        config=FeatureConfig(),
        grouping=Grouping("column", column="recording"),
    )
    audit = leakage_audit(features, make_folds(classes, groups, 5, 0), seed=0)
    assert audit["score_plain_folds"] > 70 and audit["gap"] > 20 and audit["warning"] is None
    json.dumps(audit)
