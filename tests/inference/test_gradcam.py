"""Grad-CAM: shape, range, and that it points at the discriminative blob."""
from __future__ import annotations

import numpy as np

from classifier.inference.gradcam import gradcam, overlay_png
from tests.inference.conftest import blob_images


def test_gradcam_shape_and_range(trained_model) -> None:
    x, _, _ = blob_images(2, 3)
    heat = gradcam(trained_model, x[1], class_index=None)
    assert heat.shape == (64, 64) and heat.dtype == np.float32
    assert heat.min() >= 0.0 and heat.max() <= 1.0


def test_gradcam_highlights_the_blob_more_than_background(trained_model) -> None:
    x, y, masks = blob_images(12, 4)
    ratios = []
    for i in np.flatnonzero(y == 3):
        heat = gradcam(trained_model, x[i], class_index=3)
        ratios.append(heat[masks[i]].mean() / (heat[~masks[i]].mean() + 1e-6))
    assert np.median(ratios) > 1.5


def test_overlay_png_returns_png_bytes() -> None:
    base = np.full((32, 32), 128, np.uint8)
    heat = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    data = overlay_png(base, heat)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
