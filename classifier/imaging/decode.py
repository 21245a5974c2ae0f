"""Decode untrusted DICOM, PNG and JPEG bytes into one greyscale float image.

Contract (docs/contracts.md): content decides the format, never a file name;
every failure is an :class:`~classifier.imaging.errors.ImagingError` subclass;
the result is 2-D float32 in [0, 1] with bone bright (MONOCHROME2).

All functions are pure and thread-safe: no global Pillow or pydicom setting is
changed.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .dicom import EXECUTABLE_MAGICS, DisplayInput, decode_dicom
from .errors import (
    CorruptImage,
    EmptyFile,
    FileTooLarge,
    ImageTooLarge,
    ImageTooSmall,
    ImagingError,
    LimitExceeded,
    SuspiciousFile,
    UnsupportedFormat,
)
from .limits import DEFAULT_LIMITS, DecodeLimits
from .raster import decode_raster

if TYPE_CHECKING:
    from .display import DisplaySource

__all__ = ["FORMATS", "DecodedImage", "decode_bytes", "decode_file", "sniff_format"]

FORMATS = ("DICOM", "PNG", "JPEG")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8\xff"
_DICOM_START_GROUPS = (0x0002, 0x0008)
_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()
)


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """A decoded radiograph.

    ``pixels`` is a 2-D float32 array in [0, 1], bone bright; ``width`` and
    ``height`` describe it; ``bit_depth`` is the stored precision of the source;
    ``metadata`` holds the contract keys (JSON-serialisable, None when absent).
    """

    pixels: np.ndarray
    format: str
    width: int
    height: int
    bit_depth: int
    metadata: dict[str, Any] = field(default_factory=dict)
    # DICOM greyscale: the original values and header windows, for a viewer (see display.py)
    display: DisplayInput | None = field(default=None, repr=False)
    # PNG/JPEG: share of clearly coloured pixels before the grey conversion (screening.py)
    colour_fraction: float = 0.0

    def display_source(self, max_side: int = 1536) -> DisplaySource:
        """The film for a viewer: original values, presets, the geometry of ``pixels``."""
        from .display import display_source

        if self.display is not None:
            d = self.display
            return display_source(d.values, header_windows=d.windows, invert=d.invert, units=d.units, max_side=max_side)
        top = float(2**self.bit_depth - 1) if self.bit_depth else 255.0
        return display_source(self.pixels * np.float32(top), full_range=(0.0, top), max_side=max_side)


def sniff_format(data: bytes) -> str:
    """Return "DICOM", "PNG" or "JPEG" from magic bytes, else raise UnsupportedFormat.

    DICOM is either "DICM" at offset 128 or a preamble-less stream starting with a
    group 0002/0008 element whose VR or length is plausible.
    """
    if not data:
        raise EmptyFile()
    if data[128:132] == b"DICM":
        return "DICOM"
    if data.startswith(PNG_SIGNATURE):
        return "PNG"
    if data.startswith(JPEG_SOI):
        return "JPEG"
    if _looks_like_bare_dicom(data):
        return "DICOM"
    raise UnsupportedFormat()


def _looks_like_bare_dicom(data: bytes) -> bool:
    if len(data) < 12:
        return False
    for order in ("<", ">"):
        group, _element = struct.unpack(order + "HH", data[:4])
        if group not in _DICOM_START_GROUPS:
            continue
        if data[4:6] in _VRS:
            return True
        (length,) = struct.unpack(order + "I", data[4:8])
        if order == "<" and 0 < length <= len(data) - 8:
            return True
    return False


def check_upload(data: Any, limits: DecodeLimits) -> tuple[bytes, str]:
    """The checks every upload passes first (type, size, executable, format by content).

    Returns the bytes and their format; shared by decode_bytes and the header probe.
    """
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise UnsupportedFormat("The upload is not a file.")
    if len(data) > limits.max_bytes:
        raise FileTooLarge(
            f"The file is {len(data) // (1024 * 1024)} MiB, more than the "
            f"{limits.max_bytes // (1024 * 1024)} MiB upload limit."
        )
    if data.startswith(EXECUTABLE_MAGICS):
        raise SuspiciousFile("The file is an executable program, not an image.")
    return data, sniff_format(data)


def decode_bytes(data: bytes, *, limits: DecodeLimits | None = None) -> DecodedImage:
    """Decode an upload; raise an ImagingError subclass (never anything else) on failure.

    Limits are checked from headers before pixels are decoded.
    """
    limits = limits or DEFAULT_LIMITS
    data, fmt = check_upload(data, limits)
    try:
        display, colour = None, 0.0
        if fmt == "DICOM":
            pixels, bit_depth, metadata, display = decode_dicom(data, limits)
        else:
            pixels, bit_depth, metadata, colour = decode_raster(data, fmt, limits)
        return _finish(pixels, fmt, bit_depth, metadata, limits, display, colour)
    except ImagingError:
        raise
    except MemoryError as exc:
        raise ImageTooLarge() from exc
    except RecursionError as exc:
        raise LimitExceeded("The file is structured too deeply to read safely.") from exc
    except Exception as exc:  # last line of defence: no bare library error escapes
        raise CorruptImage(f"The {fmt} file is damaged and cannot be read.") from exc


def _finish(
    pixels: np.ndarray,
    fmt: str,
    bit_depth: int,
    metadata: dict[str, Any],
    limits: DecodeLimits,
    display: DisplayInput | None = None,
    colour_fraction: float = 0.0,
) -> DecodedImage:
    if pixels.ndim != 2:
        raise CorruptImage("The image could not be reduced to a single greyscale plane.")
    height, width = pixels.shape
    if min(height, width) < limits.min_dimension:
        raise ImageTooSmall(f"The image is only {width} x {height} pixels, too small to read.")
    pixels = np.ascontiguousarray(pixels, dtype=np.float32)
    if not np.isfinite(pixels).all():
        raise CorruptImage("The image contains invalid pixel values.")
    np.clip(pixels, 0.0, 1.0, out=pixels)
    return DecodedImage(
        pixels=pixels,
        format=fmt,
        width=int(width),
        height=int(height),
        bit_depth=int(bit_depth),
        metadata=metadata,
        display=display,
        colour_fraction=colour_fraction,
    )


def decode_file(path: str | os.PathLike[str], *, limits: DecodeLimits | None = None) -> DecodedImage:
    """Read at most ``limits.max_bytes + 1`` bytes from ``path`` and decode them."""
    limits = limits or DEFAULT_LIMITS
    try:
        with open(path, "rb") as handle:
            data = handle.read(limits.max_bytes + 1)
    except OSError as exc:
        raise UnsupportedFormat("The file could not be opened.") from exc
    return decode_bytes(data, limits=limits)
