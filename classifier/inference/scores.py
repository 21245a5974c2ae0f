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

NumPy and SciPy only (no TensorFlow, no Django).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.special import expit, logsumexp, softmax

NORMAL_LABEL = "NORMAL"


def columns(labels: Sequence[str]) -> tuple[int, list[int]]:
    """The NORMAL column of ``labels`` and the abnormal ones, in order."""
    normal = list(labels).index(NORMAL_LABEL)
    return normal, [i for i in range(len(labels)) if i != normal]


def binary_logit(logits: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """Per row, ``logsumexp(abnormal logits) - NORMAL logit`` (float64): the model's log-odds of
    "abnormal" before any calibration; ``sigmoid`` of it is ``1 - softmax(logits)[NORMAL]``."""
    z = np.asarray(logits, np.float64).reshape(-1, len(labels))
    normal, abnormal = columns(labels)
    out: np.ndarray = logsumexp(z[:, abnormal], axis=1) - z[:, normal]
    return out


def has_binary_calibration(calibration: Mapping[str, Any]) -> bool:
    """The version's thresholds.json carries the logistic calibration of p(abnormal)."""
    return "abnormal_scale" in calibration and "abnormal_bias" in calibration


def served_probabilities(logits: np.ndarray, labels: Sequence[str], calibration: Mapping[str, Any]) -> np.ndarray:
    """Class probabilities (float64, rows sum to 1, columns in ``labels`` order) as the
    version with this ``calibration`` (its thresholds.json) serves them; see the module."""
    z = np.asarray(logits, np.float64).reshape(-1, len(labels))
    temperature = max(float(calibration.get("temperature", 1.0)), 1e-6)
    if not has_binary_calibration(calibration):
        plain: np.ndarray = softmax(z / temperature, axis=1)
        return plain
    normal, abnormal = columns(labels)
    p_abnormal = expit(
        float(calibration["abnormal_scale"]) * binary_logit(z, labels) + float(calibration["abnormal_bias"])
    )
    probs = np.empty_like(z)
    probs[:, normal] = 1.0 - p_abnormal
    probs[:, abnormal] = p_abnormal[:, None] * softmax(z[:, abnormal] / temperature, axis=1)
    return probs
