import json

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from hmmclf.data.features import FeatureConfig, clip_statistics
from hmmclf.model.baum_welch import gaussian_log_density, sequence_log_likelihoods
from hmmclf.model.classifier import HMMClassifier
from hmmclf.model.config import ModelConfig
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
    # The default rule is "boosted": a cross-fitted set of trees per inner fold (three) decides, their
    # offsets tuned on what each set said of the clips it did not learn from.
    decision = report["decision"]
    assert decision["rule"] == "boosted" and decision["tree_sets"] == 3 == len(model.decision_rule_.ensembles)
    assert 0.5 < decision["inner_score"] <= 1.0
    auto = HMMClassifier(n_states=2, n_iter=10, decision="auto", features="auto").fit(X, y)
    decision = auto.fit_report_["decision"]
    assert decision["rule"] == "auto" and decision["chosen"] == auto.decision_rule_.chosen.name
    assert set(decision["cross_fitted_inner_scores"]) == {"peak-detectors", "tuned-length"}
    assert auto.score(Xt, yt) > 0.8


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
    config = FeatureConfig(n_mfcc=2, deltas=1, extra=())  # 4 features, matching the toy data
    model = HMMClassifier(n_states=2, n_iter=3, class_offsets=(0.0, 0.5, 0.0, 0.0)).fit(X, y)
    path = save_model(model, tmp_path / "m.npz", config)
    assert json.loads((tmp_path / "m.json").read_text())["format"] == "hmmclf-model"
    loaded, loaded_config = load_model(path)
    assert loaded_config == config
    assert loaded.config == model.config  # the column sets come from the feature config
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))


def _tamper(tmp_path, change):
    X, y = toy_data()
    model = HMMClassifier(n_states=2, n_iter=2).fit(X, y)
    path = save_model(model, tmp_path / "m.npz", FeatureConfig(n_mfcc=2, deltas=1, extra=()))
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
        (lambda a: a.__setitem__("decision.trees1.left", a["decision.trees1.left"] * 0), "children must come after"),
        (lambda a: a.__setitem__("decision.offsets", np.zeros(3)), "offsets"),
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
    path = save_model(model, tmp_path / "m.npz", FeatureConfig(n_mfcc=2, deltas=1, extra=()))
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
    loaded, _ = load_model(save_model(model, tmp_path / "m.npz", FeatureConfig(n_mfcc=2, deltas=1, extra=())))
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
    assert model.fit_report_["decision"]["rule"] == "boosted"


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
    for decision in ("tuned", "argmax", "tuned-length", "boosted") + detector_rules:
        model = HMMClassifier(n_states=2, n_iter=3, decision=decision).fit(X, y, groups=groups)
        assert model.hmms_[3] is None and "no training clips" in model.fit_report_["both"]["note"]
        scored = model.score_clips(X)
        assert not np.isnan(scored.decision).any() and not np.isnan(scored.posterior).any()
        if decision not in detector_rules:  # two detectors can still both fire: "both" without a "both" HMM
            assert "both" not in set(scored.predicted) and np.all(scored.posterior[:, 3] == 0)
        assert model.score(X, y) > 0.8
        loaded, _ = load_model(save_model(model, tmp_path / "m.npz", FeatureConfig(n_mfcc=2, deltas=1, extra=())))
        np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))
    # A training part with normal clips only (a tiny corpus whose only crackle patient is in the test fold).
    only_normal = HMMClassifier(n_states=2, n_iter=3).fit(X[:12], y[:12])
    assert set(only_normal.predict(X)) == {"normal"}
    loaded, _ = load_model(save_model(only_normal, tmp_path / "n.npz", FeatureConfig(n_mfcc=2, deltas=1, extra=())))
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
    config = FeatureConfig(n_mfcc=1, deltas=2, extra=())  # 3 features, matching the clips
    loaded, _ = load_model(save_model(model, tmp_path / "m.npz", config))
    assert loaded.config == model.config and loaded.decision_rule_.name == decision
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
    auto = HMMClassifier(n_states=2, n_iter=3, decision="auto").fit(X, y, groups=groups)
    scores = auto.fit_report_["decision"]["cross_fitted_inner_scores"]
    assert auto.fit_report_["decision"]["chosen"] == "tuned-length"
    assert scores["tuned-length"] >= scores["peak-detectors"] + auto.select_margin


def test_auto_keeps_peak_detectors_unless_the_length_rule_wins_by_the_margin():
    X, y = length_clips(0)
    groups = np.array([f"P{i % 6}" for i in range(len(y))])
    auto = HMMClassifier(n_states=2, n_iter=3, decision="auto", select_margin=0.99).fit(X, y, groups=groups)
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
    path = save_model(model, tmp_path / "m.npz", FeatureConfig(n_mfcc=2, deltas=1, extra=()))
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


def feature_choice_data(seed, informative):
    """Clips of 4 columns: the class shifts columns 0-1 ("cepstra") or 2-3 (the extra ones)."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for k, state in enumerate(CLASSES):
        for _ in range(10):
            frames = rng.standard_normal((int(rng.integers(30, 50)), 4))
            if k:
                frames[:, (0 if informative == "cepstra" else 2) + (k % 2)] += 2.5 if k < 3 else -2.5
            X.append(frames.astype(np.float32))
            y.append(state)
    return X, np.array(y), np.repeat(np.arange(20), 2).astype(str)


FEATURE_SETS = {"cepstra": (0, 1), "all": (0, 1, 2, 3)}


@pytest.mark.parametrize("informative", ["cepstra", "extra"])
def test_auto_features_keep_the_extra_columns_only_when_they_help(tmp_path, informative):
    X, y, groups = feature_choice_data(0, informative)
    model = HMMClassifier.from_config(ModelConfig(n_states=2, n_iter=4, features="auto"), feature_sets=FEATURE_SETS)
    model.fit(X, y, groups=groups)
    report = model.fit_report_["features"]
    assert set(report["inner_scores"]) == {"cepstra", "all"}
    expected = "cepstra" if informative == "cepstra" else "all"
    assert report["chosen"] == expected and model.feature_columns_.tolist() == list(FEATURE_SETS[expected])
    assert model.feature_mean_.shape == (len(FEATURE_SETS[expected]),)
    Xt, yt, _ = feature_choice_data(1, informative)
    assert model.score(Xt, yt) > 0.7  # the input keeps all 4 columns; the model reads its own
    config = FeatureConfig(n_mfcc=2, deltas=0, extra=("flatness", "crest"))  # columns: 2 cepstra, 2 extra
    assert config.column_sets() == FEATURE_SETS
    loaded, _ = load_model(save_model(model, tmp_path / "m.npz", config))
    assert loaded.feature_columns_.tolist() == model.feature_columns_.tolist()
    np.testing.assert_allclose(loaded.decision_function(Xt), model.decision_function(Xt))


def test_a_fixed_feature_set_is_used_without_a_choice():
    X, y, groups = feature_choice_data(0, "extra")
    model = HMMClassifier.from_config(ModelConfig(n_states=2, n_iter=3, features="cepstra"), feature_sets=FEATURE_SETS)
    model.fit(X, y, groups=groups)
    assert "features" not in model.fit_report_ and model.feature_columns_.tolist() == [0, 1]
    with pytest.raises(ValueError, match="feature set 'all' names columns outside"):
        HMMClassifier(feature_sets=(("all", (0, 9)),)).fit(X, y)


@pytest.mark.parametrize("choices", [{}, {"decision": "auto", "features": "auto"}], ids=["default", "auto"])
def test_nested_choices_never_see_the_outer_test_fold(tmp_path, monkeypatch, choices):
    """Every fit and every held-out scoring made while an outer fold's model tunes its rule (the
    default's trees and offsets) or chooses its features and rule ("auto") reads only that fold's
    training clips."""
    from conftest import build_corpus

    from hmmclf.data.extraction import extract_corpus
    from hmmclf.evaluation.cv import cross_validate

    corpus = build_corpus(tmp_path / "corpus", per_patient=1, patients=12)  # 6 per training part, 2 per inner fold
    features = extract_corpus(corpus / "train", corpus / "train.csv", tmp_path / "f", n_jobs=1).features
    assert len(features.config.column_sets()["cepstra"]) < features.config.n_features
    fingerprint = lambda clip: (len(clip), round(float(clip[0, 0]), 4))  # noqa: E731 - column 0 is kept by both sets
    state = {"depth": 0, "train": None, "nested_calls": 0, "outer_fits": 0}
    original_fit, original_likelihoods = HMMClassifier.fit, HMMClassifier._likelihoods

    def recording_fit(self, X, y, groups=None):
        seen = {fingerprint(c) for c in X}
        if state["depth"] == 0:
            state["train"], state["outer_fits"] = seen, state["outer_fits"] + 1
        else:
            assert seen <= state["train"], "a nested fit saw clips outside the outer training part"
            state["nested_calls"] += 1
        state["depth"] += 1
        try:
            return original_fit(self, X, y, groups=groups)
        finally:
            state["depth"] -= 1

    def recording_likelihoods(self, X, frame_increments=False, clip_stats=False):
        if state["depth"] > 0:
            assert {fingerprint(c) for c in X} <= state["train"], "a nested scoring saw an outer test clip"
            state["nested_calls"] += 1
        return original_likelihoods(self, X, frame_increments, clip_stats)

    monkeypatch.setattr(HMMClassifier, "fit", recording_fit)
    monkeypatch.setattr(HMMClassifier, "_likelihoods", recording_likelihoods)
    config = ModelConfig(n_states=2, n_iter=3, **choices)
    model = HMMClassifier.from_config(config, feature_sets=features.config.column_sets())
    result = cross_validate(features, model, n_folds=2, seed=0, n_jobs=1, baselines=False, leakage=False)
    assert state["outer_fits"] == 2 and state["nested_calls"] > 0
    if choices:
        assert all("inner_scores" in fold.fit_report["features"] for fold in result.folds)
    else:
        assert all(fold.fit_report["decision"]["tree_sets"] == config.inner_folds for fold in result.folds)


@pytest.mark.parametrize("n_classes", [2, 3, 4])
def test_boosted_trees_as_arrays_predict_as_scikit_learn_does(n_classes):
    from sklearn.ensemble import HistGradientBoostingClassifier

    from hmmclf.model.decision.boosted import TreeEnsemble

    rng = np.random.default_rng(n_classes)
    X = rng.standard_normal((300, 6))
    y = (X[:, 0] > 0).astype(int) + (n_classes > 2) * (X[:, 1] > 0.5) + (n_classes > 3) * (X[:, 2] > 1)
    model = HistGradientBoostingClassifier(max_iter=20, max_leaf_nodes=7, random_state=0).fit(X, y)
    classes = np.array([0, 2, 3, 1][:n_classes])  # the label class each column stands for
    trees = TreeEnsemble.from_sklearn(model, classes)
    Xt = rng.standard_normal((50, 6))
    ours = trees.log_proba(Xt)
    np.testing.assert_allclose(np.exp(ours[:, classes]), model.predict_proba(Xt), rtol=1e-9, atol=1e-12)
    assert np.all(np.isneginf(np.delete(ours, classes, axis=1)))
    again = TreeEnsemble.from_arrays(trees.to_arrays())
    np.testing.assert_array_equal(again.log_proba(Xt), ours)


def test_boosted_tree_arrays_that_could_loop_or_overrun_are_refused():
    from hmmclf.model.decision.boosted import TreeEnsemble

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((200, 3)), rng.integers(0, 3, 200)
    from sklearn.ensemble import HistGradientBoostingClassifier

    arrays = TreeEnsemble.from_sklearn(HistGradientBoostingClassifier(max_iter=3).fit(X, y), np.arange(3)).to_arrays()
    looping = {**arrays, "left": np.zeros_like(arrays["left"])}
    with pytest.raises(ValueError, match="children must come after"):
        TreeEnsemble.from_arrays(looping)
    with pytest.raises(ValueError, match="right must hold integers"):
        TreeEnsemble.from_arrays({**arrays, "right": arrays["right"] + 1e6})
    with pytest.raises(ValueError, match="classes must be distinct"):
        TreeEnsemble.from_arrays({**arrays, "classes": np.zeros(3)})


def test_boosted_rule_fits_round_trips_and_reads_clip_statistics(tmp_path):
    X, y = length_clips(0, per_class=40)  # trees need 20 clips per leaf
    model = HMMClassifier(n_states=2, n_iter=3, decision="boosted").fit(X, y)
    report = model.fit_report_["decision"]
    n_features = X[0].shape[1]
    assert report["rule"] == "boosted" and report["trees"] > 0 and report["inputs"] == 5 + 4 * n_features
    loaded, _ = load_model(save_model(model, tmp_path / "m.npz", FeatureConfig(n_mfcc=1, deltas=2, extra=())))
    Xt, yt = length_clips(1, per_class=40)
    np.testing.assert_array_equal(loaded.decision_function(Xt), model.decision_function(Xt))
    assert model.score(Xt, yt) > 0.6  # the clip length carries the class here, and the trees read it
    # A set per inner fold decides, each grown on the other inner folds' held-out clips; their mean
    # log-probability plus the offsets is the rule's score.
    rule = model.decision_rule_
    clips = model._likelihoods(Xt, clip_stats=True)
    statistics = rule.statistics(clips)
    # The trees read each standardised feature's mean and SD over the clip, then (since 0.10) its
    # minimum and maximum: appended, so the columns an older model's trees read keep their places.
    standard = [model._standardize(x) for x in Xt]
    np.testing.assert_allclose(statistics[:, 5 : 5 + 2 * n_features], clip_statistics(standard))
    np.testing.assert_allclose(statistics[:, 5 + 2 * n_features :], [np.r_[s.min(0), s.max(0)] for s in standard])
    mean = np.mean([np.maximum(e.log_proba(statistics), -1e3) for e in rule.ensembles], axis=0)
    np.testing.assert_allclose(rule.scores(clips), mean + rule.offsets)
    # A model file of hmmclf 0.5-0.7 (format 4) holds one set under "decision.trees.": it still loads.
    arrays = dict(np.load(tmp_path / "m.npz", allow_pickle=False))
    meta = json.loads(str(arrays["meta"]))
    meta["format_version"] = 4
    arrays["meta"] = np.array(json.dumps(meta))
    later_sets = [k for k in arrays if k.startswith("decision.trees") and not k.startswith("decision.trees0.")]
    legacy = {k.replace("decision.trees0.", "decision.trees."): v for k, v in arrays.items() if k not in later_sets}
    np.savez(tmp_path / "old.npz", **legacy)
    old_model, _ = load_model(tmp_path / "old.npz")
    assert len(old_model.decision_rule_.ensembles) == 1
    again, _ = load_model(save_model(old_model, tmp_path / "again.npz", FeatureConfig(n_mfcc=1, deltas=2, extra=())))
    np.testing.assert_array_equal(again.decision_function(Xt), old_model.decision_function(Xt))
    old = old_model.decision_rule_
    np.testing.assert_allclose(
        old.scores(clips), np.maximum(rule.ensembles[0].log_proba(statistics), -1e3) + rule.offsets
    )


def test_compiled_offset_score_equals_the_numpy_score_ties_and_absent_classes_included():
    from hmmclf.model.decision.offsets import _offset_score
    from hmmclf.task.metrics import icbhi_score_from_indices

    rng = np.random.default_rng(0)
    for trial in range(500):
        n = int(rng.integers(1, 40))
        scores = rng.standard_normal((n, 4)).round(int(rng.integers(0, 3)))  # rounding makes ties
        if trial % 7 == 0:
            scores[:, 3] = -np.inf  # a class without an HMM
        y = rng.integers(0, 4, n) if trial % 5 else np.zeros(n, dtype=np.int64)
        offsets = rng.standard_normal(4).round(1)
        ours = _offset_score(scores, offsets, y)
        reference = icbhi_score_from_indices(y, np.argmax(scores + offsets, axis=1))
        assert ours == reference or (np.isnan(ours) and np.isnan(reference))


def test_fit_frames_draws_whole_clips_up_to_the_cap_and_counts_every_clip_in_the_prior():
    from hmmclf.model.label_hmm import _clip_subsample

    rng = np.random.default_rng(0)
    clips = [np.full((n, 2), i, dtype=np.float32) for i, n in enumerate(rng.integers(20, 60, size=40))]
    untouched = np.random.default_rng(5)
    assert _clip_subsample(clips, 0, untouched) is clips and _clip_subsample(clips, 10**6, untouched) is clips
    assert untouched.integers(1000) == np.random.default_rng(5).integers(1000)  # nothing was drawn
    drawn = _clip_subsample(clips, 500, np.random.default_rng(1))
    ids = [int(c[0, 0]) for c in drawn]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) < len(clips)  # whole clips, in their order
    assert 500 - 60 < sum(len(c) for c in drawn) <= 500
    assert ids == [int(c[0, 0]) for c in _clip_subsample(clips, 500, np.random.default_rng(1))]
    assert len(_clip_subsample(clips, 5, np.random.default_rng(1))) == 1  # never no clip at all

    X, y = toy_data(per_class=20)
    model = HMMClassifier(n_states=2, n_iter=3, fit_frames=300).fit(X, y)
    report = model.fit_report_["normal"]
    assert report["clips"] < report["clips_available"] == 20 and report["frames"] <= 300
    np.testing.assert_allclose(model.class_log_prior_, np.log(np.full(4, 0.25)))
    full = HMMClassifier(n_states=2, n_iter=3, fit_frames=0).fit(X, y).fit_report_["normal"]
    assert full["clips"] == full["clips_available"] == 20
    with pytest.raises(ValueError, match="fit_frames"):
        HMMClassifier(fit_frames=-1).fit(X, y)


def test_feature_candidates_share_one_inner_fit_and_score_through_the_exact_marginal(monkeypatch):
    import hmmclf.model.classifier as classifier_module

    fits = []
    original = classifier_module.fit_label_hmm_task
    monkeypatch.setattr(classifier_module, "fit_label_hmm_task", lambda task: fits.append(task) or original(task))
    X, y, groups = feature_choice_data(0, "cepstra")
    model = HMMClassifier.from_config(ModelConfig(n_states=2, n_iter=4, features="auto"), feature_sets=FEATURE_SETS)
    model.fit(X, y, groups=groups)
    # The inner folds and the final fit, four class HMMs each, all on every column: not one fit per candidate.
    assert len(fits) == (model.inner_folds + 1) * len(CLASSES)
    assert all(task.sequences[0].shape[1] == 4 for task in fits)
    assert model.fit_report_["features"]["chosen"] == "cepstra" and model.feature_columns_.tolist() == [0, 1]
    # The kept HMMs read columns 0-1 only: each is an ordinary HMM on those columns, standardised alike.
    Xt, _, _ = feature_choice_data(1, "cepstra")
    for k, hmm in enumerate(model.hmms_):
        assert hmm.means_.shape == (2, 2)
        for clip, total in zip(Xt[:5], model.log_likelihood(Xt[:5])[:, k]):
            standard = (clip[:, :2].astype(float) - model.feature_mean_) / model.feature_scale_
            assert hmm.score(standard) == pytest.approx(total, rel=1e-9)


def test_column_mean_std_equals_numpy_on_the_concatenated_frames():
    from hmmclf.data.features import column_mean_std

    rng = np.random.default_rng(3)
    clips = [(rng.standard_normal((int(n), 5)) * 3 + 7).astype(np.float32) for n in rng.integers(1, 80, size=60)]
    mean, std = column_mean_std(clips)
    frames = np.concatenate(clips).astype(np.float64)
    np.testing.assert_allclose(mean, frames.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, frames.std(axis=0), rtol=1e-10)


def test_scoring_in_blocks_of_clips_gives_the_same_numbers(monkeypatch):
    import hmmclf.model.classifier as classifier_module
    from hmmclf.model.classifier import _clip_blocks

    assert [b.tolist() for b in _clip_blocks(np.array([30, 30, 50, 10, 5]), 60)] == [[0, 1], [2, 3], [4]]
    assert [b.tolist() for b in _clip_blocks(np.array([80, 10]), 60)] == [[0], [1]]  # a long clip alone
    X, y = toy_data()
    model = HMMClassifier(n_states=2, n_iter=3).fit(X, y)
    whole = model._likelihoods(X, frame_increments=True, clip_stats=True)
    monkeypatch.setattr(classifier_module, "SCORING_BLOCK_FRAMES", 100)
    blocked = model._likelihoods(X, frame_increments=True, clip_stats=True)
    for name in ("log_likelihood", "base_scores", "frame_increments", "clip_statistics"):
        np.testing.assert_allclose(getattr(blocked, name), getattr(whole, name), rtol=1e-12, atol=1e-12)
