"""Header-only validation of an upload: what the web process may afford per request.

``probe_bytes`` decides the format from content, applies the size, pixel-count and DICOM
structure limits and the chest/single-frame policy, and extracts metadata, all without
decoding pixel data. Pixels are decoded later by the worker, under a time limit, with
``decode_bytes``; a file that passes here can still fail there (e.g. a truncated
pixel stream), which then ends as a failed prediction with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .decode import check_upload
from .dicom import check_dimensions, check_payload, check_policy, dicom_metadata, read_dataset
from .errors import CorruptImage, ImagingError
from .header_values import check_header_values
from .limits import DEFAULT_LIMITS, DecodeLimits
from .raster import EMPTY_METADATA_KEYS, open_raster


@dataclass(frozen=True)
class ProbeResult:
    """What the header says: format, pixel size and the contract metadata keys."""

    format: str
    width: int
    height: int
    metadata: dict[str, Any] = field(default_factory=dict)


def probe_bytes(data: bytes, *, limits: DecodeLimits | None = None) -> ProbeResult:
    """Validate an upload from its headers; raise an ImagingError subclass on refusal."""
    limits = limits or DEFAULT_LIMITS
    data, fmt = check_upload(data, limits)
    try:
        return _probe_dicom(data, limits) if fmt == "DICOM" else _probe_raster(data, fmt, limits)
    except ImagingError:
        raise
    except Exception as exc:  # no library error may escape as a 500
        raise CorruptImage(f"The {fmt} file is damaged and cannot be read.") from exc


def _probe_dicom(data: bytes, limits: DecodeLimits) -> ProbeResult:
    ds = read_dataset(data, limits)
    check_header_values(ds)
    check_policy(ds)
    rows, cols = check_dimensions(ds, limits)
    check_payload(ds, rows, cols)
    return ProbeResult(format="DICOM", width=cols, height=rows, metadata=dicom_metadata(ds))


def _probe_raster(data: bytes, fmt: str, limits: DecodeLimits) -> ProbeResult:
    with open_raster(data, fmt, limits) as image:
        width, height = image.size
        if fmt == "JPEG" and image.getexif().get(0x0112, 1) in (5, 6, 7, 8):
            width, height = height, width  # EXIF rotation by 90 degrees swaps the displayed size
    metadata: dict[str, Any] = dict.fromkeys(EMPTY_METADATA_KEYS)
    metadata["photometric_interpretation"] = "MONOCHROME2"
    return ProbeResult(format=fmt, width=width, height=height, metadata=metadata)
