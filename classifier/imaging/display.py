"""The radiograph as a reader sees it: original values for client-side window/level.

The model sees a lung-cropped, CLAHE-equalised 224 px square; a reader needs the film.
:func:`display_source` turns a decoded image into the values a viewer windows (DICOM:
the modality-LUT output, before any VOI window; PNG/JPEG: the stored grey levels),
downscaled to at most ``max_side`` pixels, quantised to uint16 with the affine map back
to the original units, plus the window presets the file carries (DICOM WindowCenter /
WindowWidth with their explanations), an automatic window and the full range.
:func:`encode` packs it as zlib-compressed little-endian uint16 with a JSON description;
the study page inflates it in the browser (DecompressionStream) and windows it itself.

Geometry: ``source_width``/``source_height`` are the decoded image's size, the grid the
preprocessing crop box is expressed in, so a heatmap can be registered onto the film.
Django-free.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

__all__ = ["MAX_SIDE", "DisplaySource", "display_source", "encode"]

MAX_SIDE = 1536  # 2-3x the viewer's width: zooming in still shows detail
LEVELS = 4096  # 12 bits: the precision of a CR/DX detector, and it compresses well


@dataclass(frozen=True)
class DisplaySource:
    """uint16 ``values`` (h, w), at most 4096 levels; original value = ``offset + values * scale``."""

    values: np.ndarray
    offset: float
    scale: float
    invert: bool  # MONOCHROME1: high values are dark; viewers invert by default
    windows: list[dict[str, Any]] = field(default_factory=list)  # {name, center, width} in original units
    units: str = ""
    source_width: int = 0
    source_height: int = 0

    def describe(self) -> dict[str, Any]:
        height, width = self.values.shape
        return {
            "width": width,
            "height": height,
            "offset": self.offset,
            "scale": self.scale,
            "invert": self.invert,
            "windows": self.windows,
            "units": self.units,
            "source_width": self.source_width,
            "source_height": self.source_height,
            "encoding": "zlib uint16 little-endian, row-major",
        }


def _shrink(values: np.ndarray, max_side: int) -> np.ndarray:
    height, width = values.shape
    factor = max_side / max(height, width)
    if factor >= 1.0:
        return values.astype(np.float32, copy=False)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return np.asarray(cv2.resize(values.astype(np.float32, copy=False), size, interpolation=cv2.INTER_AREA))


def _auto_window(values: np.ndarray) -> tuple[float, float]:
    sample = values[:: max(1, values.shape[0] // 256), :: max(1, values.shape[1] // 256)]
    low, high = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    return (low + high) / 2.0, max(high - low, 1e-6)


def display_source(
    values: np.ndarray,
    *,
    header_windows: list[dict[str, Any]] | None = None,
    invert: bool = False,
    units: str = "",
    full_range: tuple[float, float] | None = None,
    max_side: int = MAX_SIDE,
) -> DisplaySource:
    """The display values of a decoded image (``values`` in original units, 2-D).

    ``full_range`` is the range the values can take (e.g. 0-255 for 8-bit data), used
    for the "Full range" preset; default: the observed range.
    """
    if values.ndim != 2 or not values.size:
        raise ValueError("display values must be a non-empty 2-D array")
    source_height, source_width = values.shape
    small = _shrink(values, max_side)
    low, high = float(small.min()), float(small.max())
    if float(np.abs(small - np.rint(small)).max(initial=0.0)) < 1e-3 and high - low < LEVELS:
        scale = 1.0  # integer data of 12 bits or less (8-bit PNG/JPEG, 12-bit CR) is kept exactly
    else:
        scale = (high - low) / (LEVELS - 1) if high > low else 1.0
    quantised = np.clip(np.rint((small - low) / scale), 0, 65535).astype("<u2")
    centre, width = _auto_window(small)
    lo, hi = full_range or (low, high)
    windows = [
        *(header_windows or []),
        {"name": "Auto (0.5-99.5 %)", "center": centre, "width": width},
        {"name": "Full range", "center": (lo + hi) / 2.0, "width": max(hi - lo, 1e-6)},
    ]
    return DisplaySource(quantised, low, scale, invert, windows, units, source_width, source_height)


def encode(source: DisplaySource, *, level: int = 1) -> tuple[bytes, dict[str, Any]]:
    """(zlib bytes, description). Level 1: most of the gain for a fraction of the time."""
    return zlib.compress(np.ascontiguousarray(source.values).tobytes(), level), source.describe()
