"""classifier.inference.scores: the served probabilities, old (temperature only) and binary-calibrated."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logsumexp, softmax

from classifier.inference.scores import binary_logit, served_probabilities

LABELS = ["NORMAL", "PNEUMONIA_BACTERIAL", "PNEUMONIA_VIRAL", "COVID19"]


def test_versions_without_a_binary_calibration_serve_softmax_at_their_temperature() -> None:
    z = np.random.default_rng(0).normal(0, 3, (50, 4))
    got = served_probabilities(z, LABELS, {"abnormal": 0.5, "temperature": 2.5})
    assert np.allclose(got, softmax(z / 2.5, axis=1), atol=1e-12)


def test_binary_logit_is_the_log_odds_of_abnormal_at_temperature_one() -> None:
    z = np.random.default_rng(1).normal(0, 3, (50, 4))
    s = binary_logit(z, LABELS)
    assert np.allclose(s, logsumexp(z[:, 1:], axis=1) - z[:, 0])
    assert np.allclose(expit(s), 1 - softmax(z, axis=1)[:, 0])


def test_binary_calibration_shapes_p_abnormal_and_the_temperature_only_the_cause() -> None:
    z = np.random.default_rng(2).normal(0, 3, (50, 4))
    calibration = {"temperature": 3.0, "abnormal_scale": 0.7, "abnormal_bias": -0.4}
    probs = served_probabilities(z, LABELS, calibration)
    assert np.allclose(probs.sum(axis=1), 1.0)
    p_abnormal = expit(0.7 * binary_logit(z, LABELS) - 0.4)
    assert np.allclose(1 - probs[:, 0], p_abnormal)
    assert np.allclose(probs[:, 1:] / p_abnormal[:, None], softmax(z[:, 1:] / 3.0, axis=1))
    hotter = served_probabilities(z, LABELS, {**calibration, "temperature": 8.0})
    assert np.allclose(hotter[:, 0], probs[:, 0])


def test_a_flattening_temperature_cannot_put_a_normal_film_above_a_pneumonia() -> None:
    """The defect of the temperature-only rule: at T = 8 (fitted on cause confusion), a film
    the model calls NORMAL (odds of abnormal 0.41) outscores a pneumonia it calls abnormal
    (odds 1.65), because flattening lets three equal abnormal logits outweigh NORMAL."""
    z = np.array([[2.0, 0.0, 0.0, 0.0], [0.0, 0.5, -10.0, -10.0]])
    old = 1 - served_probabilities(z, LABELS, {"temperature": 8.0})[:, 0]
    assert old[0] > old[1]  # the inversion the binary calibration removes
    new = 1 - served_probabilities(z, LABELS, {"temperature": 8.0, "abnormal_scale": 1.0, "abnormal_bias": 0.0})[:, 0]
    assert new[0] < 0.5 < new[1]
    assert new == pytest.approx(expit(binary_logit(z, LABELS)))
