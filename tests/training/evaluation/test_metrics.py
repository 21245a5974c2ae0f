"""Known-answer and property tests for training.evaluation.metrics (no Django)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.evaluation import (
    binary_metrics,
    evaluate_predictions,
    multiclass_metrics,
    roc_auc,
    roc_curve,
    wilson_interval,
)

LABELS = ["NORMAL", "PNEUMONIA_BACTERIAL", "PNEUMONIA_VIRAL", "COVID19"]


def brute_force_auc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y], s[~y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (pos.size * neg.size)


def assert_json_clean(obj: object) -> None:
    json.dumps(obj, allow_nan=False)


# --- binary_metrics -------------------------------------------------------------------


def test_binary_metrics_matches_hand_computed_confusion_counts() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0], dtype=bool)
    s = np.array([0.9, 0.6, 0.2, 0.7, 0.3, 0.1, 0.5])
    m = binary_metrics(y, s, 0.5, n_bootstrap=0)
    # 0.5 is flagged because the rule is score >= threshold.
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 1, 2, 2)
    assert (m["n_pos"], m["n_neg"], m["n"]) == (3, 4, 7)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(2 / 4)
    assert m["ppv"] == pytest.approx(2 / 4)
    assert m["npv"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(4 / 7)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))
    assert m["auc"] == pytest.approx(brute_force_auc(y, s))
    assert m["threshold"] == 0.5


def test_binary_metrics_wilson_cis_bracket_the_proportions() -> None:
    rng = np.random.default_rng(3)
    y = rng.random(300) < 0.4
    s = np.clip(y * 0.3 + rng.random(300) * 0.7, 0, 1)
    m = binary_metrics(y, s, 0.5, n_bootstrap=200)
    for name in ("sensitivity", "specificity", "ppv", "npv", "accuracy", "auc"):
        lo, hi = m["ci"][name]
        assert 0.0 <= lo <= m[name] <= hi <= 1.0, name
    assert m["ci_method"]["proportions"] == "wilson"
    assert_json_clean(m)


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_equals_brute_force_pairwise_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.random(40) < 0.5
    y[:2] = [True, False]
    s = rng.integers(0, 6, size=40).astype(float)  # few distinct values: many ties
    assert roc_auc(y, s) == pytest.approx(brute_force_auc(y, s), abs=1e-12)


def test_auc_is_half_for_constant_scores_and_one_for_perfect_separation() -> None:
    y = np.array([True, False, True, False, False])
    assert roc_auc(y, np.full(5, 0.3)) == 0.5
    assert roc_auc(y, y.astype(float)) == 1.0
    assert roc_auc(y, 1.0 - y) == 0.0


def test_binary_metrics_without_positives_returns_none_not_nan() -> None:
    y = np.zeros(6, dtype=bool)
    m = binary_metrics(y, np.linspace(0, 1, 6), 0.5, n_bootstrap=50)
    assert m["sensitivity"] is None and m["auc"] is None and m["npv"] == 1.0
    assert m["ci"]["sensitivity"] is None and m["ci"]["auc"] is None
    assert m["specificity"] == pytest.approx(3 / 6)
    assert_json_clean(m)


def test_binary_metrics_without_negatives_or_samples_does_not_crash() -> None:
    m = binary_metrics(np.ones(4, dtype=bool), np.array([0.1, 0.2, 0.8, 0.9]), 0.5)
    assert m["specificity"] is None and m["auc"] is None and m["sensitivity"] == 0.5
    empty = binary_metrics(np.zeros(0, dtype=bool), np.zeros(0), 0.5)
    assert empty["n"] == 0 and empty["accuracy"] is None and empty["f1"] is None
    assert_json_clean([m, empty])


def test_binary_metrics_rejects_mismatched_or_non_finite_input() -> None:
    with pytest.raises(ValueError):
        binary_metrics(np.array([True, False]), np.array([0.1]), 0.5)
    with pytest.raises(ValueError):
        binary_metrics(np.array([True, False]), np.array([0.1, np.nan]), 0.5)
    with pytest.raises(ValueError):
        binary_metrics(np.array([2, 0]), np.array([0.1, 0.2]), 0.5)


def test_bootstrap_auc_ci_is_seeded_reproducible_and_contains_estimate() -> None:
    rng = np.random.default_rng(7)
    y = rng.random(200) < 0.5
    s = y * 0.5 + rng.normal(size=200)
    a = binary_metrics(y, s, 0.0, n_bootstrap=300, seed=11)
    b = binary_metrics(y, s, 0.0, n_bootstrap=300, seed=11)
    c = binary_metrics(y, s, 0.0, n_bootstrap=300, seed=12)
    assert a["ci"]["auc"] == b["ci"]["auc"]
    assert a["ci"]["auc"] != c["ci"]["auc"]
    lo, hi = a["ci"]["auc"]
    assert lo < a["auc"] < hi
    assert binary_metrics(y, s, 0.0, n_bootstrap=0)["ci"]["auc"] is None


# --- Wilson ---------------------------------------------------------------------------


def test_wilson_interval_known_value_and_edges() -> None:
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(1 - 0.2775, abs=1e-4)
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


@given(st.integers(min_value=1, max_value=5000), st.data())
def test_wilson_interval_properties(total: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(min_value=0, max_value=total))
    lo, hi = wilson_interval(k, total)
    assert 0.0 <= lo <= k / total <= hi <= 1.0
    mirror_lo, mirror_hi = wilson_interval(total - k, total)
    assert mirror_lo == pytest.approx(1 - hi, abs=1e-12)
    assert mirror_hi == pytest.approx(1 - lo, abs=1e-12)
    wide_lo, wide_hi = wilson_interval(k, total)
    narrow_lo, narrow_hi = wilson_interval(4 * k, 4 * total)
    assert narrow_hi - narrow_lo < wide_hi - wide_lo


# --- AUC properties / ROC curve -------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 30)), min_size=2, max_size=60))
def test_auc_in_unit_interval_and_invariant_to_monotone_transforms(pairs: list) -> None:
    y = np.array([p[0] for p in pairs], dtype=bool)
    s = np.array([p[1] for p in pairs], dtype=float)
    auc = roc_auc(y, s)
    if y.all() or not y.any():
        assert auc is None
        return
    assert 0.0 <= auc <= 1.0
    assert roc_auc(y, np.exp(s / 7.0) * 3 - 2) == pytest.approx(auc, abs=1e-12)
    assert roc_auc(y, s**3 + s) == pytest.approx(auc, abs=1e-12)
    assert roc_auc(y, -s) == pytest.approx(1.0 - auc, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_roc_curve_area_equals_auc_and_points_follow_threshold_rule(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.random(50) < 0.4
    y[:2] = [True, False]
    s = np.round(rng.random(50), 1)
    fpr, tpr, thr = roc_curve(y, s)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.isinf(thr[0]) and np.all(np.diff(thr) < 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(y, s), abs=1e-12)
    for f, t, th in zip(fpr[1:], tpr[1:], thr[1:], strict=False):
        assert t == pytest.approx(np.mean(s[y] >= th))
        assert f == pytest.approx(np.mean(s[~y] >= th))


def test_roc_curve_raises_when_a_class_is_absent() -> None:
    with pytest.raises(ValueError):
        roc_curve(np.ones(3, dtype=bool), np.array([0.1, 0.2, 0.3]))


# --- multiclass -----------------------------------------------------------------------


def _onehot(predicted: list[str]) -> np.ndarray:
    probs = np.full((len(predicted), len(LABELS)), 0.05)
    for i, label in enumerate(predicted):
        probs[i, LABELS.index(label)] = 0.85
    return probs


def test_multiclass_extra_ground_truth_label_is_a_confusion_row_but_not_in_accuracy() -> None:
    truth = ["NORMAL", "NORMAL", "PNEUMONIA_BACTERIAL", "PNEUMONIA_VIRAL", "COVID19", "PNEUMONIA", "PNEUMONIA"]
    predicted = [
        "NORMAL",
        "PNEUMONIA_VIRAL",
        "PNEUMONIA_BACTERIAL",
        "PNEUMONIA_BACTERIAL",
        "COVID19",
        "PNEUMONIA_BACTERIAL",
        "NORMAL",
    ]
    m = multiclass_metrics(truth, _onehot(predicted), LABELS)
    assert m["row_labels"] == [*LABELS, "PNEUMONIA"]
    assert m["col_labels"] == LABELS
    assert m["confusion_matrix"] == [
        [1, 0, 1, 0],
        [0, 1, 0, 0],
        [0, 1, 0, 0],
        [0, 0, 0, 1],
        [1, 1, 0, 0],
    ]
    assert m["accuracy"] == pytest.approx(3 / 5)  # the two PNEUMONIA rows are excluded
    assert (m["n"], m["n_in_schema"], m["n_out_of_schema"]) == (7, 5, 2)
    bact = m["per_class"]["PNEUMONIA_BACTERIAL"]
    assert bact["precision"] == pytest.approx(1 / 2) and bact["recall"] == 1.0
    assert bact["support"] == 1
    assert m["per_class"]["PNEUMONIA_VIRAL"]["precision"] == 0.0
    assert m["per_class"]["COVID19"]["auc_ovr"] == 1.0
    assert m["macro"]["recall"] == pytest.approx((0.5 + 1 + 0 + 1) / 4)
    assert_json_clean(m)


def test_multiclass_metrics_validates_shapes() -> None:
    with pytest.raises(ValueError):
        multiclass_metrics(["NORMAL"], np.ones((1, 3)) / 3, LABELS)
    with pytest.raises(ValueError):
        multiclass_metrics(["NORMAL"], np.ones((1, 2)) / 2, ["NORMAL", "NORMAL"])


# --- evaluate_predictions -------------------------------------------------------------


def _synthetic(n: int, seed: int) -> tuple[list[str], np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    truth = list(rng.choice([*LABELS, "PNEUMONIA"], size=n))
    logits = rng.normal(size=(n, len(LABELS)))
    for i, t in enumerate(truth):
        logits[i, LABELS.index(t) if t in LABELS else 1] += 2.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return truth, probs, list(rng.choice(["hospital_a", "hospital_b"], size=n))


def test_evaluate_predictions_combines_sections_and_is_json_clean() -> None:
    truth, probs, sources = _synthetic(300, seed=1)
    result = evaluate_predictions(truth, probs, LABELS, threshold=0.5, sources=sources, n_bootstrap=100)
    assert_json_clean(result)
    binary = result["binary"]
    for key in ("sensitivity", "specificity", "auc", "accuracy"):
        assert result[key] == binary[key]
    assert result["n"] == 300 and result["threshold"] == 0.5
    # Out-of-schema PNEUMONIA counts as abnormal in the binary task.
    assert binary["n_pos"] == sum(t != "NORMAL" for t in truth)
    expected = binary_metrics(np.array(truth) != "NORMAL", 1 - probs[:, 0], 0.5, n_bootstrap=100)
    assert binary == expected
    assert set(result["per_source"]) == {"hospital_a", "hospital_b"}
    per_a = result["per_source"]["hospital_a"]
    assert "ci" not in per_a and 0.0 <= per_a["multiclass_accuracy"] <= 1.0
    assert sum(s["n"] for s in result["per_source"].values()) == 300
    calibration = result["calibration"]
    assert set(calibration) == {"ece", "brier", "ece_abnormal", "brier_abnormal"}
    assert all(0.0 <= v <= 2.0 for v in calibration.values())


def test_evaluate_predictions_degenerate_all_normal_is_json_clean() -> None:
    probs = np.tile([0.7, 0.1, 0.1, 0.1], (5, 1))
    result = evaluate_predictions(["NORMAL"] * 5, probs, LABELS, threshold=0.5, sources=["a"] * 5)
    assert result["sensitivity"] is None and result["auc"] is None
    assert result["specificity"] == 1.0 and result["per_source"]["a"]["sensitivity"] is None
    assert_json_clean(result)


def test_evaluate_predictions_requires_normal_label_and_matching_sources() -> None:
    with pytest.raises(ValueError):
        evaluate_predictions(["A"], np.array([[0.5, 0.5]]), ["A", "B"], threshold=0.5)
    with pytest.raises(ValueError):
        evaluate_predictions(["NORMAL"], np.array([[0.5, 0.5]]), ["NORMAL", "B"], threshold=0.5, sources=["a", "b"])
