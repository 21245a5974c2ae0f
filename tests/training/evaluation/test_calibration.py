"""Tests for training.evaluation.calibration: ECE, Brier, reliability data, temperature."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import softmax

from training.evaluation import (
    apply_temperature,
    binary_brier_score,
    binary_expected_calibration_error,
    brier_score,
    expected_calibration_error,
    fit_platt,
    fit_temperature,
    negative_log_likelihood,
    probs_to_logits,
    reliability_curve,
)


def _calibrated_binary() -> tuple[np.ndarray, np.ndarray]:
    """Two score levels whose observed positive rates equal the scores exactly."""
    scores = np.r_[np.full(10, 0.3), np.full(10, 0.8)]
    y = np.r_[np.arange(10) < 3, np.arange(10) < 8]
    return y, scores


def test_ece_is_zero_for_perfectly_calibrated_bins() -> None:
    y, scores = _calibrated_binary()
    assert binary_expected_calibration_error(y, scores) == pytest.approx(0.0, abs=1e-12)
    # Top-label: confidence 0.7 and exactly 7 of 10 argmax predictions correct.
    probs = np.tile([0.7, 0.3], (10, 1))
    y_idx = np.r_[np.zeros(7, int), np.ones(3, int)]
    assert expected_calibration_error(y_idx, probs) == pytest.approx(0.0, abs=1e-12)


def test_ece_is_large_for_overconfident_predictions() -> None:
    probs = np.tile([0.99, 0.005, 0.005], (100, 1))
    y_idx = np.r_[np.zeros(50, int), np.ones(50, int)]  # right only half the time
    assert expected_calibration_error(y_idx, probs) == pytest.approx(0.49)


def test_ece_matches_hand_computation_with_two_bins() -> None:
    scores = np.array([0.1, 0.2, 0.9, 0.9])
    y = np.array([False, True, True, True])
    # Bin (0, 0.5]: mean score 0.15, positive rate 0.5; bin (0.5, 1]: 0.9 vs 1.0.
    expected = 0.5 * abs(0.5 - 0.15) + 0.5 * abs(1.0 - 0.9)
    assert binary_expected_calibration_error(y, scores, n_bins=2) == pytest.approx(expected)


def test_reliability_curve_bins_include_zero_and_one_and_are_json_clean() -> None:
    y = np.array([False, False, True, True])
    curve = reliability_curve(y, np.array([0.0, 0.05, 0.95, 1.0]), n_bins=10)
    assert curve["kind"] == "binary" and sum(curve["count"]) == 4
    assert curve["count"][0] == 2 and curve["count"][-1] == 2
    assert curve["mean_predicted"][5] is None and curve["observed"][0] == 0.0
    assert len(curve["bin_edges"]) == 11
    json.dumps(curve, allow_nan=False)
    top = reliability_curve(np.array([0, 1]), np.array([[0.8, 0.2], [0.6, 0.4]]))
    assert top["kind"] == "top_label" and sum(top["count"]) == 2


def test_brier_scores_known_values() -> None:
    assert binary_brier_score(np.array([True, False]), np.array([0.8, 0.4])) == pytest.approx((0.04 + 0.16) / 2)
    probs = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert brier_score(np.array([0, 1]), probs) == pytest.approx((0.0 + 0.5) / 2)


def _synthetic_logits(t_true: float, n: int = 20000, k: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(n, k))
    p = softmax(logits / t_true, axis=1)
    # Inverse-CDF sampling of one label per row from its true distribution.
    y = (rng.random((n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    return logits, np.minimum(y, k - 1)


@pytest.mark.parametrize("t_true", [0.7, 1.0, 2.5])
def test_fit_temperature_recovers_known_temperature(t_true: float) -> None:
    logits, y = _synthetic_logits(t_true)
    assert fit_temperature(logits, y) == pytest.approx(t_true, rel=0.08)


def test_temperature_scaling_reduces_nll_and_ece_of_overconfident_probs() -> None:
    logits, y = _synthetic_logits(2.5, seed=1)
    overconfident = softmax(logits, axis=1)  # model acts as if T were 1
    t = fit_temperature(probs_to_logits(overconfident), y)
    scaled = apply_temperature(probs_to_logits(overconfident), t)
    assert t > 1.5
    assert negative_log_likelihood(logits, y, t) < negative_log_likelihood(logits, y, 1.0)
    before = expected_calibration_error(y, overconfident)
    after = expected_calibration_error(y, scaled)
    assert before > 0.1 and after < before / 3


def test_apply_temperature_and_probs_to_logits_round_trip() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5]])
    recovered = apply_temperature(probs_to_logits(probs), 1.0)
    np.testing.assert_allclose(recovered, probs, atol=1e-12)
    flat = apply_temperature(probs_to_logits(probs), 1e6)
    np.testing.assert_allclose(flat, np.full_like(probs, 1 / 3), atol=1e-5)
    with pytest.raises(ValueError):
        apply_temperature(probs, 0.0)


def test_calibration_inputs_are_validated() -> None:
    with pytest.raises(ValueError):
        expected_calibration_error(np.array([0, 3]), np.array([[0.5, 0.5], [0.5, 0.5]]))
    with pytest.raises(ValueError):
        fit_temperature(np.zeros((0, 3)), np.zeros(0, int))
    with pytest.raises(ValueError):
        binary_expected_calibration_error(np.array([True]), np.array([np.nan]))


def test_fit_platt_recovers_a_known_logistic_calibration() -> None:
    rng = np.random.default_rng(5)
    s = rng.normal(0, 2, 40_000)
    y = rng.random(s.size) < 1 / (1 + np.exp(-(0.5 * s - 1.0)))
    scale, bias = fit_platt(s, y)
    assert scale == pytest.approx(0.5, abs=0.03) and bias == pytest.approx(-1.0, abs=0.05)


def test_fit_platt_weights_count_like_repeated_samples_and_inputs_are_checked() -> None:
    rng = np.random.default_rng(6)
    s = rng.normal(0, 1, 400)
    y = rng.random(400) < 1 / (1 + np.exp(-2 * s))
    weights = np.where(y, 3.0, 1.0)
    repeated = np.r_[s, s[y], s[y]], np.r_[y, y[y], y[y]]
    assert fit_platt(s, y, weights=weights) == pytest.approx(fit_platt(*repeated), abs=1e-4)
    with pytest.raises(ValueError):
        fit_platt(s, np.ones(400, bool))
    with pytest.raises(ValueError):
        fit_platt([], [])
    # An inverted score is not "repaired" by a negative scale (that would flip the ranking).
    assert fit_platt(-s, y)[0] == pytest.approx(0.05)
