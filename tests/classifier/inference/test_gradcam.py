"""Grad-CAM: shape, range, and that it points at the discriminative blob."""

from __future__ import annotations

import numpy as np

from classifier.inference.gradcam import gradcam, overlay_png
from tests.classifier.inference.conftest import blob_images


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


def test_png_bytes_is_lossless_for_grey_and_rgb() -> None:
    import io

    from PIL import Image

    from classifier.inference.gradcam import png_bytes

    rng = np.random.default_rng(0)
    for shape, mode in (((40, 30), "L"), ((40, 30, 3), "RGB")):
        pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
        decoded = Image.open(io.BytesIO(png_bytes(pixels)))
        assert decoded.mode == mode
        np.testing.assert_array_equal(np.asarray(decoded), pixels)


def test_overlay_blends_jet_colours_by_heat_and_leaves_cold_pixels_grey() -> None:
    import io

    from PIL import Image

    from classifier.inference.gradcam import jet_colormap

    base = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))
    heat = np.zeros((64, 64), np.float32)
    heat[:32] = 1.0
    rgb = np.asarray(Image.open(io.BytesIO(overlay_png(base, heat, alpha=0.4))))
    np.testing.assert_array_equal(rgb[32:], np.repeat(base[32:, :, None], 3, axis=-1))  # cold: plain grey
    hot = 0.6 * base[:32, :, None].astype(float) + 0.4 * jet_colormap(np.ones((32, 64))).astype(float)
    assert np.abs(rgb[:32].astype(float) - hot).max() <= 1.0
