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


def test_source_signature_augmentations_keep_shape_range_and_change_pixels() -> None:
    """JPEG re-compression, sharpening and burned-in text, each forced on."""
    import tensorflow as tf

    from training.trainers.data import augment_batch, text_bank

    rng = np.random.default_rng(3)
    x = tf.constant(rng.uniform(0.2, 0.8, (6, 64, 64, 1)).astype(np.float32))
    quiet = AugmentConfig(
        rotation_deg=0,
        zoom=0,
        aspect=0,
        shift=0,
        brightness=0,
        contrast=0,
        gamma=0,
        border_erase_prob=0,
        cutout_prob=0,
        blur_prob=0,
        noise_max=0,
        lowres_prob=0,
    )
    bank = tf.constant(text_bank(64, 1, count=8, seed=1))
    assert np.asarray(bank).max() == 1 and np.asarray(bank).mean() > 0.001
    for knob in ({"jpeg_prob": 1.0}, {"sharpen_prob": 1.0}, {"text_prob": 1.0}):
        out = np.asarray(augment_batch(x, AugmentConfig(**{**quiet.to_dict(), **knob}), bank))
        assert out.shape == (6, 64, 64, 1) and out.min() >= 0.0 and out.max() <= 1.0
        assert np.abs(out - np.asarray(x)).max() > 0.05, knob
    unchanged = np.asarray(augment_batch(x, quiet, bank))
    assert np.abs(unchanged - np.asarray(x)).max() < 1e-5


def test_amplitude_mix_moves_the_spectrum_towards_the_partner_and_keeps_the_phase() -> None:
    """Image i's amplitude becomes (1 - s) |X_i| + s |X_{i-1}| at every frequency for one
    drawn share s, its phase stays its own; at probability 0 or share 0 nothing changes."""
    import tensorflow as tf

    from training.trainers.data import _amplitude_mix

    rng = np.random.default_rng(4)
    x = rng.uniform(0.3, 0.7, (2, 32, 32, 1)).astype(np.float32)
    x[1] = x[1] * 0.4 + 0.1  # a duller film: another spectrum
    tf.random.set_seed(7)
    out = np.asarray(_amplitude_mix(tf.constant(x), AugmentConfig(amp_mix_prob=1.0, amp_mix_max=0.9)))
    own, partner, got = (np.fft.fft2(a[..., 0].astype(np.float64)) for a in (x[1], x[0], out[1]))
    share = (np.abs(got[0, 0]) - np.abs(own[0, 0])) / (np.abs(partner[0, 0]) - np.abs(own[0, 0]))
    assert 0.0 < share < 0.9
    expected = (1 - share) * np.abs(own) + share * np.abs(partner)
    assert np.allclose(np.abs(got), expected, atol=1e-3 * np.abs(own[0, 0]))
    strong = np.abs(own) > 1.0
    assert np.abs(np.angle(got * np.conj(own))[strong]).max() < 1e-3
    assert np.abs(np.asarray(_amplitude_mix(tf.constant(x), AugmentConfig(amp_mix_prob=0.0))) - x).max() < 1e-6
    unmixed = np.asarray(_amplitude_mix(tf.constant(x), AugmentConfig(amp_mix_prob=1.0, amp_mix_max=0.0)))
    assert np.abs(unmixed - x).max() < 1e-4


def test_sampled_dataset_yields_the_drawn_rows_in_order() -> None:
    from training.trainers.data import make_sampled_dataset

    x = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1) * 20
    y = np.eye(2, dtype=np.float32)[np.arange(10) % 2]
    order = np.array([[3, 3, 7, 1, 9], [0, 2, 4, 6, 8]])  # 2 epochs of 5, batches of 2 (one row dropped each)
    batches = list(make_sampled_dataset(x, y, order, batch_size=2, augment=None, seed=0))
    seen = [round(float(v) * 255 / 20) for b in batches for v in np.asarray(b[0]).ravel()]
    assert seen == [3, 3, 7, 1, 0, 2, 4, 6]
