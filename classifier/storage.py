"""Stored files: the one rule for generated names, and the sha256 of a stored stream.

A client's file name never reaches the filesystem: every stored file gets a fresh random
name, spread over 256 folders so no directory grows without bound.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Protocol

# The stored suffix of each accepted format (the format is sniffed from the content).
SUFFIXES = {"DICOM": ".dcm", "PNG": ".png", "JPEG": ".jpg"}


class ReadableStream(Protocol):
    """What hashlib.file_digest reads (an open file, Django's File and UploadedFile)."""

    def readable(self) -> bool: ...
    def readinto(self, buffer: bytearray) -> int: ...
    def seek(self, offset: int) -> int: ...


def generated_name(prefix: str, suffix: str = "") -> str:
    """``<prefix>/<2 hex>/<32 hex><suffix>``, new on every call."""
    token = uuid.uuid4().hex
    return f"{prefix}/{token[:2]}/{token}{suffix}"


def stream_sha256(handle: ReadableStream) -> str:
    """sha256 of a binary stream from its start, read in chunks; the stream is rewound after."""
    handle.seek(0)
    digest = hashlib.file_digest(handle, "sha256").hexdigest()
    handle.seek(0)
    return digest
