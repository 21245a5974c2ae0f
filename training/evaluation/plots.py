"""Evaluation figures written as PNG files.

Renders on the Agg canvas explicitly (``FigureCanvasAgg``) through matplotlib's object
API and never imports pyplot: pyplot keeps global figure state and may pick an
interactive backend, neither of which is safe in a headless Celery worker that renders
plots for several runs. For the same reason this module does not call
``matplotlib.use`` (that would change the backend for unrelated code in the process). Each function
creates its own Figure, writes ``path`` (creating parent directories) and returns the
written path as a :class:`pathlib.Path`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike

from .calibration import reliability_curve
from .metrics import roc_auc, roc_curve

__all__ = ["plot_confusion_matrix", "plot_reliability", "plot_roc", "plot_training_curves"]

_DPI = 120
_SKIPPED_SERIES = frozenset({"lr", "learning_rate"})


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out, format="png", dpi=_DPI)
    return out


def plot_training_curves(history: Mapping[str, Sequence[float]], path: str | os.PathLike[str]) -> Path:
    """Plot a Keras-style history ({"loss": [...], "val_loss": [...], "auc": [...]}) per epoch.

    Keys containing "loss" go in the left panel, everything else in the right panel
    (omitted when there are no such keys); ``val_*`` series are dashed and share their
    training series' colour. Learning-rate series ("lr", "learning_rate") are skipped:
    their scale would flatten every metric. Raises ValueError when nothing is left.
    """
    series = {k: list(v) for k, v in history.items() if len(v) > 0 and k not in _SKIPPED_SERIES}
    if not series:
        raise ValueError("history has no non-empty series to plot")
    losses = {k: v for k, v in series.items() if "loss" in k}
    others = {k: v for k, v in series.items() if "loss" not in k}
    panels = [(title, group) for title, group in (("Loss", losses), ("Metrics", others)) if group]
    fig = Figure(figsize=(6 * len(panels), 4.5))
    for i, (title, group) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), i)
        bases = sorted({name.removeprefix("val_") for name in group})
        for name, values in sorted(group.items()):
            # A series and its val_ twin share a colour so they read as a pair.
            colour = f"C{bases.index(name.removeprefix('val_')) % 10}"
            ax.plot(
                np.arange(1, len(values) + 1),
                values,
                color=colour,
                marker="o",
                markersize=3,
                linestyle="--" if name.startswith("val_") else "-",
                label=name,
            )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"Training curves: {title.lower()}")
        ax.set_xlabel("Epoch")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def plot_roc(
    y_true: ArrayLike,
    scores: ArrayLike,
    path: str | os.PathLike[str],
    *,
    operating_threshold: float | None = None,
    auc: float | None = None,
) -> Path:
    """ROC curve for the abnormal-vs-normal decision, with the chance diagonal.

    ``auc`` is shown in the legend (computed when not given). When
    ``operating_threshold`` is given, the point for ``score >= threshold`` is marked and
    labelled with its sensitivity and specificity. Raises ValueError when either class
    is absent.
    """
    fpr, tpr, _ = roc_curve(y_true, scores)
    auc = roc_auc(y_true, scores) if auc is None else auc
    fig = Figure(figsize=(5.5, 5.5))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(fpr, tpr, linewidth=2, label=f"Model (AUC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="Chance")
    if operating_threshold is not None:
        y = np.asarray(y_true, dtype=bool)
        flagged = np.asarray(scores, dtype=np.float64) >= operating_threshold
        sens = float(np.mean(flagged[y]))
        spec = float(np.mean(~flagged[~y]))
        ax.plot(
            [1 - spec],
            [sens],
            marker="o",
            markersize=8,
            color="crimson",
            linestyle="none",
            label=f"Threshold {operating_threshold:.3f}: sens {sens:.3f}, spec {spec:.3f}",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title("ROC curve: abnormal vs normal")
    ax.set_xlabel("False positive rate (1 - specificity)")
    ax.set_ylabel("True positive rate (sensitivity)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion_matrix(
    matrix: ArrayLike,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    path: str | os.PathLike[str],
) -> Path:
    """Confusion matrix heat map, rows = true labels, columns = predicted labels.

    Colour is the row-normalised fraction (so rare classes are as visible as common
    ones); each cell is annotated with its raw count. Rows may outnumber columns (extra
    ground-truth labels such as "PNEUMONIA").
    """
    counts = np.asarray(matrix, dtype=np.int64)
    if counts.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"matrix shape {counts.shape} does not match the label lists")
    totals = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    fig = Figure(figsize=(1.6 * len(col_labels) + 3, 1.1 * len(row_labels) + 2))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="Fraction of true label")
    for (i, j), count in np.ndenumerate(counts):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if fractions[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(col_labels)), labels=list(col_labels), rotation=30, ha="right")
    ax.set_yticks(range(len(row_labels)), labels=list(row_labels))
    ax.set_title("Confusion matrix")
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    fig.tight_layout()
    return _save(fig, path)


def plot_reliability(
    y_true: ArrayLike,
    scores_or_probs: ArrayLike,
    path: str | os.PathLike[str],
    *,
    n_bins: int = 15,
) -> Path:
    """Reliability diagram from :func:`calibration.reliability_curve`.

    1-D scores with bool ``y_true`` give the binary curve (fraction positive vs mean
    score); 2-D probs with class indices give the top-label curve (accuracy vs
    confidence). A lower panel shows how many samples fall in each bin.
    """
    curve = reliability_curve(y_true, scores_or_probs, n_bins=n_bins)
    filled = [i for i, c in enumerate(curve["count"]) if c > 0]
    predicted = [curve["mean_predicted"][i] for i in filled]
    observed = [curve["observed"][i] for i in filled]
    binary = curve["kind"] == "binary"
    fig = Figure(figsize=(5.5, 6.5))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle=":", color="grey", label="Perfect calibration")
    top.plot(predicted, observed, marker="o", label=f"Model (ECE = {curve['ece']:.3f})")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_title("Reliability diagram: " + ("p(abnormal)" if binary else "top-label confidence"))
    top.set_ylabel("Fraction abnormal" if binary else "Accuracy")
    top.grid(alpha=0.3)
    top.legend(loc="upper left")
    edges = np.asarray(curve["bin_edges"])
    bottom.bar(edges[:-1], curve["count"], width=np.diff(edges), align="edge", edgecolor="white")
    bottom.set_xlabel("Predicted probability" if binary else "Confidence")
    bottom.set_ylabel("Samples")
    fig.tight_layout()
    return _save(fig, path)
