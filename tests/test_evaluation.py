import json

import numpy as np
import pandas as pd
import pytest

from hmmclf.data.extraction import extract_corpus
from hmmclf.evaluation.cv import cross_validate
from hmmclf.model.classifier import HMMClassifier
from hmmclf.task.classes import CLASSES
from hmmclf.task.metrics import bootstrap_score_interval, icbhi_metrics, icbhi_score_from_indices
from hmmclf.task.splits import make_folds


def test_icbhi_definitions():
    y_true = np.array(["normal"] * 4 + ["crackle"] * 2 + ["wheeze"] * 2 + ["both"] * 2)
    y_pred = np.array(
        ["normal", "normal", "normal", "wheeze", "crackle", "normal", "wheeze", "wheeze", "crackle", "both"]
    )
    m = icbhi_metrics(y_true, y_pred)
    assert m["specificity"] == pytest.approx(0.75)
    # Abnormal hits: crackle 1, wheeze 2, both 1 ("both" predicted as "crackle" is a miss) -> 4/6.
    assert m["sensitivity"] == pytest.approx(4 / 6)
    assert m["score"] == pytest.approx((0.75 + 4 / 6) / 2)
    assert m["confusion_matrix"][3] == [0, 1, 0, 1]
    assert m["per_class"]["wheeze"]["recall"] == 1.0
    assert m["per_class"]["wheeze"]["precision"] == pytest.approx(2 / 3)


def test_always_normal_scores_one_half():
    y = np.array(["normal", "crackle", "wheeze", "both", "normal"])
    m = icbhi_metrics(y, np.full(5, "normal"))
    assert (m["score"], m["sensitivity"], m["specificity"]) == (0.5, 0.0, 1.0)


def test_metrics_refuse_unknown_states():
    with pytest.raises(ValueError, match="unknown classes"):
        icbhi_metrics(np.array(["normal"]), np.array(["rhonchi"]))


def test_grouped_folds_keep_groups_apart():
    rng = np.random.default_rng(0)
    states = rng.choice(["normal", "crackle", "wheeze", "both"], size=200)
    groups = rng.integers(0, 20, size=200).astype(str)
    folds = make_folds(states, groups, 5, seed=0)
    assert len(folds) == 5
    covered = np.concatenate([test for _, test in folds])
    assert sorted(covered.tolist()) == list(range(200))
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
    assert [t.tolist() for _, t in make_folds(states, groups, 5, seed=0)] == [t.tolist() for _, t in folds]
    with pytest.raises(ValueError, match="only 3 groups"):
        make_folds(states[:30], np.array(["a", "b", "c"] * 10), 5, seed=0)


def test_cross_validate_on_a_small_corpus(corpus, tmp_path):
    features = extract_corpus(corpus / "train", corpus / "train.csv", tmp_path / "f", n_jobs=1).features
    result = cross_validate(features, HMMClassifier(n_states=2, n_iter=5), n_folds=2, seed=0, n_jobs=1)
    assert result.grouped and result.grouping.column == "patient_id"
    assert len(result.predictions) == len(features)
    assert set(result.baselines) == {"always_normal", "prior_random", "gbm_clip_stats"}
    assert result.baselines["always_normal"]["score"] == 0.5
    for fold in result.folds:
        assert fold.train_size + fold.test_size == len(features)
        assert fold.test_groups
    # The toy classes are easy: far above the always-normal baseline.
    assert result.metrics["score"] > 0.7


def test_ungrouped_cv_warns(corpus, tmp_path):
    features = extract_corpus(corpus / "train", corpus / "train.csv", tmp_path / "f", groups="none", n_jobs=1).features
    result = cross_validate(features, HMMClassifier(n_states=2, n_iter=3), n_folds=2, seed=0, n_jobs=1, baselines=False)
    assert not result.grouped and "FOLDS NOT GROUPED" in result.warnings[0]
    assert result.leakage["warning"].startswith("LEAKAGE") and result.leakage["gap"] == 0


def test_bootstrap_interval_contains_the_score():
    rng = np.random.default_rng(0)
    y = rng.choice(["normal", "crackle", "wheeze", "both"], size=300)
    pred = np.where(rng.random(300) < 0.6, y, "normal")
    groups = rng.integers(0, 30, 300).astype(str)
    ci = bootstrap_score_interval(y, pred, groups, n_boot=200, seed=0)
    score = icbhi_metrics(y, pred)["score"]
    assert ci["low"] <= score <= ci["high"] and ci["resampled"] == "groups"


@pytest.mark.parametrize("seed", range(6))
def test_score_from_indices_equals_icbhi_metrics(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    # Some draws hold no normal clip, or no abnormal one: the NaN-aware mean must agree too.
    true = rng.integers(0 if seed % 3 else 1, 1 if seed == 5 else 4, n)
    pred = rng.integers(0, 4, n)
    states = np.array(CLASSES)
    expected = icbhi_metrics(states[true], states[pred])["score"]
    assert icbhi_score_from_indices(true, pred) == pytest.approx(expected, nan_ok=True)


def test_cross_validate_gives_the_same_results_on_one_or_two_processes(corpus, tmp_path):
    features = extract_corpus(corpus / "train", corpus / "train.csv", tmp_path / "f", n_jobs=1).features
    runs = [
        cross_validate(features, HMMClassifier(n_states=2, n_iter=3), n_folds=2, seed=0, n_jobs=jobs) for jobs in (1, 2)
    ]
    assert runs[0].predictions.equals(runs[1].predictions)
    # (JSON text, so that NaN rates compare equal.)
    assert json.dumps(runs[0].baselines, sort_keys=True) == json.dumps(runs[1].baselines, sort_keys=True)


def test_cv_runs_on_data_without_a_both_clip(corpus, tmp_path):
    labels = pd.read_csv(corpus / "train.csv")
    labels[labels["label"] != "both"].to_csv(corpus / "train.csv", index=False)
    features = extract_corpus(corpus / "train", corpus / "train.csv", tmp_path / "f", n_jobs=1).features
    assert features.counts()["both"] == 0
    result = cross_validate(features, HMMClassifier(n_states=2, n_iter=3), n_folds=2, seed=0, n_jobs=1)
    assert "both" not in set(result.predictions["predicted"]) and result.metrics["score"] > 0.6


def test_sprsound_score_is_the_mean_of_the_average_and_harmonic_mean():
    from hmmclf.task.metrics import icbhi_metrics, sprsound_score

    assert sprsound_score(0.0, 1.0) == pytest.approx(0.25)  # always normal: the harmonic term is 0
    assert sprsound_score(0.6, 0.8) == pytest.approx((0.7 + 2 * 0.6 * 0.8 / 1.4) / 2)
    assert np.isnan(sprsound_score(float("nan"), 0.5))
    m = icbhi_metrics(
        np.array(["normal", "normal", "crackle", "wheeze"]), np.array(["normal", "crackle", "crackle", "normal"])
    )
    assert m["sprsound_score"] == pytest.approx(sprsound_score(0.5, 0.5))


def test_a_class_the_model_never_predicts_is_flagged():
    from hmmclf.evaluation.cv import rarely_predicted

    true = np.array(["normal"] * 50 + ["crackle"] * 20 + ["both"] * 12)
    predicted = np.array(["normal"] * 55 + ["crackle"] * 26 + ["both"] * 1)
    notes = rarely_predicted(true, predicted)
    assert len(notes) == 1 and "'both' for 1 clips" in notes[0] and "12 clips are both" in notes[0]
    assert rarely_predicted(true, true) == []


def test_cohort_spread_is_wider_for_small_cohorts_and_collapses_for_identical_groups():
    from hmmclf.evaluation.per_group import cohort_spread, describe_cohort

    def row(name, normal, abnormal, sp, se):
        return {"group": name, "normal": normal, "abnormal": abnormal, "specificity": sp, "sensitivity": se}

    same = [row(str(i), 10, 10, 0.8, 0.4) for i in range(12)]
    flat = cohort_spread(same, 3)
    assert flat["low"] == pytest.approx(0.6) and flat["high"] == pytest.approx(0.6) and flat["draws"] == 2000
    mixed = [row(str(i), 10, 10, (i % 4) / 4, 1 - (i % 3) / 3) for i in range(40)]
    small, large = cohort_spread(mixed, 3), cohort_spread(mixed, 30)
    assert small["low"] <= small["median"] <= small["high"]
    assert small["high"] - small["low"] > large["high"] - large["low"] > 0
    assert cohort_spread(mixed, 40) is None and cohort_spread(mixed, 3, seed=1) != small
    assert cohort_spread(mixed, 3) == small  # seeded
    # Groups with normal clips only give no Score alone; cohorts that hold no abnormal clip are left out.
    only_normal = [row(str(i), 10, 0, 0.5, None) for i in range(5)] + [row("x", 5, 5, 0.5, 0.5)]
    assert cohort_spread(only_normal, 2)["draws"] < 2000
    assert describe_cohort(small, "patients").startswith("a new cohort of 3 patients like these can expect a Score")


def test_the_folds_table_names_each_folds_rule_its_inner_score_and_its_features():
    from hmmclf.evaluation.report_text import configured_features, features_chosen, rule_chosen

    boosted = {"fit_report": {"decision": {"rule": "boosted", "inner_score": 0.771}}}
    auto = {
        "fit_report": {
            "decision": {"rule": "auto", "chosen": "tuned-length", "inner_score": 0.6},
            "features": {"chosen": "all", "inner_scores": {"cepstra": 0.5, "all": 0.6}},
        }
    }
    assert rule_chosen(boosted) == "boosted (inner 77.1)" and rule_chosen(auto) == "tuned-length"
    assert rule_chosen({"fit_report": {}}) == "argmax"
    report = {"config": {"model_params": {"features": "all"}}}
    assert features_chosen(boosted, configured_features(report)) == "all"
    assert features_chosen(boosted, configured_features({})) == "as configured"
    assert features_chosen(auto, "all") == "all (inner cepstra 50.0, all 60.0)"
