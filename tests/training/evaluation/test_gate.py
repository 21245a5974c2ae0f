"""Tests for training.evaluation.gate.promotion_decision (champion/challenger gate)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from training.evaluation import evaluate_predictions, promotion_decision

LABELS = ["NORMAL", "PNEUMONIA_BACTERIAL", "PNEUMONIA_VIRAL", "COVID19"]


def _evaluation(
    sensitivity: float,
    auc: float,
    auc_ci: list[float] | None,
    *,
    threshold: float = 0.5,
    n_pos: int = 100,
    n_neg: int = 100,
) -> dict:
    """The part of an evaluate_predictions() result the gate reads, with chosen figures."""
    return {
        "sensitivity": sensitivity,
        "auc": auc,
        "binary": {
            "threshold": threshold,
            "sensitivity": sensitivity,
            "specificity": 0.7,
            "auc": auc,
            "n": n_pos + n_neg,
            "n_pos": n_pos,
            "n_neg": n_neg,
            "ci": {"auc": auc_ci},
        },
    }


CHAMPION = _evaluation(0.95, 0.90, [0.86, 0.94])  # AUC margin 0.04 -> floor 0.86


def test_promotes_when_there_is_no_champion() -> None:
    decision = promotion_decision(_evaluation(0.5, 0.6, None), None)
    assert decision["promote"] is True
    assert "no champion" in decision["reasons"][0]
    json.dumps(decision, allow_nan=False)


def test_promotes_when_candidate_is_better() -> None:
    decision = promotion_decision(_evaluation(0.97, 0.93, [0.9, 0.96]), CHAMPION)
    assert decision["promote"] is True
    comparison = decision["comparison"]
    assert comparison["checks"] == {"comparable": True, "sensitivity": True, "auc": True}
    assert comparison["sensitivity_delta"] == pytest.approx(0.02)
    assert comparison["auc_margin"] == pytest.approx(0.04)
    assert comparison["auc_floor"] == pytest.approx(0.86)
    json.dumps(decision, allow_nan=False)


def test_refuses_when_sensitivity_is_lower_even_with_better_auc() -> None:
    decision = promotion_decision(_evaluation(0.94, 0.99, [0.98, 1.0]), CHAMPION)
    assert decision["promote"] is False
    assert decision["comparison"]["checks"]["sensitivity"] is False
    assert any("Sensitivity" in r and "below" in r for r in decision["reasons"])


def test_refuses_when_auc_is_worse_beyond_the_champion_ci() -> None:
    decision = promotion_decision(_evaluation(0.96, 0.85, [0.8, 0.9]), CHAMPION)
    assert decision["promote"] is False
    assert decision["comparison"]["checks"] == {"comparable": True, "sensitivity": True, "auc": False}
    assert any("AUC" in r and "worse" in r for r in decision["reasons"])


def test_promotes_when_auc_is_slightly_lower_but_within_the_champion_ci() -> None:
    decision = promotion_decision(_evaluation(0.95, 0.88, [0.84, 0.92]), CHAMPION)
    assert decision["promote"] is True
    assert decision["comparison"]["auc_delta"] == pytest.approx(-0.02)


def test_champion_without_auc_ci_allows_no_auc_margin() -> None:
    champion = _evaluation(0.95, 0.90, None)
    assert promotion_decision(_evaluation(0.95, 0.8999, None), champion)["promote"] is False
    assert promotion_decision(_evaluation(0.95, 0.90, None), champion)["promote"] is True


def test_refuses_evaluations_from_different_validation_sets() -> None:
    decision = promotion_decision(_evaluation(0.99, 0.99, None, n_pos=90), CHAMPION)
    assert decision["promote"] is False
    assert "same validation set" in decision["reasons"][0]


def test_refuses_when_candidate_metrics_are_undefined() -> None:
    candidate = _evaluation(0.95, 0.9, None)
    candidate["binary"]["auc"] = None
    assert promotion_decision(candidate, CHAMPION)["promote"] is False


def test_rejects_input_that_is_not_an_evaluation() -> None:
    with pytest.raises(ValueError):
        promotion_decision({"auc": 0.9}, None)


def test_gate_end_to_end_on_a_shared_validation_set() -> None:
    rng = np.random.default_rng(5)
    n = 400
    truth = list(rng.choice(LABELS, size=n))
    true_idx = np.array([LABELS.index(t) for t in truth])

    def model_probs(signal: float) -> np.ndarray:
        logits = rng.normal(size=(n, 4))
        logits[np.arange(n), true_idx] += signal
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    weak = evaluate_predictions(truth, model_probs(0.5), LABELS, threshold=0.5, n_bootstrap=200)
    strong = evaluate_predictions(truth, model_probs(3.0), LABELS, threshold=0.5, n_bootstrap=200)
    assert promotion_decision(strong, weak)["promote"] is True
    assert promotion_decision(weak, strong)["promote"] is False
    # An identical re-evaluation is "not worse", so it passes the gate.
    assert promotion_decision(copy.deepcopy(strong), strong)["promote"] is True
    json.dumps(promotion_decision(weak, strong), allow_nan=False)
