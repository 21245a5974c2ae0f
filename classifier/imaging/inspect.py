"""A diagnostic report of one image's path through the pipeline (``inspect_image``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from .decode import decode_bytes
from .limits import DecodeLimits
from .preprocess import PreprocessConfig, preprocess_with_stages, save_stages

__all__ = ["inspect_bytes", "pixel_statistics"]

PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
BLANK_STD = 1e-3  # below this the image carries no usable contrast


def pixel_statistics(pixels: np.ndarray) -> dict[str, Any]:
    """min/max/mean/std and percentiles of a [0, 1] image, rounded for display."""
    values = np.percentile(pixels, PERCENTILES)
    return {
        "min": round(float(pixels.min()), 5),
        "max": round(float(pixels.max()), 5),
        "mean": round(float(pixels.mean()), 5),
        "std": round(float(pixels.std()), 5),
        "percentiles": {f"p{p}": round(float(v), 5) for p, v in zip(PERCENTILES, values, strict=False)},
    }


def inspect_bytes(
    data: bytes,
    *,
    config: PreprocessConfig | None = None,
    limits: DecodeLimits | None = None,
    save_stages_to: str | Path | None = None,
) -> dict[str, Any]:
    """JSON-serialisable report: format, size, bit depth, metadata, pixel statistics,
    decode time and each preprocessing stage's summary and time. With ``save_stages_to``
    each stage's image is also written there as PNG. Raises ImagingError."""
    config = config or PreprocessConfig()
    start = time.perf_counter()
    decoded = decode_bytes(data, limits=limits)
    decode_ms = (time.perf_counter() - start) * 1000.0
    output, reports = preprocess_with_stages(decoded.pixels, config)
    if save_stages_to is not None:
        save_stages(reports, save_stages_to)
    return {
        "format": decoded.format,
        "width": decoded.width,
        "height": decoded.height,
        "bit_depth": decoded.bit_depth,
        "metadata": decoded.metadata,
        "pixel_statistics": pixel_statistics(decoded.pixels),
        "decode_ms": round(decode_ms, 3),
        "stages": [report.to_dict() for report in reports],
        "total_ms": round(decode_ms + sum(r.elapsed_ms for r in reports), 3),
        "output_shape": list(output.shape),
        "config": config.to_dict(),
    }
