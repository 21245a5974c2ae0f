"""Tests for training.evaluation.thresholds.threshold_for_sensitivity."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.evaluation import FALLBACK_THRESHOLD, threshold_for_sensitivity


def _sensitivity(y: np.ndarray, s: np.ndarray, t: float) -> float:
    return float(np.mean(s[y] >= t))


def test_threshold_known_answer() -> None:
    y = np.array([1, 1, 1, 1, 1, 0, 0, 0], dtype=bool)
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.65, 0.3, 0.1])
    result = threshold_for_sensitivity(y, s, target=0.8)  # needs 4 of 5 positives
    assert result["threshold"] == 0.6
    assert result["sensitivity"] == pytest.approx(0.8)
    assert result["specificity"] == pytest.approx(2 / 3)  # 0.65 is a false alarm
    assert (result["n_pos"], result["n_neg"]) == (5, 3)
    assert result["fallback"] is False and result["reason"] is None
    json.dumps(result, allow_nan=False)


def test_target_one_gives_lowest_positive_score() -> None:
    y = np.array([True, True, False, True])
    s = np.array([0.4, 0.9, 0.05, 0.3])
    assert threshold_for_sensitivity(y, s, target=1.0)["threshold"] == 0.3


def test_ties_at_the_threshold_are_flagged() -> None:
    y = np.array([True, True, True, True, False])
    s = np.array([0.5, 0.5, 0.5, 0.9, 0.5])
    result = threshold_for_sensitivity(y, s, target=0.5)
    # Only 1/4 positives lie above 0.5, so t must be 0.5 and all tied samples flag.
    assert result["threshold"] == 0.5 and result["sensitivity"] == 1.0
    assert result["specificity"] == 0.0


def test_float_rounding_of_target_times_count_does_not_overshoot() -> None:
    # 0.07 * 100 == 7.000000000000001 in floating point; 7 positives must suffice.
    y = np.ones(100, dtype=bool)
    s = np.arange(100) / 100.0
    result = threshold_for_sensitivity(y, s, target=0.07)
    assert result["sensitivity"] == pytest.approx(0.07)
    assert result["threshold"] == pytest.approx(0.93)


def test_no_positives_returns_fallback_with_flag() -> None:
    result = threshold_for_sensitivity(np.zeros(4, dtype=bool), np.array([0.1, 0.6, 0.4, 0.9]))
    assert result["threshold"] == FALLBACK_THRESHOLD == 0.5
    assert result["fallback"] is True and result["reason"] == "no_positives"
    assert result["sensitivity"] is None and result["specificity"] == 0.5
    json.dumps(result, allow_nan=False)


@pytest.mark.parametrize("target", [0.0, -0.1, 1.01])
def test_invalid_target_is_rejected(target: float) -> None:
    with pytest.raises(ValueError):
        threshold_for_sensitivity(np.array([True]), np.array([0.5]), target=target)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.floats(0, 1, allow_nan=False)), min_size=1, max_size=80),
    st.floats(0.01, 1.0),
)
def test_threshold_achieves_target_and_is_the_highest_such(pairs: list, target: float) -> None:
    y = np.array([p[0] for p in pairs], dtype=bool)
    s = np.array([p[1] for p in pairs])
    result = threshold_for_sensitivity(y, s, target=target)
    t = result["threshold"]
    if not y.any():
        assert result["fallback"] is True
        return
    assert result["sensitivity"] == _sensitivity(y, s, t) >= target
    # Any larger threshold -- the next representable float or any larger score -- misses.
    assert _sensitivity(y, s, np.nextafter(t, np.inf)) < target
    for higher in np.unique(s[s > t]):
        assert _sensitivity(y, s, higher) < target


def test_weighted_sensitivity_lets_each_source_count_equally() -> None:
    """Nine easy positives of one source and one hard positive of another: unweighted, 90 %
    sensitivity ignores the hard source; with a weight per source it must be caught."""
    import numpy as np

    from training.evaluation import threshold_for_sensitivity

    y = np.array([True] * 10 + [False] * 4)
    s = np.array([0.9] * 9 + [0.2] + [0.1, 0.3, 0.5, 0.05])
    plain = threshold_for_sensitivity(y, s, target=0.9)
    assert plain["threshold"] == 0.9 and plain["sensitivity"] == 0.9
    weights = np.array([1 / 9] * 9 + [1.0] + [1.0] * 4)
    weighted = threshold_for_sensitivity(y, s, target=0.9, weights=weights)
    assert weighted["threshold"] == 0.2 and weighted["sensitivity"] == 1.0
    assert weighted["specificity"] == 0.5
