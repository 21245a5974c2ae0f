"""GradientTape Grad-CAM, PNG encoding and heatmap overlays.

The served path computes Grad-CAM in closed form (``classifier.inference.cam``) when
the model's head allows it; the GradientTape implementation here is the reference the
closed form is tested against and the fallback for any other head.  The gradient model
and its traced function are built once per (model, layer) and cached in a
WeakKeyDictionary, so repeated heatmaps cost one forward+backward pass and a dropped
model frees its cache entry.  TensorFlow is imported inside functions.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

_CACHE: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def default_layer(model: Any) -> str:
    """Layer named "gradcam_target" if present, else the last layer with 4-D output."""
    names = [layer.name for layer in model.layers]
    if "gradcam_target" in names:
        return "gradcam_target"
    for layer in reversed(model.layers):
        if len(layer.output.shape) == 4:
            return str(layer.name)
    raise ValueError("model has no 4-D layer for Grad-CAM")


def _cam_function(model: Any, layer_name: str) -> Any:
    with _LOCK:
        per_model = _CACHE.setdefault(model, {})
        if layer_name not in per_model:
            per_model[layer_name] = _build_cam_function(model, layer_name)
        return per_model[layer_name]


def _build_cam_function(model: Any, layer_name: str) -> Any:
    import keras
    import tensorflow as tf

    grad_model = keras.Model(model.inputs, [model.get_layer(layer_name).output, model.output])

    @tf.function(reduce_retracing=True)  # type: ignore[untyped-decorator]  # TensorFlow ships no types
    def cam(x: Any, class_index: Any) -> tuple[Any, Any]:
        # x: (N, H, W, C); class_index: (N,) int32, -1 meaning "the predicted class".
        # One tape for the batch: each image's score depends only on its own features
        # (inference mode), so the summed score's gradient is the per-image gradient.
        with tf.GradientTape() as tape:
            features, logits = grad_model(x, training=False)
            tape.watch(features)
            predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
            index = tf.where(class_index < 0, predicted, class_index)
            score = tf.reduce_sum(tf.gather(logits, index, batch_dims=1))
        grads = tape.gradient(score, features)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        heat = tf.nn.relu(tf.reduce_sum(features * weights, axis=-1, keepdims=True))
        heat = tf.image.resize(heat, tf.shape(x)[1:3], method="bilinear")[..., 0]
        return heat, index

    return cam


def gradcam(
    keras_model: Any, x: np.ndarray, class_index: int | None = None, layer_name: str | None = None
) -> np.ndarray:
    """Grad-CAM of ``class_index`` (None = predicted class) for one image (H, W, C).

    Uses logits (pre-softmax) gradients.  Returns float32 (H, W) in [0, 1]; all zeros
    when no region has positive evidence for the class.
    """
    if x.ndim != 3:
        raise ValueError(f"expected one image (H, W, C), got shape {x.shape}")
    return np.asarray(gradcam_batch(keras_model, x[None], [class_index], layer_name)[0])


def gradcam_batch(
    keras_model: Any, x: np.ndarray, class_indices: Sequence[int | None], layer_name: str | None = None
) -> np.ndarray:
    """Grad-CAM for a batch (N, H, W, C) in one forward/backward pass; (N, H, W) in [0, 1]."""
    import tensorflow as tf

    if x.ndim != 4 or len(class_indices) != len(x):
        raise ValueError("expected a batch (N, H, W, C) and one class index per image")
    fn = _cam_function(keras_model, layer_name or default_layer(keras_model))
    indices = tf.constant([-1 if c is None else int(c) for c in class_indices], dtype=tf.int32)
    heat, _ = fn(tf.constant(np.asarray(x, np.float32)), indices)
    heat = np.asarray(heat, dtype=np.float32)
    peaks = heat.reshape(len(heat), -1).max(axis=1)
    out = np.zeros_like(heat)
    positive = peaks > 0
    out[positive] = heat[positive] / peaks[positive, None, None]
    return out


def jet_colormap(values: np.ndarray) -> np.ndarray:
    """Map [0, 1] values (H, W) to uint8 RGB (H, W, 3) with a jet-like palette."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25])  # red, green, blue peaks
    rgb = np.clip(1.5 - np.abs(4.0 * (v - centres)), 0.0, 1.0)
    return np.asarray(rgb * 255, dtype=np.uint8)


# The overlay looks each (grey value, heat level) pair up in a 256 x 256 table of
# blended colours, built once per alpha, instead of blending per pixel; a heat step
# of 1/255 is invisible.
_OVERLAYS: dict[float, np.ndarray] = {}


def _overlay_table(alpha: float) -> np.ndarray:
    """(256 grey, 256 heat level, 3) uint8: grey * (1 - w) + jet(level) * w, with
    w = alpha * sqrt(level) so cold regions show the plain radiograph."""
    table = _OVERLAYS.get(alpha)
    if table is None:
        levels = np.linspace(0.0, 1.0, 256)
        weight = (alpha * np.sqrt(levels))[None, :, None]
        grey = np.arange(256, dtype=np.float64)[:, None, None]
        blended = grey * (1 - weight) + jet_colormap(levels).astype(np.float64)[None, :, :] * weight
        table = _OVERLAYS.setdefault(alpha, np.clip(np.rint(blended), 0, 255).astype(np.uint8))
    return table


# zlib level 1, run-length strategy (which zlib documents for PNG data) and the "up"
# row filter: lossless, 2-5x faster to encode than the defaults for ~10 % larger files.
# Encoding was the slowest step of storing a prediction.
def png_bytes(pixels: np.ndarray) -> bytes:
    """Lossless PNG of a uint8 greyscale (H, W), RGB (H, W, 3) or RGBA (H, W, 4) array."""
    import cv2

    params = [
        cv2.IMWRITE_PNG_COMPRESSION,
        1,
        cv2.IMWRITE_PNG_STRATEGY,
        cv2.IMWRITE_PNG_STRATEGY_RLE,
        cv2.IMWRITE_PNG_FILTER,
        cv2.IMWRITE_PNG_FILTER_UP,
    ]
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = pixels[..., [2, 1, 0, 3]]  # OpenCV writes BGRA
    elif pixels.ndim == 3:
        pixels = pixels[..., ::-1]
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(pixels), params)
    if not ok:
        raise ValueError(f"could not encode a {pixels.shape} image as PNG")
    return encoded.tobytes()


def overlay_png(base_gray_uint8: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> bytes:
    """PNG bytes of the heatmap blended over the uint8 greyscale image (same H, W).

    The heatmap's weight is scaled by the square root of its own value, so cold regions
    show the plain radiograph instead of a blue wash.
    """
    base = np.asarray(base_gray_uint8)
    if base.ndim == 3:
        base = base[..., 0]
    if base.shape != heatmap.shape:
        raise ValueError(f"image {base.shape} and heatmap {heatmap.shape} differ in size")
    level = np.rint(np.clip(heatmap, 0.0, 1.0) * 255).astype(np.uint8)
    return png_bytes(_overlay_table(alpha)[base.astype(np.uint8), level])


def heatmap_rgba_png(heatmap: np.ndarray, content_box: list[int] | tuple[int, ...], alpha: float = 0.6) -> bytes:
    """The heatmap alone as a transparent PNG of the input's content region (padding cut off),
    for registering onto the original film: opacity follows sqrt(heat), like the overlay."""
    x0, y0, x1, y1 = (int(v) for v in content_box)
    heat = np.clip(np.asarray(heatmap, dtype=np.float64)[y0:y1, x0:x1], 0.0, 1.0)
    rgba = np.empty((*heat.shape, 4), np.uint8)
    rgba[..., :3] = jet_colormap(heat)
    rgba[..., 3] = np.rint(255 * alpha * np.sqrt(heat)).astype(np.uint8)
    return png_bytes(rgba)
