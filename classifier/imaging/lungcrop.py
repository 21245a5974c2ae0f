"""Lung-field crop for chest radiographs, after the published pneumonia CXR pipeline
(Rahman et al.): threshold at the mean intensity, refine with a morphological active
contour (Chan-Vese, initialised from the threshold mask), smooth the mask with a
21 x 21 mean filter, and crop to the bounding box of the lung region plus a margin.

Everything runs on a copy downscaled to ``work_size`` pixels on the long side, so the
cost does not depend on the source resolution; the box is mapped back to full size.
When the mask is implausible (too small or large, a tiny box, off-centre) the crop
falls back to the whole image and says so: a bad crop would remove lung, which is worse
than no crop.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage.segmentation import morphological_chan_vese

__all__ = ["CropResult", "lung_crop_box", "lung_crop", "lung_mask"]

MEAN_FILTER = 21  # px at the working resolution, as published
MIN_COMPONENT_FRACTION = 0.01
MAX_BORDER_CONTACT = 0.12  # fraction of the image perimeter
AREA_FRACTION_RANGE = (0.06, 0.65)
MIN_BOX_FRACTION = 0.3  # box side relative to the image side
MAX_CENTRE_OFFSET = 0.2  # box centre from the image centre, relative to the image side


@dataclass(frozen=True)
class CropResult:
    """Crop box ``(x0, y0, x1, y1)`` in full-resolution pixels (end exclusive).

    ``fallback`` is True when the box is the whole image because the mask was
    implausible; ``reason`` says why. ``mask`` is the working-resolution lung mask.
    """

    box: tuple[int, int, int, int]
    fallback: bool
    reason: str | None
    area_fraction: float
    mask: np.ndarray

    def summary(self) -> dict[str, object]:
        """JSON-serialisable description for stage reports."""
        x0, y0, x1, y1 = self.box
        return {"box": [x0, y0, x1, y1], "fallback": self.fallback, "reason": self.reason,
                "mask_area_fraction": round(self.area_fraction, 4)}


def _downscale(img: np.ndarray, work_size: int) -> np.ndarray:
    height, width = img.shape
    scale = work_size / max(height, width)
    if scale >= 1.0:
        return img.astype(np.float32, copy=False)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(img.astype(np.float32, copy=False), size, interpolation=cv2.INTER_AREA)


def lung_mask(small: np.ndarray, *, iterations: int = 6) -> np.ndarray:
    """Boolean mask of dark, enclosed regions (lungs) at the working resolution.

    Dark components touching much of the image border are the air around the patient,
    not lung; of the rest, the largest left and right components are kept.
    """
    init = small < small.mean()
    phases = morphological_chan_vese(small, iterations, init_level_set=init, smoothing=1)
    inside = phases.astype(bool)
    if inside.any() and (~inside).any() and small[inside].mean() > small[~inside].mean():
        inside = ~inside  # Chan-Vese may swap phases; the lungs are the dark one
    smooth = cv2.blur(inside.astype(np.float32), (MEAN_FILTER, MEAN_FILTER),
                      borderType=cv2.BORDER_REPLICATE) > 0.5
    return _pick_lungs(smooth)


def _pick_lungs(mask: np.ndarray) -> np.ndarray:
    """The largest plausible component on each side of the midline (one if it spans both).

    A component is background (air around the patient, a black frame) when more than
    ``MAX_BORDER_CONTACT`` of the image perimeter touches it; lungs of a tightly
    collimated film may touch one edge briefly, so contact alone does not exclude them.
    """
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=4)
    height, width = mask.shape
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    contact = np.bincount(border, minlength=count) / border.size
    area = stats[:, cv2.CC_STAT_AREA]
    cx, cy = centroids[:, 0] / width, centroids[:, 1] / height
    ok = (contact <= MAX_BORDER_CONTACT) & (area >= MIN_COMPONENT_FRACTION * mask.size)
    ok &= (cy > 0.1) & (cy < 0.85)
    ok[0] = False  # label 0 is the background
    left = stats[:, cv2.CC_STAT_LEFT]
    right = left + stats[:, cv2.CC_STAT_WIDTH]
    spans = ok & (left < width * 0.4) & (right > width * 0.6) & (area >= 0.1 * mask.size)
    chosen: list[int] = []
    for side in (ok & (cx < 0.5) & ~spans, ok & (cx >= 0.5) & ~spans):
        if side.any():
            chosen.append(int(np.argmax(np.where(side, area, -1))))
    if len(chosen) < 2 and spans.any():
        chosen = [int(np.argmax(np.where(spans, area, -1)))]
    if len(chosen) < 1:
        return np.zeros(mask.shape, dtype=bool)
    return np.isin(labels, chosen)


def _implausible(mask: np.ndarray, box: tuple[int, int, int, int]) -> str | None:
    height, width = mask.shape
    fraction = float(mask.mean())
    if fraction < AREA_FRACTION_RANGE[0]:
        return "lung mask too small"
    if fraction > AREA_FRACTION_RANGE[1]:
        return "lung mask too large"
    x0, y0, x1, y1 = box
    if (x1 - x0) < MIN_BOX_FRACTION * width or (y1 - y0) < MIN_BOX_FRACTION * height:
        return "lung box too small"
    if abs((x0 + x1) / 2 / width - 0.5) > MAX_CENTRE_OFFSET or \
            abs((y0 + y1) / 2 / height - 0.5) > MAX_CENTRE_OFFSET:
        return "lung box off-centre"
    return None


def lung_crop_box(img: np.ndarray, *, work_size: int = 256, iterations: int = 6,
                  margin: float = 0.05) -> CropResult:
    """Find the lung crop box of a 2-D [0, 1] image (bone bright); never raises on content.

    ``margin`` widens the box on each side by that fraction of the box size.
    """
    height, width = img.shape
    full = (0, 0, width, height)
    small = _downscale(img, work_size)
    if small.std() < 1e-6:
        return CropResult(full, True, "uniform image", 0.0, np.zeros(small.shape, bool))
    mask = lung_mask(small, iterations=iterations)
    if not mask.any():
        return CropResult(full, True, "no enclosed lung region", 0.0, mask)
    ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    box = (int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1)
    reason = _implausible(mask, box)
    if reason:
        return CropResult(full, True, reason, float(mask.mean()), mask)
    return CropResult(_to_full(box, small.shape, img.shape, margin), False, None,
                      float(mask.mean()), mask)


def _to_full(box: tuple[int, int, int, int], small_shape: tuple[int, ...],
             full_shape: tuple[int, ...], margin: float) -> tuple[int, int, int, int]:
    sy, sx = full_shape[0] / small_shape[0], full_shape[1] / small_shape[1]
    x0, y0, x1, y1 = box
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    return (max(0, int(np.floor((x0 - mx) * sx))), max(0, int(np.floor((y0 - my) * sy))),
            min(full_shape[1], int(np.ceil((x1 + mx) * sx))),
            min(full_shape[0], int(np.ceil((y1 + my) * sy))))


def lung_crop(img: np.ndarray, **kwargs: float) -> np.ndarray:
    """The image cropped to :func:`lung_crop_box` (the whole image on fallback)."""
    x0, y0, x1, y1 = lung_crop_box(img, **kwargs).box  # type: ignore[arg-type]
    return img[y0:y1, x0:x1]
