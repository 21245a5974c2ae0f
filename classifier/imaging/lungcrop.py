"""Lung-field crop for chest radiographs, after the published pneumonia CXR pipeline
(Rahman et al.): threshold at the mean intensity, refine with a morphological active
contour (Chan-Vese, initialised from the threshold mask; see :func:`chan_vese`), smooth the mask with a
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

__all__ = ["CropResult", "chan_vese", "lung_crop", "lung_crop_box", "lung_mask"]

MEAN_FILTER = 21  # px at the working resolution, as published
MIN_COMPONENT_FRACTION = 0.01
MAX_FRAME_CONTACT = 0.3  # fraction of the cleared frame's inner edge
FRAME = (0.12, 0.03, 0.06)  # cleared band: top, bottom (of height), sides (of width)
AREA_FRACTION_RANGE = (0.06, 0.65)
MIN_BOX_FRACTION = 0.3  # box side relative to the image side
BOTTOM_MARGIN_FACTOR = 3.0
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
        return {
            "box": [x0, y0, x1, y1],
            "fallback": self.fallback,
            "reason": self.reason,
            "mask_area_fraction": round(self.area_fraction, 4),
        }


# The four 3x3 line elements of the morphological curvature operators (SI/IS).
_LINES = [
    np.eye(3, dtype=np.uint8),
    np.array([[0, 1, 0]] * 3, dtype=np.uint8),
    np.flipud(np.eye(3)).astype(np.uint8),
    np.rot90([[0, 1, 0]] * 3).astype(np.uint8),
]


def _sup_inf(u: np.ndarray) -> np.ndarray:
    out = cv2.erode(u, _LINES[0], borderType=cv2.BORDER_CONSTANT, borderValue=0)
    for line in _LINES[1:]:
        np.maximum(out, cv2.erode(u, line, borderType=cv2.BORDER_CONSTANT, borderValue=0), out=out)
    return out


def _inf_sup(u: np.ndarray) -> np.ndarray:
    out = cv2.dilate(u, _LINES[0], borderType=cv2.BORDER_CONSTANT, borderValue=0)
    for line in _LINES[1:]:
        np.minimum(out, cv2.dilate(u, line, borderType=cv2.BORDER_CONSTANT, borderValue=0), out=out)
    return out


def _contour(u: np.ndarray) -> np.ndarray:
    """Where np.gradient(u) is non-zero: the level set's boundary pixels."""
    rows = np.empty(u.shape, dtype=bool)
    rows[1:-1] = u[2:] != u[:-2]
    rows[0], rows[-1] = u[1] != u[0], u[-1] != u[-2]
    cols = np.empty(u.shape, dtype=bool)
    cols[:, 1:-1] = u[:, 2:] != u[:, :-2]
    cols[:, 0], cols[:, -1] = u[:, 1] != u[:, 0], u[:, -1] != u[:, -2]
    return rows | cols


def chan_vese(image: np.ndarray, iterations: int, init: np.ndarray) -> np.ndarray:
    """Morphological Chan-Vese (Marquez-Neila et al., PAMI 2014), lambda1 = lambda2 = 1,
    smoothing 1; the same algorithm as skimage's ``morphological_chan_vese`` with OpenCV
    morphology (about 10x faster).

    skimage alternates its two curvature operators through a module-global cycle, so
    its output depends on earlier calls in the process; here the alternation restarts
    at every call, which keeps preprocessing deterministic. Returns a boolean mask.
    """
    img = np.ascontiguousarray(image, dtype=np.float32)
    u = init.astype(np.uint8)
    total, count = float(img.sum(dtype=np.float64)), img.size
    for step in range(iterations):
        inside = int(np.count_nonzero(u))
        inside_sum = float(img[u > 0].sum(dtype=np.float64))
        c1 = inside_sum / (inside + 1e-8)
        c0 = (total - inside_sum) / (count - inside + 1e-8)
        # (img - c1)^2 - (img - c0)^2 == (c0 - c1) * (2 img - c0 - c1): its sign says
        # which region's mean a boundary pixel is closer to.
        attach = np.float32(c0 - c1) * (np.float32(2.0) * img - np.float32(c0 + c1))
        boundary = _contour(u)
        u[boundary & (attach < 0)] = 1
        u[boundary & (attach > 0)] = 0
        u = _sup_inf(_inf_sup(u)) if step % 2 == 0 else _inf_sup(_sup_inf(u))
    return u.astype(bool)


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
    inside = chan_vese(small, iterations, init)
    if inside.any() and (~inside).any() and small[inside].mean() > small[~inside].mean():
        inside = ~inside  # Chan-Vese may swap phases; the lungs are the dark one
    smooth = cv2.blur(inside.astype(np.float32), (MEAN_FILTER, MEAN_FILTER), borderType=cv2.BORDER_REPLICATE) > 0.5
    return _pick_lungs(smooth)


def _pick_lungs(mask: np.ndarray) -> np.ndarray:
    """The largest plausible component on each side of the midline (one if it spans both).

    A frame (``FRAME`` of the height at top/bottom, of the width at the sides) is
    cleared first: the lungs often join the air above the shoulders or beside the
    patient only there. A component touching much of the frame's inner edge is that
    air, not lung. Lung cut by the frame is restored by :func:`_extend_to_frame`.
    """
    framed = mask.copy()
    height, width = mask.shape
    top, bottom, side = (int(f * n) for f, n in zip(FRAME, (height, height, width), strict=True))
    framed[:top], framed[height - bottom :] = False, False
    framed[:, :side], framed[:, width - side :] = False, False
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(framed.astype(np.uint8), connectivity=4)
    edge = np.concatenate([labels[top], labels[height - bottom - 1], labels[:, side], labels[:, width - side - 1]])
    contact = np.bincount(edge, minlength=count) / edge.size
    area = stats[:, cv2.CC_STAT_AREA]
    cx, cy = centroids[:, 0] / width, centroids[:, 1] / height
    ok = (contact <= MAX_FRAME_CONTACT) & (area >= MIN_COMPONENT_FRACTION * mask.size)
    ok &= (cx > 0.12) & (cx < 0.88) & (cy > 0.15) & (cy < 0.85)
    ok[0] = False  # label 0 is the background
    left = stats[:, cv2.CC_STAT_LEFT]
    spans = ok & (left < width * 0.4) & (left + stats[:, cv2.CC_STAT_WIDTH] > width * 0.6)
    spans &= area >= 0.1 * mask.size
    chosen: list[int] = []
    for half in (ok & (cx < 0.5) & ~spans, ok & (cx >= 0.5) & ~spans):
        if half.any():
            chosen.append(int(np.argmax(np.where(half, area, -1))))
    if len(chosen) < 2 and spans.any():
        chosen = [int(np.argmax(np.where(spans, area, -1)))]
    return np.isin(labels, chosen) if chosen else np.zeros(mask.shape, dtype=bool)


def _extend_to_frame(box: tuple[int, int, int, int], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """A box reaching the cleared frame continues to the image edge: lung may be there."""
    height, width = shape
    top, bottom, side = (int(f * n) for f, n in zip(FRAME, (height, height, width), strict=True))
    x0, y0, x1, y1 = box
    return (
        0 if x0 <= side else x0,
        0 if y0 <= top else y0,
        width if x1 >= width - side else x1,
        height if y1 >= height - bottom else y1,
    )


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
    if abs((x0 + x1) / 2 / width - 0.5) > MAX_CENTRE_OFFSET or abs((y0 + y1) / 2 / height - 0.5) > MAX_CENTRE_OFFSET:
        return "lung box off-centre"
    return None


def lung_crop_box(img: np.ndarray, *, work_size: int = 256, iterations: int = 6, margin: float = 0.08) -> CropResult:
    """Find the lung crop box of a 2-D [0, 1] image (bone bright); never raises on content.

    ``margin`` widens the box on each side by that fraction of the box size (three
    times that at the bottom); the box is symmetric about the vertical midline.
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
    box = _extend_to_frame(box, small.shape)
    if reason:
        return CropResult(full, True, reason, float(mask.mean()), mask)
    return CropResult(_to_full(box, small.shape, img.shape, margin), False, None, float(mask.mean()), mask)


def _to_full(
    box: tuple[int, int, int, int], small_shape: tuple[int, ...], full_shape: tuple[int, ...], margin: float
) -> tuple[int, int, int, int]:
    """Widen, mirror and scale a working-resolution box to full resolution.

    Consolidation (what pneumonia triage looks for) is bright and can fall out of
    a dark-lung mask, so the box is made symmetric about the vertical midline and
    the bottom margin is ``BOTTOM_MARGIN_FACTOR`` times wider (lung bases).
    """
    small_w = small_shape[1]
    x0, y0, x1, y1 = box
    x0, x1 = min(x0, small_w - x1), max(x1, small_w - x0)
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    sy, sx = full_shape[0] / small_shape[0], full_shape[1] / small_w
    return (
        max(0, int(np.floor((x0 - mx) * sx))),
        max(0, int(np.floor((y0 - my) * sy))),
        min(full_shape[1], int(np.ceil((x1 + mx) * sx))),
        min(full_shape[0], int(np.ceil((y1 + BOTTOM_MARGIN_FACTOR * my) * sy))),
    )


def lung_crop(img: np.ndarray, **kwargs: float) -> np.ndarray:
    """The image cropped to :func:`lung_crop_box` (the whole image on fallback)."""
    x0, y0, x1, y1 = lung_crop_box(img, **kwargs).box  # type: ignore[arg-type]
    return img[y0:y1, x0:x1]
