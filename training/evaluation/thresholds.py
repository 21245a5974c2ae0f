"""Choosing the operating threshold for the binary "abnormal" decision.

Missing a pneumonia costs more than a false alarm, so the threshold is chosen to reach a
target sensitivity first and, among thresholds that do, to be as high as possible (which
maximises specificity, since specificity never decreases as the threshold rises).

Contract shared with inference: a case is flagged abnormal when ``score >= threshold``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .calibration import _as_binary_pair

__all__ = ["FALLBACK_THRESHOLD", "threshold_for_sensitivity"]

# Used only when the data contain no positives, so no sensitivity can be measured.
FALLBACK_THRESHOLD = 0.5


def _min_positives_needed(target: float, n_pos: int) -> int:
    """Smallest k with k / n_pos >= target, robust to float rounding of target * n_pos."""
    k = max(1, math.ceil(target * n_pos - 1e-9))
    while k < n_pos and k / n_pos < target:
        k += 1
    return min(k, n_pos)


def threshold_for_sensitivity(
    y_true: ArrayLike, scores: ArrayLike, target: float = 0.95, *, weights: ArrayLike | None = None
) -> dict[str, Any]:
    """Highest threshold ``t`` such that flagging ``score >= t`` reaches ``target`` sensitivity.

    ``weights`` (one per sample, positive) makes sensitivity and specificity weighted
    shares, e.g. each source of a validation set counting equally however many images it
    has; without them every sample counts once.

    Guarantees on the data given (normally the frozen validation set):

    * ``sensitivity(t) >= target``, measured as (positives with score >= t) / positives;
    * no larger threshold achieves the target, so specificity is the best possible
      among thresholds that do; ``t`` is always one of the positives' scores;
    * ties are honoured: every sample whose score equals ``t`` is flagged.

    Returns a JSON-serialisable dict: ``threshold``, ``target``, ``sensitivity`` and
    ``specificity`` achieved at it (specificity None without negatives), ``n_pos``,
    ``n_neg``, ``fallback`` (bool) and ``reason`` (None, or why the fallback was used).

    With no positives no sensitivity can be measured: the result is
    ``threshold = FALLBACK_THRESHOLD`` (0.5), ``fallback = True``,
    ``reason = "no_positives"`` and ``sensitivity = None``; callers should treat this as
    "no validated operating point". A target of 1.0 yields the lowest positive score.
    """
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target must be in (0, 1], got {target}")
    y, s = _as_binary_pair(y_true, scores)
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    if weights is None:
        w = np.ones(y.size, dtype=np.float64)
    else:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape != s.shape or not np.isfinite(w).all() or (w <= 0).any():
            raise ValueError("weights must be one positive finite number per sample")
    if n_pos == 0:
        threshold, reason = FALLBACK_THRESHOLD, "no_positives"
    elif weights is None:
        # The k-th highest positive score is the largest t keeping >= k positives flagged.
        pos_scores = np.sort(s[y])[::-1]
        threshold, reason = float(pos_scores[_min_positives_needed(target, n_pos) - 1]), None
    else:
        order = np.argsort(-s[y], kind="stable")
        pos_s, cum = s[y][order], np.cumsum(w[y][order])
        k = int(np.searchsorted(cum, target * cum[-1] - 1e-12 * cum[-1]))
        threshold, reason = float(pos_s[min(k, pos_s.size - 1)]), None
    flagged = s >= threshold
    w_pos, w_neg = float(w[y].sum()), float(w[~y].sum())
    return {
        "threshold": float(threshold),
        "target": float(target),
        "sensitivity": float(w[flagged & y].sum()) / w_pos if n_pos else None,
        "specificity": float(w[~flagged & ~y].sum()) / w_neg if n_neg else None,
        "n_pos": n_pos,
        "n_neg": n_neg,
        "fallback": reason is not None,
        "reason": reason,
    }
