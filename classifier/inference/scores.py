"""From model logits to the served class probabilities: one rule for training and serving.

A version's ``thresholds.json`` says how its logits are calibrated:

* ``temperature`` only (every version before the binary calibration): the probabilities
  are ``softmax(logits / T)`` and p(abnormal) is ``1 - p(NORMAL)``.
* with ``abnormal_scale`` and ``abnormal_bias``: p(abnormal) is a logistic calibration of
  the model's own binary logit ``s = logsumexp(abnormal logits) - NORMAL logit`` (the
  log-odds of abnormal at T = 1), and the temperature shapes only the suggested cause:
  ``p(cause) = p(abnormal) * softmax(abnormal logits / T)``. The probabilities still sum
  to 1 and p(abnormal) is still ``1 - p(NORMAL)``.

Why the second form: a 4-class temperature is fitted mostly on which cause an abnormal
film has, and on adult sources the model cannot tell COVID-19 from other pneumonia, so the
fit pushes T to 3-4. That flattens every row towards uniform, where the three abnormal
classes together outweigh NORMAL: the full Lite0 retrain of 2026-12-02 called 94 % of JSRT
normals NORMAL by argmax and still put every one above its p(abnormal) threshold. The
normal/abnormal decision must not depend on how uncertain the cause is.

NumPy only (no TensorFlow, no Django).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

NORMAL_LABEL = "NORMAL"


def _logsumexp(z: np.ndarray) -> np.ndarray:
    top = z.max(axis=1, keepdims=True)
    out: np.ndarray = (top + np.log(np.exp(z - top).sum(axis=1, keepdims=True)))[:, 0]
    return out


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def binary_logit(logits: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """Per row, ``logsumexp(abnormal logits) - NORMAL logit`` (float64): the model's log-odds of
    "abnormal" before any calibration; ``sigmoid`` of it is ``1 - softmax(logits)[NORMAL]``."""
    z = np.asarray(logits, np.float64).reshape(-1, len(labels))
    normal = list(labels).index(NORMAL_LABEL)
    abnormal = [i for i in range(len(labels)) if i != normal]
    return _logsumexp(z[:, abnormal]) - z[:, normal]


def has_binary_calibration(calibration: Mapping[str, Any]) -> bool:
    return "abnormal_scale" in calibration and "abnormal_bias" in calibration


def served_probabilities(logits: np.ndarray, labels: Sequence[str], calibration: Mapping[str, Any]) -> np.ndarray:
    """Class probabilities (float64, rows sum to 1, columns in ``labels`` order) as the
    version with this ``calibration`` (its thresholds.json) serves them; see the module."""
    z = np.asarray(logits, np.float64).reshape(-1, len(labels))
    temperature = max(float(calibration.get("temperature", 1.0)), 1e-6)
    if not has_binary_calibration(calibration):
        return _softmax(z / temperature)
    normal = list(labels).index(NORMAL_LABEL)
    abnormal = [i for i in range(len(labels)) if i != normal]
    s = float(calibration["abnormal_scale"]) * binary_logit(z, labels) + float(calibration["abnormal_bias"])
    p_abnormal = 1.0 / (1.0 + np.exp(-np.clip(s, -500.0, 500.0)))
    probs = np.empty_like(z)
    probs[:, normal] = 1.0 - p_abnormal
    probs[:, abnormal] = p_abnormal[:, None] * _softmax(z[:, abnormal] / temperature)
    return probs
