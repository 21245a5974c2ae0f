"""Stored files: the one rule for generated names, the sha256 of a stored stream, and
local copies for code that must read a path (the trainers).

A client's file name never reaches the filesystem: every stored file gets a fresh random
name, spread over 256 folders so no directory grows without bound. Stored names are
never reused for other content, so a local copy of one stays valid.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from django.conf import settings
from django.core.files.storage import default_storage

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


# Libraries whose exceptions mean "the storage backend did not answer" (an S3 endpoint
# down, throttling, a 5xx): not a bad file, worth the tasks' retry.
_BACKEND_MODULES = ("botocore", "boto3", "s3transfer", "urllib3")


@contextlib.contextmanager
def storage_unavailable_as_oserror(what: str) -> Iterator[None]:
    """Re-raise a storage backend's own errors as OSError (what the tasks retry); a
    missing file stays FileNotFoundError and any other error is left as it is."""
    try:
        yield
    except OSError:
        raise
    except Exception as exc:
        if not type(exc).__module__.startswith(_BACKEND_MODULES):
            raise
        raise OSError(f"storage unavailable {what}: {exc}") from exc


def local_path(name: str) -> Path:
    """Where stored file ``name`` can be read as a path on this host: its own file on the
    local disk, or (object storage) its copy under ``CXR_VAR_DIR/media-cache``, which
    ``local_copies_fetch`` fills. No I/O."""
    try:
        return Path(default_storage.path(name))
    except NotImplementedError:  # S3 and other remote storages have no local path
        return Path(settings.VAR_DIR) / "media-cache" / name


def local_copies_fetch(names: Iterable[str]) -> int:
    """Download the stored files whose ``local_path`` is not there yet; returns how many.
    Each copy is written under a temporary name and renamed, so a reader never sees half."""
    fetched = 0
    for name in names:
        target = local_path(name)
        if target.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{uuid.uuid4().hex}.part")
        try:
            with default_storage.open(name, "rb") as source, partial.open("wb") as out:
                for chunk in source.chunks():
                    out.write(chunk)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        fetched += 1
    return fetched
