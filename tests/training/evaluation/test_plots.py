"""Tests for training.evaluation.plots: each writes a non-empty PNG and returns its path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.evaluation import (
    multiclass_metrics,
    plot_confusion_matrix,
    plot_reliability,
    plot_roc,
    plot_training_curves,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PROJECT_ROOT = Path(__file__).resolve().parents[3]


def _assert_png(path: Path) -> None:
    assert path.is_file()
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 2000


@pytest.fixture
def binary_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.random(200) < 0.5
    return y, np.clip(0.35 * y + 0.65 * rng.random(200), 0, 1)


def test_plot_training_curves_writes_png(tmp_path: Path) -> None:
    history = {
        "loss": [0.9, 0.6, 0.4],
        "val_loss": [1.0, 0.7, 0.6],
        "auc": [0.7, 0.8, 0.85],
        "val_auc": [0.65, 0.75, 0.8],
    }
    out = plot_training_curves(history, tmp_path / "nested" / "curves.png")
    assert out == tmp_path / "nested" / "curves.png"
    _assert_png(out)
    _assert_png(plot_training_curves({"loss": [1.0, 0.5]}, tmp_path / "loss_only.png"))
    with pytest.raises(ValueError):
        plot_training_curves({}, tmp_path / "empty.png")


def test_plot_roc_writes_png(tmp_path: Path, binary_data) -> None:
    y, s = binary_data
    _assert_png(plot_roc(y, s, tmp_path / "roc.png", operating_threshold=0.4))
    _assert_png(plot_roc(y, s, str(tmp_path / "roc_given_auc.png"), auc=0.9))


def test_plot_confusion_matrix_with_extra_truth_row_writes_png(tmp_path: Path) -> None:
    labels = ["NORMAL", "PNEUMONIA_BACTERIAL", "PNEUMONIA_VIRAL", "COVID19"]
    truth = ["NORMAL", "COVID19", "PNEUMONIA", "PNEUMONIA_VIRAL"]
    probs = np.eye(4)[[0, 3, 1, 1]] * 0.9 + 0.025
    m = multiclass_metrics(truth, probs, labels)
    out = plot_confusion_matrix(m["confusion_matrix"], m["row_labels"], m["col_labels"], tmp_path / "cm.png")
    _assert_png(out)
    with pytest.raises(ValueError):
        plot_confusion_matrix([[1, 2]], ["A", "B"], ["A", "B"], tmp_path / "bad.png")


def test_plot_reliability_binary_and_top_label_write_png(tmp_path: Path, binary_data) -> None:
    y, s = binary_data
    _assert_png(plot_reliability(y, s, tmp_path / "rel_binary.png"))
    probs = np.column_stack([1 - s, s])
    _assert_png(plot_reliability(y.astype(int), probs, tmp_path / "rel_top.png"))


def test_importing_the_package_pulls_in_neither_matplotlib_django_nor_tensorflow() -> None:
    code = (
        "import sys, training.evaluation as e; "
        "heavy = [m for m in ('matplotlib', 'django', 'tensorflow') if m in sys.modules]; "
        "assert not heavy, heavy; "
        "e.plot_roc; assert 'matplotlib' in sys.modules; "
        "assert 'matplotlib.pyplot' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, check=True, timeout=60)
