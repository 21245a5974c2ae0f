"""PNG and JPEG decoding with Pillow for untrusted uploads.

Pillow's ``Image.open`` only parses headers, so the size is checked against the
limits before ``load()`` allocates. Only the sniffed format's plugin is allowed to
open the bytes, so a file cannot be routed to an unexpected decoder.

Decompression-bomb guard: our own width x height check runs before any pixel is
decoded, with a ceiling of ``min(limits.max_pixels, Image.MAX_IMAGE_PIXELS)``, and
Pillow's ``DecompressionBombError`` (raised by ``open``) is mapped to ImageTooLarge.
This avoids changing Pillow's process-wide warning filters, which is not thread-safe.
"""

from __future__ import annotations

import io
from typing import Any, NamedTuple

import cv2
import numpy as np
from PIL import Image, ImageOps

from .errors import CorruptImage, ImageTooLarge, ImageTooSmall, MultiFrameImage
from .limits import DecodeLimits

__all__ = ["EMPTY_METADATA_KEYS", "RasterResult", "decode_raster"]

EMPTY_METADATA_KEYS = (
    "patient_id",
    "patient_name",
    "patient_birth_date",
    "patient_sex",
    "accession_number",
    "study_instance_uid",
    "sop_instance_uid",
    "series_instance_uid",
    "sop_class_uid",
    "series_number",
    "instance_number",
    "study_date",
    "modality",
    "view_position",
    "body_part_examined",
    "photometric_interpretation",
    "pixel_spacing",
    "bits_stored",
    "transfer_syntax",
)
EXIF_ORIENTATION = 0x0112
_PLUGIN = {"PNG": ["PNG"], "JPEG": ["JPEG", "MPO"]}


class RasterResult(NamedTuple):
    pixels: np.ndarray  # float32, 2-D, [0, 1]
    bit_depth: int
    metadata: dict[str, Any]
    colour_fraction: float = 0.0  # share of clearly coloured pixels before the grey conversion


def open_raster(data: bytes, fmt: str, limits: DecodeLimits) -> Image.Image:
    """Open a PNG or JPEG lazily (header only) and check its size against the limits.

    The caller closes the returned image (use it as a context manager).
    """
    try:
        image = Image.open(io.BytesIO(data), formats=_PLUGIN[fmt])
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge() from exc
    except Exception as exc:
        raise CorruptImage(f"The {fmt} file is damaged and cannot be read.") from exc
    try:
        _check_size(image.size, limits)
        frames = getattr(image, "n_frames", 1)
        if frames > 1:  # an animated PNG: which frame is the radiograph is anyone's guess
            raise MultiFrameImage(f"The {fmt} is animated ({frames} frames); upload a single radiograph.")
    except BaseException:
        image.close()
        raise
    return image


def decode_raster(data: bytes, fmt: str, limits: DecodeLimits) -> RasterResult:
    """Decode a PNG or JPEG to float32 [0, 1] greyscale with EXIF orientation applied."""
    with open_raster(data, fmt, limits) as image:
        try:
            image.load()
            upright = _upright(image)
            pixels, bit_depth = to_grey(upright)
            colour = colour_fraction(upright)
        except MemoryError as exc:
            raise ImageTooLarge() from exc
        except Exception as exc:
            raise CorruptImage(f"The {fmt} file is damaged or incomplete and cannot be read.") from exc
    metadata: dict[str, Any] = dict.fromkeys(EMPTY_METADATA_KEYS)
    metadata["bits_stored"] = bit_depth
    metadata["photometric_interpretation"] = "MONOCHROME2"
    return RasterResult(pixels, bit_depth, metadata, colour)


def colour_fraction(image: Image.Image, side: int = 256) -> float:
    """The share of clearly coloured pixels (channel spread over 40 of 255), on a thumbnail;
    0 for greyscale modes. A radiograph is grey; a photograph is not (classifier.imaging.screening)."""
    if image.mode in ("1", "L", "LA", "La", "I", "F") or image.mode.startswith("I;"):
        return 0.0
    thumb = image.convert("RGB")
    thumb.thumbnail((side, side))
    rgb = np.asarray(thumb).astype(np.int16)
    spread = rgb.max(axis=-1) - rgb.min(axis=-1)
    return float((spread > 40).mean())


def _upright(image: Image.Image) -> Image.Image:
    """Apply EXIF orientation; skip the full-image copy when there is nothing to do."""
    if image.getexif().get(EXIF_ORIENTATION, 1) in (2, 3, 4, 5, 6, 7, 8):
        return ImageOps.exif_transpose(image)
    return image


def _check_size(size: tuple[int, int], limits: DecodeLimits) -> None:
    width, height = size
    ceiling = limits.max_pixels
    if Image.MAX_IMAGE_PIXELS:
        ceiling = min(ceiling, int(Image.MAX_IMAGE_PIXELS))
    if width * height > ceiling or max(width, height) > limits.max_dimension:
        raise ImageTooLarge(f"The image is {width} x {height} pixels, more than the upload limit.")
    if min(width, height) < limits.min_dimension:
        raise ImageTooSmall(f"The image is only {width} x {height} pixels, too small to read.")


def to_grey(image: Image.Image) -> tuple[np.ndarray, int]:
    """Any Pillow mode -> (float32 [0, 1] 2-D array, bit depth); alpha composited on black.

    Colour goes through Pillow's own "L" conversion (ITU-R 601 luma, rounded to 8 bits),
    the same conversion that produced the 8-bit training copies, and avoids a float
    copy of all three channels (hundreds of MB for a large photo of a film).
    """
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return _scaled(np.asarray(image), 65535.0), 16
    if mode == "I":  # 16-bit PNG greyscale on some Pillow versions
        values = np.asarray(image).astype(np.float32)
        return np.clip(values / np.float32(65535.0), 0.0, 1.0), 16
    if mode == "F":
        return np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0), 32
    has_alpha = mode in ("LA", "La", "RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        if mode not in ("LA", "RGBA"):
            image = image.convert("RGBA")
        la = np.asarray(image.convert("LA"))
        return cv2.multiply(la[..., 0], la[..., 1], dtype=cv2.CV_32F, scale=1.0 / 65025.0), 8
    grey = image if mode == "L" else image.convert("L")
    return _scaled(np.asarray(grey), 255.0), 1 if mode == "1" else 8


def _scaled(values: np.ndarray, full_scale: float) -> np.ndarray:
    """values / full_scale as float32 in one pass (no intermediate float copy)."""
    return np.asarray(np.divide(values, np.float32(full_scale), dtype=np.float32))
