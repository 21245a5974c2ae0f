"""Model evaluation for the chest X-ray triage classifier (no Django, no TensorFlow).

Metrics with confidence intervals, calibration and temperature scaling, operating
threshold selection, PNG plots and the champion/challenger promotion gate. Inputs are
numpy arrays of model outputs and lists of true label names; outputs are
JSON-serialisable dicts suitable for ``metrics.json``.

``plots`` is imported lazily (on first use of a ``plot_*`` name) so that code needing
only numbers does not pay for importing matplotlib.
"""

from __future__ import annotations

from typing import Any

from .calibration import (
    apply_temperature,
    binary_brier_score,
    binary_expected_calibration_error,
    brier_score,
    expected_calibration_error,
    fit_platt,
    fit_temperature,
    negative_log_likelihood,
    probs_to_logits,
    reliability_curve,
)
from .gate import GATE_RULE, gate_decision, promotion_decision
from .metrics import (
    NORMAL_LABEL,
    binary_metrics,
    evaluate_predictions,
    multiclass_metrics,
    roc_auc,
    roc_curve,
    wilson_interval,
)
from .thresholds import FALLBACK_THRESHOLD, threshold_for_sensitivity

_PLOT_NAMES = frozenset({"plot_confusion_matrix", "plot_reliability", "plot_roc", "plot_training_curves"})

__all__ = [
    "FALLBACK_THRESHOLD",
    "GATE_RULE",
    "NORMAL_LABEL",
    "apply_temperature",
    "binary_brier_score",
    "binary_expected_calibration_error",
    "binary_metrics",
    "brier_score",
    "evaluate_predictions",
    "expected_calibration_error",
    "fit_platt",
    "fit_temperature",
    "gate_decision",
    "multiclass_metrics",
    "negative_log_likelihood",
    "plot_confusion_matrix",
    "plot_reliability",
    "plot_roc",
    "plot_training_curves",
    "probs_to_logits",
    "promotion_decision",
    "reliability_curve",
    "roc_auc",
    "roc_curve",
    "threshold_for_sensitivity",
    "wilson_interval",
]


def __getattr__(name: str) -> Any:
    if name in _PLOT_NAMES:
        from . import plots

        return getattr(plots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
