import json

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from hmmclf.data.features import FeatureConfig
from hmmclf.model.baum_welch import gaussian_log_density, sequence_log_likelihoods
from hmmclf.model.classifier import HMMClassifier
from hmmclf.model.decision.stacked import likelihood_statistics
from hmmclf.model.model_io import load_model, save_model
from hmmclf.task.classes import CLASSES
from hmmclf.utils.errors import ModelFileError


def toy_data(seed=0, per_class=12, dims=4):
    """Sequences whose state is visible in the frames: each class shifts its mean."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for k, state in enumerate(CLASSES):
        for _ in range(per_class):
            n = int(rng.integers(30, 60))
            base = rng.standard_normal((n, dims))
            base[:, k % dims] += 2.5 if k else 0.0
            X.append(base.astype(np.float32))
            y.append(state)
    return X, np.array(y)


def test_fit_predict_far_above_chance():
    X, y = toy_data()
    Xt, yt = toy_data(seed=1)
    model = HMMClassifier(n_states=2, n_iter=10).fit(X, y)
    assert list(model.classes_) == list(CLASSES)
    assert np.mean(model.predict(Xt) == yt) > 0.8
    proba = model.predict_proba(Xt)
    assert proba.shape == (len(Xt), 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert 0.8 < model.score(Xt, yt) <= 1.0
    report = model.fit_report_
    assert set(report) == set(CLASSES) | {"decision"}
    assert all(report[s]["iterations"] >= 1 for s in CLASSES)
    # The default rule is "auto": it records which candidate it chose and both cross-fitted inner Scores.
    decision = report["decision"]
    assert decision["rule"] == "auto" and decision["chosen"] == model.decision_rule_.chosen.name
    assert set(decision["cross_fitted_inner_scores"]) == {"peak-detectors", "tuned-length"}


def test_search_offsets_recovers_a_shifted_decision():
    from hmmclf.model.decision.offsets import search_offsets

    rng = np.random.default_rng(0)
    y = np.array(["normal"] * 60 + ["crackle"] * 20 + ["wheeze"] * 20 + ["both"] * 10)
    truth = np.eye(4)[[CLASSES.index(s) for s in y]]
    # Informative scores, but every abnormal column pushed down by 3: argmax says "normal".
    scores = truth + 0.3 * rng.standard_normal(truth.shape) - np.array([0, 3.0, 3.0, 3.0])
    offsets, best = search_offsets(scores, np.array([CLASSES.index(s) for s in y]))
    assert offsets[0] == 0 and np.all(offsets[1:] > 2)
    assert best > 0.9


def test_argmax_decision_has_no_offsets():
    X, y = toy_data()
    model = HMMClassifier(n_states=2, n_iter=3, decision="argmax").fit(X, y)
    assert model.decision_rule_.name == "argmax" and "decision" not in model.fit_report_


def test_batched_forward_matches_hmmlearn():
    X, y = toy_data()
    for topology in ("ergodic", "left-right"):
        model = HMMClassifier(n_states=3, topology=topology, n_iter=5).fit(X, y)
        ll = model.log_likelihood(X[:10])
        for i in range(10):
            for k, hmm in enumerate(model.hmms_):
                expected = hmm.score(model._standardize(X[i].astype(float)))
                assert ll[i, k] == pytest.approx(expected, rel=1e-9, abs=1e-6)


def test_forward_survives_extreme_frames():
    log_emission = np.array([[0.0, -2000.0], [-5000.0, -4000.0], [-1.0, -1.0]])
    ll = sequence_log_likelihoods(log_emission, np.array([3]), np.array([0.5, 0.5]), np.array([[0.9, 0.1], [0.1, 0.9]]))
    assert np.isfinite(ll).all() and ll[0] < -3000


def test_frame_log_likelihood_sums_to_total():
    X, y = toy_data()
    model = HMMClassifier(n_states=2, n_iter=3).fit(X, y)
    per_frame = model.frame_log_likelihood(X[0])
    np.testing.assert_allclose(per_frame.sum(axis=0), model.log_likelihood([X[0]])[0], rtol=1e-9)
    paths = model.decode(X[0])
    assert set(paths) == set(CLASSES) and len(paths["normal"][1]) == len(X[0])


def test_left_right_keeps_its_topology():
    X, y = toy_data()
    model = HMMClassifier(n_states=3, topology="left-right", n_iter=5).fit(X, y)
    for hmm in model.hmms_:
        assert np.allclose(np.tril(hmm.transmat_, -1), 0)
        assert hmm.startprob_[0] == pytest.approx(1.0)


def test_sklearn_api_clone_params_cross_validate_and_pipeline():
    model = HMMClassifier(n_states=2, topology="left-right", class_offsets=(0.0, 0.1, 0.2, 0.3))
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    copy.set_params(n_states=3)
    assert copy.n_states == 3 and model.n_states == 2
    X, y = toy_data(per_class=9)
    scores = cross_validate(HMMClassifier(n_states=2, n_iter=3), X, y, cv=3)
    assert len(scores["test_score"]) == 3 and np.all(scores["test_score"] > 0.5)
    pipe = Pipeline(
        [("identity", FunctionTransformer(lambda seqs: seqs)), ("hmm", HMMClassifier(n_states=2, n_iter=3))]
    )
    assert len(pipe.fit(X, y).predict(X)) == len(X)


def test_invalid_input_and_params():
    X, y = toy_data()
    with pytest.raises(ValueError, match="topology"):
        HMMClassifier(topology="circular").fit(X, y)
    with pytest.raises(ValueError, match="unknown label classes"):
        HMMClassifier().fit(X, np.where(y == "both", "rhonchi", y))
    with pytest.raises(ValueError, match="sequence of"):
        HMMClassifier().fit(np.zeros((10, 3)), ["normal"] * 10)
    model = HMMClassifier(n_states=2, n_iter=2).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        model.predict([np.zeros((10, 7))])


def test_few_frames_reduce_the_states():
    X, y = toy_data(per_class=1)
    X = [x[:8] for x in X]
    model = HMMClassifier(n_states=5, n_iter=2).fit(X, y)
    report = model.fit_report_
    assert all(report[s]["n_states"] == 1 and "reduced" in report[s]["note"] for s in CLASSES)
    assert report["decision"]["rule"] == "argmax" and "not tuned" in report["decision"]["note"]


def test_same_seed_same_model():
    X, y = toy_data()
    a = HMMClassifier(n_states=3, n_iter=5, random_state=3).fit(X, y)
    b = HMMClassifier(n_states=3, n_iter=5, random_state=3).fit(X, y)
    np.testing.assert_array_equal(a.log_likelihood(X), b.log_likelihood(X))


def test_save_load_round_trip(tmp_path):
    X, y = toy_data()
    config = FeatureConfig(n_mfcc=2, deltas=1)  # 4 features, matching the toy data
    model = HMMClassifier(n_states=2, n_iter=3, class_offsets=(0.0, 0.5, 0.0, 0.0)).fit(X, y)
    path = save_model(model, tmp_path / "m.npz", config)
    assert json.loads((tmp_path / "m.json").read_text())["format"] == "hmmclf-model"
    loaded, loaded_config = load_model(path)
    assert loaded_config == config
    assert loaded.get_params() == model.get_params()
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))


def _tamper(tmp_path, change):
    X, y = toy_data()
    model = HMMClassifier(n_states=2, n_iter=2).fit(X, y)
    path = save_model(model, tmp_path / "m.npz", FeatureConfig(n_mfcc=2, deltas=1))
    arrays = dict(np.load(path, allow_pickle=False))
    change(arrays)
    out = tmp_path / "tampered.npz"
    np.savez(out, **arrays)
    return out


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.__setitem__("normal.means", a["normal.means"][:, :2]), "normal.means"),
        (lambda a: a.__setitem__("wheeze.variances", a["wheeze.variances"].astype(np.float32)), "dtype"),
        (lambda a: a["crackle.means"].__setitem__((0, 0), np.nan), "non-finite"),
        (lambda a: a.__setitem__("both.transmat", a["both.transmat"] * 2), "probability"),
        (lambda a: a.pop("both.startprob"), "missing HMM"),
        (lambda a: a.__setitem__("decision.chosen", np.array([7.0])), "chosen must index"),
        (lambda a: a.__setitem__("decision.extra", np.zeros(2)), "unexpected arrays"),
        (lambda a: a.__setitem__("meta", np.array(json.dumps({"format": "other"}))), "not an hmmclf model"),
        (
            lambda a: a.__setitem__(
                "meta",
                np.array(str(a["meta"]).replace('"n_mfcc": 2', '"n_mfcc": 3')),
            ),
            "fingerprint",
        ),
    ],
)
def test_tampered_models_are_refused(tmp_path, change, message):
    with pytest.raises(ModelFileError, match=message):
        load_model(_tamper(tmp_path, change))


def test_pickled_payload_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    arrays = {"meta": np.array([Payload()], dtype=object)}
    np.savez(tmp_path / "evil.npz", **arrays)
    with pytest.raises(ModelFileError):
        load_model(tmp_path / "evil.npz")
    assert not marker.exists()
    (tmp_path / "trunc.npz").write_bytes((tmp_path / "evil.npz").read_bytes()[:50])
    with pytest.raises(ModelFileError, match="damaged"):
        load_model(tmp_path / "trunc.npz")


def test_gaussian_log_density_matches_scipy():
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(0)
    x, mu, var = rng.standard_normal((5, 3)), rng.standard_normal((2, 3)), rng.uniform(0.5, 2, (2, 3))
    out = gaussian_log_density(x, mu, var)
    for k in range(2):
        np.testing.assert_allclose(out[:, k], multivariate_normal(mu[k], np.diag(var[k])).logpdf(x))


def test_stacked_decision_round_trip(tmp_path):
    X, y = toy_data(per_class=15)
    Xt, yt = toy_data(seed=1)
    model = HMMClassifier(n_states=2, n_iter=5, decision="stacked").fit(X, y)
    assert model.fit_report_["decision"]["rule"] == "stacked" and model.decision_rule_.stacker is not None
    assert likelihood_statistics(model.score_clips(Xt, frame_increments=True).likelihoods).shape == (len(Xt), 10)
    assert model.score(Xt, yt) > 0.8
    path = save_model(model, tmp_path / "m.npz", FeatureConfig(n_mfcc=2, deltas=1))
    loaded, _ = load_model(path)
    np.testing.assert_allclose(loaded.predict_proba(Xt), model.predict_proba(Xt))


def test_forward_increments_are_prefix_log_likelihoods():
    X, y = toy_data()
    model = HMMClassifier(n_states=3, n_iter=3, decision="argmax").fit(X, y)
    increments = model.frame_log_likelihood(X[3])
    seq = model._standardize(X[3].astype(float))
    # The running sum of the increments up to frame t is log p(x_1..x_t), as hmmlearn scores the prefix.
    for t in (1, 5, len(seq)):
        for k, hmm in enumerate(model.hmms_):
            assert increments[:t, k].sum() == pytest.approx(hmm.score(seq[:t]), rel=1e-9, abs=1e-6)


def test_detectors_decision_composes_label_sets(tmp_path):
    from hmmclf.model.decision.detectors import detector_scores

    X, y = toy_data(per_class=15)
    Xt, yt = toy_data(seed=1)
    model = HMMClassifier(n_states=2, n_iter=5, decision="detectors").fit(X, y)
    assert model.fit_report_["decision"]["rule"] == "detectors" and model.decision_rule_.thresholds.shape == (2,)
    assert model.score(Xt, yt) > 0.8
    loaded, _ = load_model(save_model(model, tmp_path / "m.npz", FeatureConfig(n_mfcc=2, deltas=1)))
    np.testing.assert_allclose(loaded.predict_proba(Xt), model.predict_proba(Xt))
    # Evidence above both thresholds means "both"; below both, "normal".
    scores = np.array([[0.0, 5.0, 5.0, 9.0], [9.0, 0.0, 0.0, 0.0]])
    composed = detector_scores(scores, np.zeros(2))
    assert list(np.argmax(composed, axis=1)) == [3, 0]


def test_tuning_needs_two_groups_per_inner_fold():
    X, y = toy_data()
    few = np.array([f"P{i % 3}" for i in range(len(y))])
    model = HMMClassifier(n_states=2, n_iter=3, inner_folds=2).fit(X, y, groups=few)
    assert model.fit_report_["decision"]["rule"] == "argmax"
    assert "3 groups" in model.fit_report_["decision"]["note"] and model.decision_rule_.name == "argmax"
    enough = np.array([f"P{i % 4}" for i in range(len(y))])
    model = HMMClassifier(n_states=2, n_iter=3, inner_folds=2).fit(X, y, groups=enough)
    assert model.fit_report_["decision"]["rule"] == "auto"


def test_tuned_offsets_beat_argmax_on_imbalanced_data():
    """Many normal clips, few abnormal: the log-prior drowns the likelihoods unless the offsets are tuned."""
    rng = np.random.default_rng(5)

    def clips(per_class):
        X, y = [], []
        for k, name in enumerate(CLASSES):
            for _ in range(per_class[k]):
                frames = rng.standard_normal((int(rng.integers(30, 50)), 3))
                frames[:, 0] += 0.35 * (k in (1, 3))  # a weak crackle cue
                frames[:, 1] += 0.35 * (k in (2, 3))  # a weak wheeze cue
                X.append(frames)
                y.append(name)
        return X, np.array(y)

    X, y = clips((160, 14, 14, 8))
    Xt, yt = clips((160, 14, 14, 8))
    groups = np.array([f"P{i % 10}" for i in range(len(y))])
    argmax = HMMClassifier(n_states=2, n_iter=5, decision="argmax").fit(X, y, groups=groups)
    tuned = HMMClassifier(n_states=2, n_iter=5, decision="tuned").fit(X, y, groups=groups)
    assert tuned.fit_report_["decision"]["rule"] == "tuned"
    assert tuned.decision_rule_.offsets[1:].max() > 0  # abnormal classes pushed up against the prior
    assert tuned.score(Xt, yt) > argmax.score(Xt, yt) + 0.05


def test_a_class_without_training_clips_is_never_predicted(tmp_path):
    X, y = toy_data()
    keep = y != "both"
    X, y = [x for x, k in zip(X, keep) if k], y[keep]
    groups = np.array([f"P{i % 6}" for i in range(len(y))])
    detector_rules = ("detectors", "peak-detectors", "auto")
    for decision in ("tuned", "argmax", "tuned-length") + detector_rules:
        model = HMMClassifier(n_states=2, n_iter=3, decision=decision).fit(X, y, groups=groups)
        assert model.hmms_[3] is None and "no training clips" in model.fit_report_["both"]["note"]
        scored = model.score_clips(X)
        assert not np.isnan(scored.decision).any() and not np.isnan(scored.posterior).any()
        if decision not in detector_rules:  # two detectors can still both fire: "both" without a "both" HMM
            assert "both" not in set(scored.predicted) and np.all(scored.posterior[:, 3] == 0)
        assert model.score(X, y) > 0.8
        loaded, _ = load_model(save_model(model, tmp_path / "m.npz", FeatureConfig(n_mfcc=2, deltas=1)))
        np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))
    # A training part with normal clips only (a tiny corpus whose only crackle patient is in the test fold).
    only_normal = HMMClassifier(n_states=2, n_iter=3).fit(X[:12], y[:12])
    assert set(only_normal.predict(X)) == {"normal"}
    loaded, _ = load_model(save_model(only_normal, tmp_path / "n.npz", FeatureConfig(n_mfcc=2, deltas=1)))
    assert set(loaded.predict(X)) == {"normal"}


def event_clips(seed, per_class=(16, 8, 8, 8), event=12):
    """Long clips of plain noise; a short crackle event (feature 0) and/or wheeze event (feature 1) inside."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for k, name in enumerate(CLASSES):
        for _ in range(per_class[k]):
            n = int(rng.integers(60, 100))
            frames = rng.standard_normal((n, 3))
            for feature, present in ((0, k in (1, 3)), (1, k in (2, 3))):
                if present:
                    start = int(rng.integers(0, n - event))
                    frames[start : start + event, feature] += 3.0
            X.append(frames)
            y.append(name)
    return X, np.array(y)


def length_clips(seed, per_class=12):
    """Classes that differ only in clip length (as event-cut SPRSound clips partly do); the frames are noise."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for k, name in enumerate(CLASSES):
        for _ in range(per_class):
            n = int(round(np.exp(rng.normal(np.log((80, 45, 25, 14)[k]), 0.12))))
            X.append(rng.standard_normal((n, 3)))
            y.append(name)
    return X, np.array(y)


@pytest.mark.parametrize("decision", ["auto", "peak-detectors", "tuned-length"])
def test_new_rules_fit_predict_and_round_trip(tmp_path, decision):
    X, y = event_clips(0)
    Xt, yt = event_clips(1)
    groups = np.array([f"P{i % 6}" for i in range(len(y))])
    model = HMMClassifier(n_states=2, n_iter=3, decision=decision, peak_frames=10).fit(X, y, groups=groups)
    report = model.fit_report_["decision"]
    assert report["rule"] == decision and model.decision_rule_.name == decision
    # The clip mean dilutes a short event: the peak rules see it far better than the clip-mean rule.
    assert 0 <= report["inner_score"] <= 1 and model.score(Xt, yt) > (0.6 if decision == "tuned-length" else 0.8)
    config = FeatureConfig(n_mfcc=1, deltas=2)  # 3 features, matching the clips
    loaded, _ = load_model(save_model(model, tmp_path / "m.npz", config))
    assert loaded.get_params() == model.get_params() and loaded.decision_rule_.name == decision
    np.testing.assert_array_equal(loaded.predict_proba(Xt), model.predict_proba(Xt))
    if decision == "auto":
        assert loaded.fit_report_["decision"]["chosen"] == model.decision_rule_.chosen.name


def test_peak_detectors_predict_both_when_both_cues_are_present():
    X, y = event_clips(0)
    Xt, yt = event_clips(1)
    groups = np.array([f"P{i % 6}" for i in range(len(y))])
    model = HMMClassifier(n_states=2, n_iter=3, decision="peak-detectors", peak_frames=10).fit(X, y, groups=groups)
    predicted = model.predict(Xt)
    assert np.mean(predicted[yt == "both"] == "both") >= 0.5
    assert np.mean(predicted[yt == "normal"] == "normal") >= 0.75
    # The clip mean dilutes the two short events: the clip-mean rule finds no more "both" clips.
    tuned = HMMClassifier(n_states=2, n_iter=3, decision="tuned").fit(X, y, groups=groups)
    assert np.mean(predicted[yt == "both"] == "both") >= np.mean(tuned.predict(Xt)[yt == "both"] == "both")


def test_clip_length_rule_wins_when_only_the_length_carries_the_class():
    X, y = length_clips(0)
    Xt, yt = length_clips(1)
    groups = np.array([f"P{i % 6}" for i in range(len(y))])
    tuned = HMMClassifier(n_states=2, n_iter=3, decision="tuned").fit(X, y, groups=groups)
    length = HMMClassifier(n_states=2, n_iter=3, decision="tuned-length").fit(X, y, groups=groups)
    assert length.fit_report_["decision"]["length_weight"] > 0
    assert length.score(Xt, yt) > 0.9 and length.score(Xt, yt) > tuned.score(Xt, yt) + 0.2
    auto = HMMClassifier(n_states=2, n_iter=3).fit(X, y, groups=groups)
    scores = auto.fit_report_["decision"]["cross_fitted_inner_scores"]
    assert auto.fit_report_["decision"]["chosen"] == "tuned-length"
    assert scores["tuned-length"] >= scores["peak-detectors"] + auto.select_margin


def test_auto_keeps_peak_detectors_unless_the_length_rule_wins_by_the_margin():
    X, y = length_clips(0)
    groups = np.array([f"P{i % 6}" for i in range(len(y))])
    auto = HMMClassifier(n_states=2, n_iter=3, select_margin=0.99).fit(X, y, groups=groups)
    assert auto.fit_report_["decision"]["chosen"] == "peak-detectors"


def test_peak_evidence_is_the_best_window_mean_and_never_nan():
    from hmmclf.model.decision.detectors import moving_average_max

    values = np.array([[0.0, -np.inf], [4.0, -np.inf], [0.0, -np.inf], [1.0, -np.inf]])
    np.testing.assert_array_equal(moving_average_max(values, 2), [2.0, -np.inf])
    np.testing.assert_array_equal(moving_average_max(values[:, :1], 10), [1.25])  # shorter clip: its mean


def test_new_rule_parameters_are_validated():
    X, y = toy_data(per_class=3)
    with pytest.raises(ValueError, match="peak_frames"):
        HMMClassifier(peak_frames=0).fit(X, y)
    with pytest.raises(ValueError, match="select_margin"):
        HMMClassifier(select_margin=1.5).fit(X, y)
    with pytest.raises(ValueError, match="decision must be one of"):
        HMMClassifier(decision="tuned-duration").fit(X, y)


def test_a_format_2_model_file_still_loads(tmp_path):
    X, y = toy_data()
    model = HMMClassifier(n_states=2, n_iter=2, decision="tuned").fit(X, y)
    path = save_model(model, tmp_path / "m.npz", FeatureConfig(n_mfcc=2, deltas=1))
    arrays = dict(np.load(path, allow_pickle=False))
    meta = json.loads(str(arrays["meta"]))
    meta["format_version"] = 2
    for name in ("peak_frames", "select_margin"):
        del meta["params"][name]
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "old.npz", **arrays)
    loaded, _ = load_model(tmp_path / "old.npz")
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_vectorised_threshold_search_equals_the_plain_loop():
    from hmmclf.model.decision.detectors import search_thresholds
    from hmmclf.task.metrics import icbhi_score_from_indices

    def loop(evidence, y, include_zero, prefer_near_zero, n_candidates=40):
        grid = []
        for j in range(2):
            finite = evidence[:, j][np.isfinite(evidence[:, j])]
            q = np.quantile(finite, np.linspace(0, 1, n_candidates)) if len(finite) else np.zeros(1)
            grid.append(np.concatenate([[0.0], q]) if include_zero and len(finite) else q)
        best, best_t = -1.0, np.zeros(2)
        for tc in grid[0]:
            for tw in grid[1]:
                predicted = (evidence[:, 0] > tc).astype(np.int64) + 2 * (evidence[:, 1] > tw).astype(np.int64)
                value = icbhi_score_from_indices(y, predicted)
                tie = abs(value - best) <= 1e-12
                if value > best + 1e-12 or (prefer_near_zero and tie and abs(tc) + abs(tw) < np.abs(best_t).sum()):
                    best, best_t = value, np.array([tc, tw])
        return best_t, best

    rng = np.random.default_rng(0)
    for trial in range(12):
        n = int(rng.integers(5, 120))
        y = np.zeros(n, dtype=np.int64) if trial % 7 == 0 else rng.integers(0, 4, n)
        evidence = np.round(rng.normal(size=(n, 2)) + (y[:, None] > 0), 1 if trial % 3 else 6)
        if trial % 5 == 0:
            evidence[:, 1] = -np.inf  # a detector without an HMM
        for options in ((False, False), (True, True)):
            expected = loop(evidence, y, *options)
            got = search_thresholds(evidence, y, include_zero=options[0], prefer_near_zero=options[1])
            np.testing.assert_array_equal(got[0], expected[0])
            assert got[1] == expected[1] or (np.isnan(got[1]) and np.isnan(expected[1]))
