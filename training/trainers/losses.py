"""The classifier's loss, split into "is it abnormal" and "which cause".

The 4-class cross-entropy is exactly the sum of two terms (with p_abn the summed
probability of the abnormal classes):

    -sum_c y_c log p_c = -(y_N log p_N + y_abn log p_abn)          # abnormal vs normal
                         - sum_{c != N} y_c log(p_c / p_abn)        # cause, given abnormal

In the shared data the cause is nearly a function of the source: bacterial and viral
pneumonia are the pediatric Kermany collection (and NIH's adult pneumonias, cause
unknown), COVID-19 is every other adult collection. The second term therefore trains a
hospital classifier among abnormal films, and the features it builds ("not NIH-looking")
are the same ones the first term reads when a new hospital's adult normal arrives.
:class:`CauseWeightedLoss` scales the second term by ``cause_weight`` (1.0 is the plain
cross-entropy) so that the abnormal-vs-normal decision, which is what triage acts on,
dominates what the backbone learns, while the cause logits still learn enough to be
shown as a suggestion.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="cxr")
class CauseWeightedLoss(keras.losses.Loss):
    """Binary cross-entropy of abnormal vs normal plus ``cause_weight`` times the
    cross-entropy of the cause given abnormal, on logits.

    ``y_true`` is a (soft) label over the classes, ``normal_index`` the NORMAL column;
    label smoothing is applied to ``y_true`` as Keras' ``CategoricalCrossentropy`` does,
    so ``cause_weight=1`` equals it to float precision.
    """

    def __init__(self, cause_weight: float, normal_index: int = 0, label_smoothing: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cause_weight = float(cause_weight)
        self.normal_index = int(normal_index)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true = tf.cast(y_true, y_pred.dtype)
        k = tf.cast(tf.shape(y_true)[-1], y_pred.dtype)
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) + self.label_smoothing / k
        log_p = tf.nn.log_softmax(y_pred, axis=-1)
        is_normal = tf.one_hot(self.normal_index, tf.shape(y_pred)[-1], dtype=y_pred.dtype)
        # log p_abn = logsumexp of the abnormal classes' log-probabilities.
        masked = log_p + is_normal * tf.constant(-1e9, y_pred.dtype)
        log_p_abn = tf.reduce_logsumexp(masked, axis=-1)
        y_normal = tf.reduce_sum(y_true * is_normal, axis=-1)
        y_abn = tf.reduce_sum(y_true * (1.0 - is_normal), axis=-1)
        log_p_normal = tf.reduce_sum(log_p * is_normal, axis=-1)
        binary = -(y_normal * log_p_normal + y_abn * log_p_abn)
        cause = -tf.reduce_sum(y_true * (1.0 - is_normal) * (log_p - log_p_abn[:, None]), axis=-1)
        return binary + self.cause_weight * cause

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "cause_weight": self.cause_weight,
            "normal_index": self.normal_index,
            "label_smoothing": self.label_smoothing,
        }
