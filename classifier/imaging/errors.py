"""Typed failures of the imaging package.

Every error that leaves :func:`classifier.imaging.decode.decode_bytes` is an
:class:`ImagingError` subclass. Each carries a machine-readable ``code`` (stable,
safe to store and branch on) and a ``message``: one sentence a clinician can read,
which never contains file contents or stack traces. ``str(err) == err.message``.
"""

from __future__ import annotations

__all__ = [
    "BlankImage",
    "CorruptImage",
    "EmptyFile",
    "FileTooLarge",
    "ImageTooLarge",
    "ImageTooSmall",
    "ImagingError",
    "InvalidHeaderValue",
    "LimitExceeded",
    "MultiFrameImage",
    "NoPixelData",
    "NotChestRadiograph",
    "SuspiciousFile",
    "UnsupportedFormat",
    "UnsupportedImage",
]


class ImagingError(Exception):
    """Base class: ``code`` is machine-readable, ``message`` is one readable sentence."""

    code: str = "imaging_error"
    default_message: str = "The image could not be processed."

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        self.message: str = message or self.default_message
        if code is not None:
            self.code = code
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, str]:
        """JSON-friendly form, e.g. for an API error body."""
        return {"code": self.code, "message": self.message}


class UnsupportedFormat(ImagingError):
    code = "unsupported_format"
    default_message = "This file is not a DICOM, PNG or JPEG image."


class EmptyFile(UnsupportedFormat):
    code = "empty_file"
    default_message = "The file is empty."


class LimitExceeded(ImagingError):
    """A configured safety limit (size, depth, element length) was exceeded."""

    code = "limit_exceeded"
    default_message = "The file exceeds a safety limit for uploads."


class FileTooLarge(LimitExceeded):
    code = "file_too_large"
    default_message = "The file is larger than the upload limit."


class ImageTooLarge(LimitExceeded):
    code = "image_too_large"
    default_message = "The image has more pixels than the upload limit allows."


class ImageTooSmall(ImagingError):
    code = "image_too_small"
    default_message = "The image is too small to be a diagnostic radiograph."


class InvalidHeaderValue(ImagingError):
    """An identifying header value the DICOM standard does not allow (NUL, over-length)."""

    code = "invalid_header_value"
    default_message = "A value in the DICOM header is not valid for its attribute."


class CorruptImage(ImagingError):
    code = "corrupt_image"
    default_message = "The image file is damaged or incomplete and cannot be read."


class SuspiciousFile(ImagingError):
    code = "suspicious_file"
    default_message = "The file contains executable content and was rejected."


class UnsupportedImage(ImagingError):
    """A readable file whose content this service does not handle."""

    code = "unsupported_image"
    default_message = "This kind of image is not supported."


class MultiFrameImage(UnsupportedImage):
    code = "multi_frame"
    default_message = "Multi-frame images are not supported; upload a single radiograph."


class NoPixelData(UnsupportedImage):
    code = "no_pixel_data"
    default_message = "The DICOM file contains no image."


class NotChestRadiograph(UnsupportedImage):
    code = "not_chest_radiograph"
    default_message = "The DICOM file does not describe a chest radiograph."


class BlankImage(UnsupportedImage):
    code = "blank_image"
    default_message = "The image is blank (all pixels have the same value)."
