"""A conditional source-adversarial head: take the hospital away from the features.

Every adult normal in the shared data is from NIH or JSRT and every other adult from a
COVID-19 collection, so a classifier can learn "which hospital" instead of "which
disease". The head added here predicts an image's *source given its label* from the
features the classifier's ``logits`` layer reads, through a gradient-reversal layer:
the head learns to tell NIH normals from JSRT normals (and Hannover COVID-19 from Cohen
COVID-19), while the reversed gradient pushes the shared features to make that
impossible. Conditioning on the label (one block of source logits per class, the loss
of the image's class block weighted by its soft label) keeps the adversary from
removing the disease signal itself, which an unconditional source head would do here
because source and label are confounded (Ganin et al. 2016; Long et al. 2018, CDAN).

The head exists only while training: :func:`strip_source_head` returns the plain
image -> logits model that is saved, exported and served, so inference never sees a
custom layer. The training checkpoint (``last.keras``) holds the two-output model and
loads with this module imported (its classes are registered with Keras).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="cxr")
class GradientReversal(keras.layers.Layer):
    """Identity forward; multiplies the gradient by ``-scale`` backward."""

    def __init__(self, scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, x: Any) -> Any:
        scale = self.scale

        @tf.custom_gradient
        def reverse(t: Any) -> Any:
            return tf.identity(t), lambda dy: -scale * dy

        return reverse(x)

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="cxr")
class ConditionalSourceLoss(keras.losses.Loss):
    """Cross-entropy of the source within the image's class block.

    ``y_true`` is ``[soft label (K), one-hot source (S)]``; ``y_pred`` is ``K * S`` logits,
    read as one block of ``S`` source logits per class. The loss of each block is
    weighted by the image's (soft) label, so "pneumonia, cause unknown" contributes to
    the bacterial and viral blocks in proportion.
    """

    def __init__(self, num_classes: int, num_sources: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes, self.num_sources = int(num_classes), int(num_sources)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        k, s = self.num_classes, self.num_sources
        label, source = y_true[:, :k], y_true[:, k:]
        log_p = tf.nn.log_softmax(tf.reshape(y_pred, (-1, k, s)), axis=-1)
        per_class = -tf.reduce_sum(source[:, None, :] * log_p, axis=-1)  # (batch, K)
        return tf.reduce_sum(label * per_class, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes, "num_sources": self.num_sources}


def with_source_head(model: Any, *, num_classes: int, num_sources: int, scale: float) -> Any:
    """``model`` (image -> logits) plus the adversarial head, as a two-output model
    (logits, source logits) sharing ``model``'s layers and name."""
    features = model.get_layer("logits").input
    x = GradientReversal(scale, name="source_reversal")(features)
    x = keras.layers.Dense(128, activation="relu", name="source_hidden")(x)
    source = keras.layers.Dense(num_classes * num_sources, name="source_logits")(x)
    return keras.Model(model.inputs, [model.outputs[0], source], name=model.name)


def strip_source_head(model: Any) -> Any:
    """The image -> logits model without the adversarial head (``model`` if it has none)."""
    if len(model.outputs) == 1:
        return model
    return keras.Model(model.inputs, model.outputs[0], name=model.name)


def source_targets(y_soft: np.ndarray, source_ids: np.ndarray, num_sources: int) -> np.ndarray:
    """The head's targets: ``[soft label, one-hot source]`` per image, float32."""
    onehot = np.eye(num_sources, dtype=np.float32)[np.asarray(source_ids, dtype=np.int64)]
    return np.concatenate([np.asarray(y_soft, dtype=np.float32), onehot], axis=1)
