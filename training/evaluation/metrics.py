"""Discrimination metrics for the triage classifier, with confidence intervals.

Binary task: "abnormal" (any label other than NORMAL) is the positive class and its
score is ``p_abnormal = 1 - p(NORMAL)``. A case is flagged when ``score >= threshold``.

Confidence intervals (95 %):
* proportions (sensitivity, specificity, PPV, NPV, accuracy): Wilson score interval;
* ROC AUC: stratified percentile bootstrap (positives and negatives resampled separately,
  so every replicate keeps the original class counts). DeLong is not used.
F1 gets no interval (it is not a proportion and the gate does not use it).

Every returned dict is JSON-serialisable with ``allow_nan=False``: plain ints, floats,
lists and None where a quantity is undefined (e.g. sensitivity with no positives).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm, rankdata

# Shared input validation; private to this package.
from .calibration import (
    _as_binary_pair,
    binary_brier_score,
    binary_expected_calibration_error,
    brier_score,
    expected_calibration_error,
)

__all__ = [
    "NORMAL_LABEL",
    "binary_metrics",
    "evaluate_predictions",
    "multiclass_metrics",
    "roc_auc",
    "roc_curve",
    "wilson_interval",
]

NORMAL_LABEL = "NORMAL"


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den > 0 else None


def wilson_interval(successes: int, total: int, *, confidence: float = 0.95) -> list[float] | None:
    """Wilson score interval ``[lo, hi]`` for a binomial proportion; None when total == 0.

    Always within [0, 1] and always contains ``successes / total`` (unlike the Wald
    interval, it stays sensible at 0 % and 100 %).
    """
    if total <= 0:
        return None
    if not 0 <= successes <= total:
        raise ValueError(f"successes must lie in [0, {total}], got {successes}")
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    # The exact interval always contains p (and reaches 0 or 1 at the extremes); clamp so
    # float rounding cannot break that guarantee.
    return [float(max(0.0, min(centre - half, p))), float(min(1.0, max(centre + half, p)))]


def roc_auc(y_true: ArrayLike, scores: ArrayLike) -> float | None:
    """Exact ROC AUC via the Mann-Whitney U statistic, ties counted as 1/2.

    Equals P(score of a random positive > score of a random negative) + 0.5 * P(tie).
    None when either class is absent.
    """
    y, s = _as_binary_pair(y_true, scores)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        return None
    return _mann_whitney_auc(y, s, n_pos)


def _mann_whitney_auc(y: np.ndarray, s: np.ndarray, n_pos: int) -> float:
    """AUC = U / (n_pos * n_neg); average ranks give tied pairs exactly 1/2."""
    n_neg = y.size - n_pos
    u = rankdata(s)[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(y_true: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve as ``(fpr, tpr, thresholds)``, thresholds strictly decreasing.

    Point i is the rate of flagging ``score >= thresholds[i]``; the first point is
    ``(0, 0)`` at threshold +inf and the last is ``(1, 1)`` at the minimum score. The
    trapezoidal area under it equals :func:`roc_auc`. Raises ValueError when either
    class is absent (the curve is undefined).
    """
    y, s = _as_binary_pair(y_true, scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_curve needs at least one positive and one negative")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # Last index of each run of equal scores: all tied samples switch together.
    last_of_run = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]
    tps = np.cumsum(y_sorted)[last_of_run]
    fps = last_of_run + 1 - tps
    tpr = np.r_[0.0, tps / n_pos]
    fpr = np.r_[0.0, fps / n_neg]
    thresholds = np.r_[np.inf, s_sorted[last_of_run]]
    return fpr, tpr, thresholds


def _bootstrap_auc_ci(pos: np.ndarray, neg: np.ndarray, n_bootstrap: int, seed: int) -> list[float] | None:
    """Stratified percentile bootstrap 95 % CI for AUC; deterministic given ``seed``."""
    if n_bootstrap <= 0 or pos.size == 0 or neg.size == 0:
        return None
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(pos.size, bool), np.zeros(neg.size, bool)]
    aucs = np.empty(n_bootstrap)
    for b in range(n_bootstrap):
        sample = np.r_[rng.choice(pos, pos.size), rng.choice(neg, neg.size)]
        aucs[b] = _mann_whitney_auc(labels, sample, pos.size)
    lo, hi = np.percentile(aucs, [2.5, 97.5])
    return [float(lo), float(hi)]


def binary_metrics(
    y_true: ArrayLike,
    scores: ArrayLike,
    threshold: float,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Confusion counts, rates, AUC and 95 % CIs for the rule ``flag = score >= threshold``.

    ``y_true`` is bool (True = abnormal). Returns keys tp, fp, tn, fn, n, n_pos, n_neg,
    threshold, sensitivity, specificity, ppv, npv, accuracy, f1, auc and ``ci`` =
    {sensitivity, specificity, ppv, npv, accuracy, auc: [lo, hi] or None}, plus
    ``ci_method``. Any metric whose denominator is zero (e.g. no positives) is None,
    never NaN. ``n_bootstrap=0`` skips the AUC bootstrap (``ci["auc"]`` is None).
    """
    y, s = _as_binary_pair(y_true, scores)
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    flagged = s >= threshold
    tp = int(np.sum(flagged & y))
    fp = int(np.sum(flagged & ~y))
    fn = int(np.sum(~flagged & y))
    tn = int(np.sum(~flagged & ~y))
    counts = {
        "sensitivity": (tp, tp + fn),
        "specificity": (tn, tn + fp),
        "ppv": (tp, tp + fp),
        "npv": (tn, tn + fn),
        "accuracy": (tp + tn, y.size),
    }
    result: dict[str, Any] = {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "n": int(y.size),
        "n_pos": tp + fn,
        "n_neg": tn + fp,
        "threshold": float(threshold),
    }
    for name, (num, den) in counts.items():
        result[name] = _ratio(num, den)
    result["f1"] = _ratio(2 * tp, 2 * tp + fp + fn)
    result["auc"] = roc_auc(y, s)
    ci: dict[str, list[float] | None] = {name: wilson_interval(num, den) for name, (num, den) in counts.items()}
    ci["auc"] = _bootstrap_auc_ci(s[y], s[~y], n_bootstrap, seed)
    result["ci"] = ci
    result["ci_method"] = {
        "proportions": "wilson",
        "auc": "stratified_percentile_bootstrap",
        "level": 0.95,
        "n_bootstrap": int(n_bootstrap),
        "seed": int(seed),
    }
    return result


def _validated_multiclass(y_true_labels: Sequence[str], probs: ArrayLike, labels: Sequence[str]) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if len(set(labels)) != len(labels) or len(labels) < 2:
        raise ValueError("labels must be at least two distinct class names")
    if p.shape != (len(y_true_labels), len(labels)):
        raise ValueError(f"probs must have shape ({len(y_true_labels)}, {len(labels)}), got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("probs contain NaN or infinite values")
    return p


def _per_class(
    true_idx: np.ndarray, pred_idx: np.ndarray, probs: np.ndarray, labels: Sequence[str]
) -> dict[str, dict[str, Any]]:
    per_class: dict[str, dict[str, Any]] = {}
    for k, label in enumerate(labels):
        is_true, is_pred = true_idx == k, pred_idx == k
        tp = int(np.sum(is_true & is_pred))
        precision = _ratio(tp, int(is_pred.sum()))
        recall = _ratio(tp, int(is_true.sum()))
        f1 = _ratio(2 * tp, int(is_true.sum()) + int(is_pred.sum()))
        per_class[label] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": int(is_true.sum()),
            "auc_ovr": roc_auc(is_true, probs[:, k]),
        }
    return per_class


def _macro(per_class: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    macro: dict[str, float | None] = {}
    for key in ("precision", "recall", "f1", "auc_ovr"):
        defined = [m[key] for m in per_class.values() if m[key] is not None]
        macro[key] = float(np.mean(defined)) if defined else None
    return macro


def multiclass_metrics(y_true_labels: Sequence[str], probs: ArrayLike, labels: Sequence[str]) -> dict[str, Any]:
    """Multiclass metrics for argmax predictions over the label schema ``labels``.

    Ground-truth labels outside the schema (e.g. "PNEUMONIA" of unknown cause) cannot be
    right or wrong at class level, so they are excluded from ``accuracy``, ``per_class``
    and ``macro`` (which use only in-schema samples), but they do get their own rows in
    the confusion matrix so one can see what the model called them.

    Returns ``labels``, ``row_labels`` (schema labels, then extra ground-truth labels
    sorted), ``col_labels`` (= labels, predicted), ``confusion_matrix`` (list of int
    rows, rows = true, columns = predicted), ``accuracy``, ``n``, ``n_in_schema``,
    ``n_out_of_schema``, ``per_class`` {label: precision, recall, f1, support, auc_ovr}
    and ``macro`` (unweighted mean over classes where the metric is defined, else None).
    """
    p = _validated_multiclass(y_true_labels, probs, labels)
    labels = [str(label) for label in labels]
    extras = sorted({str(t) for t in y_true_labels} - set(labels))
    row_labels = labels + extras
    row_of = {label: i for i, label in enumerate(row_labels)}
    rows = np.array([row_of[str(t)] for t in y_true_labels], dtype=np.int64)
    pred_idx = p.argmax(axis=1) if p.shape[0] else np.zeros(0, dtype=np.int64)
    matrix = np.zeros((len(row_labels), len(labels)), dtype=np.int64)
    np.add.at(matrix, (rows, pred_idx), 1)

    in_schema = rows < len(labels)
    true_in, pred_in = rows[in_schema], pred_idx[in_schema]
    per_class = _per_class(true_in, pred_in, p[in_schema], labels)
    return {
        "labels": labels,
        "row_labels": row_labels,
        "col_labels": labels,
        "confusion_matrix": matrix.tolist(),
        "accuracy": _ratio(int(np.sum(true_in == pred_in)), int(true_in.size)),
        "n": int(rows.size),
        "n_in_schema": int(true_in.size),
        "n_out_of_schema": int(rows.size - true_in.size),
        "per_class": per_class,
        "macro": _macro(per_class),
    }


def _calibration_summary(
    y_true_labels: Sequence[str],
    probs: np.ndarray,
    labels: list[str],
    is_abnormal: np.ndarray,
    p_abnormal: np.ndarray,
) -> dict[str, float | None]:
    index = {label: i for i, label in enumerate(labels)}
    names = [str(t) for t in y_true_labels]
    in_schema = np.array([t in index for t in names], dtype=bool)
    idx = np.array([index[t] for t in names if t in index], dtype=np.int64)
    has_in, has_any = bool(idx.size), bool(is_abnormal.size)
    return {
        "ece": expected_calibration_error(idx, probs[in_schema]) if has_in else None,
        "brier": brier_score(idx, probs[in_schema]) if has_in else None,
        "ece_abnormal": binary_expected_calibration_error(is_abnormal, p_abnormal) if has_any else None,
        "brier_abnormal": binary_brier_score(is_abnormal, p_abnormal) if has_any else None,
    }


def _per_source(
    sources: Sequence[str],
    y_true_labels: Sequence[str],
    probs: np.ndarray,
    labels: list[str],
    is_abnormal: np.ndarray,
    p_abnormal: np.ndarray,
    threshold: float,
) -> dict[str, dict[str, Any]]:
    if len(sources) != len(y_true_labels):
        raise ValueError("sources must have one entry per sample")
    src = np.array([str(source) for source in sources], dtype=object)
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(set(src)):
        mask = src == name
        metrics = binary_metrics(is_abnormal[mask], p_abnormal[mask], threshold, n_bootstrap=0)
        del metrics["ci"], metrics["ci_method"]
        subset = [t for t, m in zip(y_true_labels, mask, strict=True) if m]
        metrics["multiclass_accuracy"] = multiclass_metrics(subset, probs[mask], labels)["accuracy"]
        out[name] = metrics
    return out


def evaluate_predictions(
    y_true_labels: Sequence[str],
    probs: ArrayLike,
    labels: Sequence[str],
    *,
    threshold: float,
    sources: Sequence[str] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Full evaluation of softmax outputs ``probs`` (n, k) against true label names.

    Binary truth is ``label != "NORMAL"`` (so out-of-schema "PNEUMONIA" counts as
    abnormal) and the binary score is ``1 - probs[:, labels.index("NORMAL")]``.

    Returns ``binary`` (:func:`binary_metrics` with CIs), ``multiclass``
    (:func:`multiclass_metrics`), ``calibration`` = {ece: top-label ECE and brier:
    multiclass Brier, both over in-schema samples; ece_abnormal and brier_abnormal for
    p_abnormal over all samples}, ``per_source`` ({source: binary metrics without CIs
    plus ``multiclass_accuracy``}, or None when ``sources`` is None), ``n``,
    ``threshold``, ``labels`` and convenience copies of the binary ``sensitivity``,
    ``specificity``, ``auc`` and ``accuracy``. JSON-serialisable (no NaN).
    """
    labels = [str(label) for label in labels]
    p = _validated_multiclass(y_true_labels, probs, labels)
    if NORMAL_LABEL not in labels:
        raise ValueError(f"labels must include {NORMAL_LABEL!r} to define the abnormal score")
    is_abnormal = np.array([str(t) != NORMAL_LABEL for t in y_true_labels], dtype=bool)
    p_abnormal = 1.0 - p[:, labels.index(NORMAL_LABEL)]
    binary = binary_metrics(is_abnormal, p_abnormal, threshold, n_bootstrap=n_bootstrap, seed=seed)
    per_source = None
    if sources is not None:
        per_source = _per_source(sources, y_true_labels, p, labels, is_abnormal, p_abnormal, threshold)
    return {
        "n": len(y_true_labels),
        "threshold": float(threshold),
        "labels": labels,
        "sensitivity": binary["sensitivity"],
        "specificity": binary["specificity"],
        "auc": binary["auc"],
        "accuracy": binary["accuracy"],
        "binary": binary,
        "multiclass": multiclass_metrics(y_true_labels, p, labels),
        "calibration": _calibration_summary(y_true_labels, p, labels, is_abnormal, p_abnormal),
        "per_source": per_source,
    }
