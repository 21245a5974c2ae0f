"""Input pipeline: augmentation keeps shape/range, balancing modes, labels."""

from __future__ import annotations

import numpy as np
import pytest

from training.trainers.data import AugmentConfig, balance_indices, class_weight_vector, make_dataset


def test_augmented_batches_keep_shape_and_range() -> None:
    x = np.random.default_rng(0).integers(0, 255, (10, 32, 32, 1)).astype(np.uint8)
    ds = make_dataset(x, np.arange(10) % 4, batch_size=4, augment=AugmentConfig(), shuffle=True, seed=1, num_classes=4)
    xb, yb = next(iter(ds))
    assert xb.shape == (4, 32, 32, 1) and yb.shape == (4, 4)
    assert float(np.min(xb)) >= 0.0 and float(np.max(xb)) <= 1.0


def test_no_horizontal_flip_unless_enabled() -> None:
    assert AugmentConfig().horizontal_flip is False


@pytest.mark.parametrize("mode,expected", [("undersample", 2), ("oversample", 6), ("none", None)])
def test_balance_indices(mode: str, expected: int | None) -> None:
    labels = np.array([0] * 6 + [1] * 2)
    idx = balance_indices(labels, mode, seed=0)
    counts = np.bincount(labels[idx])
    if expected is None:
        assert len(idx) == 8
    else:
        assert counts.tolist() == [expected, expected]


def test_class_weights_equalise_class_totals_and_dataset_yields_weights() -> None:
    y = np.eye(2, dtype=np.float32)[[0, 0, 0, 1]]
    w = class_weight_vector(y)
    assert w[:3].sum() == pytest.approx(w[3])
    x = np.zeros((4, 8, 8, 1), np.uint8)
    batch = next(iter(make_dataset(x, y, batch_size=4, augment=None, shuffle=False, seed=0, balancing="class_weights")))
    assert len(batch) == 3


def test_unknown_balancing_rejected() -> None:
    with pytest.raises(ValueError):
        balance_indices(np.array([0, 1]), "magic", seed=0)
