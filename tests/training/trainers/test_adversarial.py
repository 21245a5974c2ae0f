"""The conditional source-adversarial head: reversed gradient, conditional loss, training
with it, and a saved model without it."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from tests.training.trainers.test_train import SPEC, separable_data

# The head's prerequisites: sampled (source, label) batches and stopping on the AUC.
ADV_SPEC = replace(
    SPEC,
    balancing="source_label",
    epoch_samples=32,
    epochs=2,
    early_stopping_metric="val_auc",
    early_stopping_patience=5,
    source_adversarial=0.5,
)


def _adv_data() -> dict[str, Any]:
    """64 separable images from two sources, drawn uniformly, validated on the first 16."""
    x, y = separable_data(64, 0)
    sources = ["a" if i % 4 < 2 else "b" for i in range(len(x))]
    p = np.full(len(x), 1 / len(x))
    return {"x_train": x, "y_train": y, "x_val": x[:16], "y_val": y[:16], "sample_p": p, "sources": sources}


def test_gradient_reversal_is_identity_forward_and_negated_scaled_backward() -> None:
    import tensorflow as tf

    from training.trainers.adversarial import GradientReversal

    layer = GradientReversal(0.3)
    x = tf.constant([[1.0, -2.0, 3.0]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * tf.constant([[2.0, 1.0, -1.0]]))
    np.testing.assert_allclose(y.numpy(), x.numpy())
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), [[-0.6, -0.3, 0.3]], rtol=1e-6)


def test_conditional_source_loss_reads_the_block_of_the_images_class() -> None:
    from training.trainers.adversarial import ConditionalSourceLoss, source_targets

    k, s = 2, 3
    logits = np.zeros((2, k * s), dtype=np.float32)
    logits[0, 0:3] = [5.0, 0.0, 0.0]  # class-0 block: confident in source 0
    logits[0, 3:6] = [0.0, 0.0, 5.0]  # class-1 block: confident in source 2
    logits[1] = logits[0]
    y_soft = np.array([[1.0, 0.0], [0.5, 0.5]], dtype=np.float32)
    targets = source_targets(y_soft, np.array([0, 0]), s)
    assert targets.shape == (2, k + s)
    loss = ConditionalSourceLoss(k, s, reduction=None)(targets, logits).numpy()

    def ce(block: list[float], true: int) -> float:
        z = np.array(block) - max(block)
        return float(-(z[true] - np.log(np.exp(z).sum())))

    right, wrong = ce([5.0, 0.0, 0.0], 0), ce([0.0, 0.0, 5.0], 0)
    # Image 0 is class 0: only the class-0 block counts, and it names the right source.
    assert loss[0] == pytest.approx(right, rel=1e-5)
    # Image 1 is half class 0, half class 1: the blocks are weighted by its soft label.
    assert loss[1] == pytest.approx(0.5 * right + 0.5 * wrong, rel=1e-5)


def test_training_with_the_head_saves_a_plain_image_to_logits_model(tmp_path) -> None:
    import keras

    from training.trainers.train import train

    data = _adv_data()
    with pytest.raises(ValueError, match="sources"):
        train(ADV_SPEC, workdir=tmp_path / "no", **{**data, "sources": None})
    outcome = train(ADV_SPEC, workdir=tmp_path / "ok", **data)
    assert outcome.epochs_run == 2 and "val_auc" in outcome.history
    # Both losses were optimised (the total includes the source head's).
    assert {"loss", "logits_loss", "source_logits_loss"} <= set(outcome.history)
    model = keras.saving.load_model(outcome.model_path, compile=False)
    assert len(model.outputs) == 1 and model.output.shape[-1] == 2
    assert not {"source_reversal", "source_hidden", "source_logits"} & {layer.name for layer in model.layers}
    # The saved model loads where the head's module was never imported (the inference process).
    code = (
        "import sys, keras; m = keras.saving.load_model(sys.argv[1], compile=False); "
        "assert 'training.trainers.adversarial' not in sys.modules; print(m.output.shape[-1])"
    )
    result = subprocess.run([sys.executable, "-c", code, str(outcome.model_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("2")


def test_the_head_needs_sampled_batches_and_auc_stopping() -> None:
    with pytest.raises(ValueError, match="source_adversarial"):
        replace(SPEC, source_adversarial=0.5)
    with pytest.raises(ValueError, match="source_adversarial"):
        replace(SPEC, balancing="source_label", source_adversarial=-1.0)


def test_fine_tuning_never_counts_the_head_as_backbone() -> None:
    from training.trainers.adversarial import with_source_head
    from training.trainers.architectures import backbone_layers, build_model

    model = build_model("efficientnet_lite0", input_shape=(64, 64, 1), num_classes=4, freeze_backbone=True)
    wrapped = with_source_head(model, num_classes=4, num_sources=3, scale=0.3)
    assert [layer.name for layer in backbone_layers(wrapped)] == [layer.name for layer in backbone_layers(model)]


def test_training_with_the_head_resumes_after_a_crash(tmp_path) -> None:
    from training.trainers.train import train

    spec, kwargs = replace(ADV_SPEC, epochs=3), _adv_data()
    whole = train(spec, workdir=tmp_path / "a", **kwargs)

    def crash(record: dict) -> None:
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(spec, workdir=tmp_path / "b", progress=crash, **kwargs)
    resumed = train(spec, workdir=tmp_path / "b", **kwargs)
    assert resumed.epochs_run == 3
    assert resumed.history["source_logits_loss"][:2] == pytest.approx(whole.history["source_logits_loss"][:2], rel=1e-5)
