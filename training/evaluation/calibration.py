"""Calibration measures and temperature scaling for classifier outputs.

Everything here is pure numpy/scipy and side-effect free, so it is safe to call from a
web process, a Celery worker or a training job alike.

Conventions
-----------
* ``probs`` is an ``(n, k)`` array whose rows are probability vectors (softmax outputs).
* ``logits`` is an ``(n, k)`` array of unnormalised log-probabilities.
* ``y_true_idx`` is an ``(n,)`` integer array of class indices into the label schema.
* Binary variants take ``y_true`` (bool, True = positive/abnormal) and ``scores`` in
  [0, 1] (e.g. ``p_abnormal = 1 - p(NORMAL)``).
* Bins are equal-width on [0, 1]; bin ``i`` holds confidences in ``(i/m, (i+1)/m]``,
  with 0 placed in the first bin.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize, minimize_scalar
from scipy.special import log_softmax, softmax

__all__ = [
    "apply_temperature",
    "binary_brier_score",
    "binary_expected_calibration_error",
    "brier_score",
    "expected_calibration_error",
    "fit_platt",
    "fit_temperature",
    "negative_log_likelihood",
    "probs_to_logits",
    "reliability_curve",
]

DEFAULT_N_BINS = 15
# Bounds on T for fit_temperature. Outside these the model is either degenerate or the
# data are too small to say anything, and an extreme T would silently flatten/sharpen
# every future prediction.
DEFAULT_T_MIN = 0.05
DEFAULT_T_MAX = 20.0


def _as_matrix(values: ArrayLike, name: str = "probs") -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"{name} must have shape (n, k) with k >= 2, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contain NaN or infinite values")
    return arr


def _as_class_indices(y_true_idx: ArrayLike, n: int, k: int) -> np.ndarray:
    y = np.asarray(y_true_idx)
    if y.shape != (n,):
        raise ValueError(f"y_true_idx must have shape ({n},), got {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ValueError("y_true_idx must contain integer class indices")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"y_true_idx values must lie in [0, {k})")
    return y


def _as_binary_pair(y_true: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"y_true and scores must be 1-D of equal length, got {y.shape}, {s.shape}")
    if y.dtype != bool:
        if y.size and not np.isin(y, (0, 1)).all():
            raise ValueError("y_true must be boolean or 0/1")
        y = y.astype(bool)
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    return y, s


def _bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    inner_edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    bins: np.ndarray = np.digitize(confidence, inner_edges, right=True)
    return bins


def _binned(confidence: np.ndarray, outcome: np.ndarray, n_bins: int) -> tuple[np.ndarray, ...]:
    """Return (count, mean confidence, mean outcome) per bin; means are NaN for empty bins."""
    idx = _bin_index(confidence, n_bins)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    conf_sum = np.bincount(idx, weights=confidence, minlength=n_bins)
    out_sum = np.bincount(idx, weights=outcome.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return count, conf_sum / count, out_sum / count


def _ece(confidence: np.ndarray, outcome: np.ndarray, n_bins: int) -> float:
    if confidence.size == 0:
        raise ValueError("cannot compute a calibration error on zero samples")
    count, mean_conf, mean_out = _binned(confidence, outcome, n_bins)
    filled = count > 0
    gaps = np.abs(mean_out[filled] - mean_conf[filled])
    return float(np.sum(count[filled] * gaps) / confidence.size)


def expected_calibration_error(y_true_idx: ArrayLike, probs: ArrayLike, n_bins: int = DEFAULT_N_BINS) -> float:
    """Top-label expected calibration error.

    Confidence is the largest probability in each row and the outcome is whether its
    argmax equals the true class. ECE = sum over bins of (bin size / n) * |accuracy -
    mean confidence|. Result is in [0, 1]. Raises ValueError on empty or malformed input.
    """
    p = _as_matrix(probs)
    y = _as_class_indices(y_true_idx, p.shape[0], p.shape[1])
    return _ece(p.max(axis=1), p.argmax(axis=1) == y, n_bins)


def binary_expected_calibration_error(y_true: ArrayLike, scores: ArrayLike, n_bins: int = DEFAULT_N_BINS) -> float:
    """ECE of a binary score (e.g. p_abnormal): per bin |fraction positive - mean score|.

    Unlike the top-label variant this bins the positive-class score itself, so it judges
    the number a threshold is applied to. Raises ValueError on empty input.
    """
    y, s = _as_binary_pair(y_true, scores)
    return _ece(s, y, n_bins)


def brier_score(y_true_idx: ArrayLike, probs: ArrayLike) -> float:
    """Multiclass Brier score: mean over samples of sum_k (p_k - onehot_k)^2, in [0, 2]."""
    p = _as_matrix(probs)
    y = _as_class_indices(y_true_idx, p.shape[0], p.shape[1])
    if y.size == 0:
        raise ValueError("cannot compute a Brier score on zero samples")
    onehot = np.zeros_like(p)
    onehot[np.arange(y.size), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def binary_brier_score(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Binary Brier score: mean (score - y)^2, in [0, 1]."""
    y, s = _as_binary_pair(y_true, scores)
    if y.size == 0:
        raise ValueError("cannot compute a Brier score on zero samples")
    return float(np.mean((s - y) ** 2))


def reliability_curve(y_true: ArrayLike, scores_or_probs: ArrayLike, n_bins: int = DEFAULT_N_BINS) -> dict[str, Any]:
    """Per-bin data for a reliability diagram, JSON-serialisable.

    With 1-D ``scores_or_probs`` the input is binary (``y_true`` bool, outcome = fraction
    positive); with 2-D probs ``y_true`` holds class indices and the curve is top-label
    (outcome = accuracy of the argmax). Returns ``kind`` ("binary" or "top_label"),
    ``bin_edges`` (n_bins + 1), and per bin ``count``, ``mean_predicted`` and
    ``observed`` (None for empty bins), plus the overall ``ece``.
    """
    arr = np.asarray(scores_or_probs)
    if arr.ndim == 1:
        y, confidence = _as_binary_pair(y_true, arr)
        outcome, kind = y, "binary"
    else:
        p = _as_matrix(arr)
        idx = _as_class_indices(y_true, p.shape[0], p.shape[1])
        confidence, outcome, kind = p.max(axis=1), p.argmax(axis=1) == idx, "top_label"
    count, mean_conf, mean_out = _binned(confidence, outcome, n_bins)

    def _listed(values: np.ndarray) -> list[float | None]:
        return [float(v) if c > 0 else None for v, c in zip(values, count, strict=True)]

    return {
        "kind": kind,
        "bin_edges": [float(e) for e in np.linspace(0.0, 1.0, n_bins + 1)],
        "count": [int(c) for c in count],
        "mean_predicted": _listed(mean_conf),
        "observed": _listed(mean_out),
        "ece": _ece(confidence, outcome, n_bins),
    }


def probs_to_logits(probs: ArrayLike, eps: float = 1e-7) -> np.ndarray:
    """Log of probabilities clipped to [eps, 1], usable as logits.

    softmax(probs_to_logits(p)) == p up to the clipping (exact when all p >= eps), which
    lets temperature scaling be fitted to models that only export softmax outputs.
    """
    logits: np.ndarray = np.log(np.clip(_as_matrix(probs), eps, 1.0))
    return logits


def apply_temperature(logits: ArrayLike, temperature: float) -> np.ndarray:
    """Return softmax(logits / temperature) row-wise; ``temperature`` must be > 0."""
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    probs: np.ndarray = softmax(_as_matrix(logits, "logits") / temperature, axis=1)
    return probs


def negative_log_likelihood(logits: ArrayLike, y_true_idx: ArrayLike, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true class under softmax(logits / T)."""
    z = _as_matrix(logits, "logits")
    y = _as_class_indices(y_true_idx, z.shape[0], z.shape[1])
    if y.size == 0:
        raise ValueError("cannot compute a likelihood on zero samples")
    log_p = log_softmax(z / temperature, axis=1)
    return float(-np.mean(log_p[np.arange(y.size), y]))


def fit_temperature(
    logits: ArrayLike,
    y_true_idx: ArrayLike,
    *,
    t_min: float = DEFAULT_T_MIN,
    t_max: float = DEFAULT_T_MAX,
) -> float:
    """Fit a single temperature T > 0 minimising the NLL of softmax(logits / T).

    Optimises log T with bounded Brent search over [log t_min, log t_max]; searching in
    log space treats "twice as sharp" and "twice as flat" symmetrically. The NLL is
    unimodal in T, so the bounded search finds the global optimum within the bounds; an
    optimum outside them is returned clipped (close to the bound). Fit T on held-out
    validation data, never on the training set. Raises ValueError on empty input.
    """
    z = _as_matrix(logits, "logits")
    y = _as_class_indices(y_true_idx, z.shape[0], z.shape[1])
    if y.size == 0:
        raise ValueError("cannot fit a temperature on zero samples")
    if not 0 < t_min < t_max:
        raise ValueError("require 0 < t_min < t_max")
    rows = np.arange(y.size)

    def nll(log_t: float) -> float:
        return float(-np.mean(log_softmax(z / math.exp(log_t), axis=1)[rows, y]))

    result = minimize_scalar(nll, bounds=(math.log(t_min), math.log(t_max)), method="bounded", options={"xatol": 1e-5})
    return float(math.exp(result.x))


def fit_platt(
    scores: ArrayLike, y_true: ArrayLike, *, weights: ArrayLike | None = None, l2: float = 1e-3
) -> tuple[float, float]:
    """Logistic calibration ``p = sigmoid(scale * score + bias)`` of a binary log-odds score,
    by weighted maximum likelihood (``weights`` per sample, e.g. every source equally; a
    small ``l2`` on (scale - 1, bias) keeps a separable sample finite).

    ``scale`` is bounded to [0.05, 20] like the temperature (``scale = 1 / T`` of a binary
    softmax): a negative scale would invert the model's ranking, and an extreme one makes
    every future prediction 0 or 1. Fit on held-out data, never on the training set.
    Raises ValueError on empty input or a single class.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(y_true, dtype=bool).ravel()
    if s.size == 0 or s.size != y.size:
        raise ValueError("scores and y_true must be non-empty and of equal length")
    if y.all() or not y.any():
        raise ValueError("a logistic calibration needs both classes")
    w = np.ones_like(s) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    w = w / w.mean()
    sign = np.where(y, 1.0, -1.0)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        margin = sign * (theta[0] * s + theta[1])
        nll = np.logaddexp(0.0, -margin)  # -log sigmoid(margin)
        grad_margin = -w * sign / (1.0 + np.exp(np.clip(margin, -500, 500)))
        value = float(np.mean(w * nll) + l2 * ((theta[0] - 1.0) ** 2 + theta[1] ** 2))
        grad = np.array(
            [np.mean(grad_margin * s) + 2 * l2 * (theta[0] - 1.0), np.mean(grad_margin) + 2 * l2 * theta[1]]
        )
        return value, grad

    result = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B", bounds=[(0.05, 20.0), (None, None)])
    return float(result.x[0]), float(result.x[1])
