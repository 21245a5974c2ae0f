"""Tests for training.evaluation.gate: promotion_decision (champion/challenger on one evaluation) and gate_decision (which evidence decides)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from training.evaluation import GATE_RULE, evaluate_predictions, gate_decision, promotion_decision

LABELS = ["NORMAL", "PNEUMONIA_BACTERIAL", "PNEUMONIA_VIRAL", "COVID19"]


def _evaluation(
    sensitivity: float,
    auc: float,
    auc_ci: list[float] | None,
    *,
    threshold: float = 0.5,
    n_pos: int = 100,
    n_neg: int = 100,
    specificity: float = 0.7,
) -> dict:
    """The part of an evaluate_predictions() result the gate reads, with chosen figures."""
    return {
        "sensitivity": sensitivity,
        "auc": auc,
        "binary": {
            "threshold": threshold,
            "sensitivity": sensitivity,
            "specificity": specificity,
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


# --- gate_decision: which evidence decides -------------------------------------------


def _unseen(
    sensitivity: float, auc: float, auc_ci: list[float] | None, *, n_pos: int = 300, specificity: float = 0.7
) -> dict:
    """A version's metrics["unseen_sources"] with chosen pooled figures."""
    pooled = _evaluation(sensitivity, auc, auc_ci, n_pos=n_pos, n_neg=200, specificity=specificity)
    return {"pooled": pooled, "per_source": {}}


# The situation of the shipped cxr_net model: strong on the sample's own hospitals,
# never measured on one it did not train on.
FLATTERED_CHAMPION_VAL = _evaluation(0.97, 0.974, [0.95, 0.99])


def test_unseen_source_evidence_decides_over_a_flattering_validation_split() -> None:
    """A candidate selected on unseen sources replaces a champion with no such figures
    when it clears the floors, although its validation-split AUC is lower (the old gate,
    promotion_decision on the validation split, refused exactly this)."""
    candidate_val = _evaluation(0.97, 0.93, [0.88, 0.97])
    assert promotion_decision(candidate_val, FLATTERED_CHAMPION_VAL)["promote"] is False
    decision = gate_decision(candidate_val, FLATTERED_CHAMPION_VAL, candidate_unseen=_unseen(0.95, 0.80, [0.77, 0.83]))
    assert decision["promote"] is True
    assert decision["basis"] == "unseen-source floors"
    assert decision["rule"] == GATE_RULE
    assert decision["comparison"]["checks"] == {
        "auc_above_chance": True,
        "unseen_sensitivity": True,
        "unseen_flag_informative": True,
        "validation_sensitivity": True,
        "validation_specificity": True,
    }
    assert decision["validation_split"]["promote"] is False  # kept for the record
    json.dumps(decision, allow_nan=False)


@pytest.mark.parametrize(
    ("unseen", "candidate_val", "failed"),
    [
        (_unseen(0.95, 0.55, [0.48, 0.62]), _evaluation(0.97, 0.93, None), "auc_above_chance"),
        (_unseen(0.85, 0.80, [0.77, 0.83]), _evaluation(0.97, 0.93, None), "unseen_sensitivity"),
        (_unseen(0.95, 0.80, [0.77, 0.83]), _evaluation(0.80, 0.93, None), "validation_sensitivity"),
        (_unseen(0.95, 0.80, None), _evaluation(0.97, 0.93, None), "auc_above_chance"),
        # The 2026-12-02 Lite0 run: every unseen-hospital normal flagged (sensitivity 0.999,
        # specificity 0.0 at its threshold), validation specificity 0.32 against 0.71.
        (_unseen(0.999, 0.69, [0.66, 0.72], specificity=0.0), _evaluation(0.97, 0.93, None), "unseen_flag_informative"),
        (_unseen(0.95, 0.80, [0.77, 0.83]), _evaluation(0.97, 0.93, None, specificity=0.32), "validation_specificity"),
    ],
)
def test_unseen_source_floors_refuse(unseen: dict, candidate_val: dict, failed: str) -> None:
    decision = gate_decision(candidate_val, FLATTERED_CHAMPION_VAL, candidate_unseen=unseen)
    assert decision["promote"] is False
    assert decision["comparison"]["checks"][failed] is False
    assert "not promoted" in decision["reasons"][-1]


def test_sensitivity_floor_allows_the_sampling_error_of_the_target() -> None:
    # 0.94 of 300 abnormal images: the Wilson interval (0.907-0.962) holds 0.95.
    decision = gate_decision(
        _evaluation(0.97, 0.93, None), FLATTERED_CHAMPION_VAL, candidate_unseen=_unseen(0.94, 0.8, [0.77, 0.83])
    )
    assert decision["comparison"]["checks"]["unseen_sensitivity"] is True
    # 0.90 of 300 is significantly below the target.
    decision = gate_decision(
        _evaluation(0.97, 0.93, None), FLATTERED_CHAMPION_VAL, candidate_unseen=_unseen(0.90, 0.8, [0.77, 0.83])
    )
    assert decision["comparison"]["checks"]["unseen_sensitivity"] is False


def test_both_with_unseen_source_figures_are_compared_on_them() -> None:
    val_better, val_worse = _evaluation(0.99, 0.99, [0.98, 1.0]), _evaluation(0.97, 0.90, [0.85, 0.95])
    champion_unseen = _unseen(0.95, 0.80, [0.77, 0.83])
    better = gate_decision(
        val_worse, val_better, candidate_unseen=_unseen(0.96, 0.85, [0.82, 0.88]), champion_unseen=champion_unseen
    )
    assert better["promote"] is True and better["basis"] == "unseen sources"
    assert better["reasons"][0].startswith("On sources each model never saw")
    worse = gate_decision(
        val_better, val_worse, candidate_unseen=_unseen(0.95, 0.70, [0.67, 0.73]), champion_unseen=champion_unseen
    )
    assert worse["promote"] is False
    assert worse["comparison"]["checks"]["auc"] is False


def test_unseen_source_figures_on_different_images_are_not_compared() -> None:
    decision = gate_decision(
        _evaluation(0.97, 0.93, None),
        FLATTERED_CHAMPION_VAL,
        candidate_unseen=_unseen(0.96, 0.85, [0.82, 0.88], n_pos=299),
        champion_unseen=_unseen(0.95, 0.80, [0.77, 0.83]),
    )
    assert decision["promote"] is False
    assert decision["comparison"]["checks"]["comparable"] is False


def test_a_candidate_without_unseen_source_figures_cannot_replace_one_with_them() -> None:
    decision = gate_decision(
        _evaluation(0.99, 0.99, [0.98, 1.0]), CHAMPION, champion_unseen=_unseen(0.95, 0.80, [0.77, 0.83])
    )
    assert decision["promote"] is False
    assert decision["basis"] == "unseen sources"


def test_without_unseen_source_figures_the_validation_split_decides() -> None:
    candidate = _evaluation(0.97, 0.93, [0.9, 0.96])
    decision = gate_decision(candidate, CHAMPION)
    assert decision["basis"] == "validation split"
    assert decision["promote"] == promotion_decision(candidate, CHAMPION)["promote"] is True
    assert gate_decision(candidate, None)["promote"] is True
