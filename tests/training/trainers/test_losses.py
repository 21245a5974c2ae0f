"""CauseWeightedLoss: the 4-class cross-entropy split into abnormal-vs-normal and cause."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from training.trainers.losses import CauseWeightedLoss  # noqa: E402
from training.trainers.train import TrainSpec  # noqa: E402

RNG = np.random.default_rng(7)
LOGITS = RNG.normal(0, 3, size=(64, 4)).astype(np.float32)
# One-hot labels of every class and "pneumonia, cause unknown" as half bacterial, half viral.
LABELS = np.eye(4, dtype=np.float32)[RNG.integers(0, 4, size=64)]
LABELS[:8] = [0.0, 0.5, 0.5, 0.0]


def _binary_ce(y: np.ndarray, logits: np.ndarray) -> np.ndarray:
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    log_p_abn = np.log(np.exp(log_p[:, 1:]).sum(axis=1))
    return -(y[:, 0] * log_p[:, 0] + y[:, 1:].sum(axis=1) * log_p_abn)


@pytest.mark.parametrize("smoothing", [0.0, 0.05])
def test_weight_one_is_the_categorical_cross_entropy(smoothing: float) -> None:
    ours = CauseWeightedLoss(1.0, 0, smoothing)(LABELS, LOGITS)
    keras_ce = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=smoothing)(LABELS, LOGITS)
    assert float(ours) == pytest.approx(float(keras_ce), rel=1e-5)


def test_weight_zero_is_the_binary_cross_entropy_of_abnormal() -> None:
    loss = CauseWeightedLoss(0.0, 0, 0.0, reduction="none")
    assert np.allclose(np.asarray(loss(LABELS, LOGITS)), _binary_ce(LABELS, LOGITS), atol=1e-5)


def test_weight_zero_leaves_the_cause_free() -> None:
    """Moving probability between abnormal classes costs nothing at weight 0 and
    something at weight 0.3, while the abnormal total is unchanged."""
    y = np.array([[0.0, 0.0, 0.0, 1.0]], dtype=np.float32)
    covid = np.array([[0.0, 0.0, 0.0, 2.0]], dtype=np.float32)
    bacterial = np.array([[0.0, 2.0, 0.0, 0.0]], dtype=np.float32)  # same p(abnormal)
    free, weighted = CauseWeightedLoss(0.0), CauseWeightedLoss(0.3)
    assert float(free(y, covid)) == pytest.approx(float(free(y, bacterial)), abs=1e-6)
    assert float(weighted(y, bacterial)) > float(weighted(y, covid)) + 0.3


def test_the_loss_round_trips_through_keras_serialisation() -> None:
    loss = CauseWeightedLoss(0.25, 0, 0.05)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(again, CauseWeightedLoss)
    assert (again.cause_weight, again.normal_index, again.label_smoothing) == (0.25, 0, 0.05)


def test_train_spec_bounds_the_weight() -> None:
    assert TrainSpec().cause_loss_weight == 1.0
    assert TrainSpec.from_dict(replace(TrainSpec(), cause_loss_weight=0.2).to_dict()).cause_loss_weight == 0.2
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="cause_loss_weight"):
            replace(TrainSpec(), cause_loss_weight=bad)
