"""STOW-RS request bodies: multipart/related read from the socket into temporary files.

A STOW-RS request may be large and is often sent with ``Transfer-Encoding: chunked``
(dicomweb-client does so above 1 MB). Under WSGI, Django wraps ``wsgi.input`` in a
stream limited to Content-Length, which is 0 for a chunked request, so ``request.body``
is empty; DRF then skips parsing altogether. A server that decodes the chunked framing
itself says so with ``wsgi.input_terminated`` (gunicorn does), and then the body is read
from ``wsgi.input`` until its end. Parts are written to temporary files as they arrive,
so memory holds one read buffer, never the request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from django.core.files.uploadedfile import TemporaryUploadedFile
from django.http import HttpRequest
from rest_framework import exceptions, parsers
from rest_framework.request import Request

from classifier.api.errors import ApiError

READ_SIZE = 256 * 1024
MAX_HEADER_BYTES = 16 * 1024


def content_type_params(content_type: str) -> dict[str, str]:
    found = {}
    for key, value in re.findall(r';\s*([\w-]+)\s*=\s*("[^"]*"|[^;]*)', content_type):
        found[key.lower()] = value.strip().strip('"')
    return found


def is_chunked(request: HttpRequest) -> bool:
    return "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()


def body_stream(request: HttpRequest) -> Any:
    """The stream to read a request body from; None when it has none.

    A chunked request on a server that does not decode chunked framing (Django's
    development server) is refused with 411: its body cannot be read safely.
    """
    if request.META.get("CONTENT_LENGTH"):
        return request
    if not is_chunked(request):
        return None
    if not request.META.get("wsgi.input_terminated"):
        raise ApiError("length_required", "This server needs a Content-Length; send the request unchunked.", 411)
    return request.META["wsgi.input"]


class StreamingRequest(Request):
    """A DRF request that reads a chunked body from the WSGI server's decoded input."""

    def _load_stream(self) -> None:
        if is_chunked(self._request) and not self._request.META.get("CONTENT_LENGTH"):
            self._stream = body_stream(self._request)
        else:
            super()._load_stream()  # type: ignore[misc]


@dataclass
class Part:
    """One body part on disk; ``too_large`` parts were counted but not kept."""

    content_type: str
    file: TemporaryUploadedFile
    size: int = 0
    too_large: bool = False


class _Reader:
    """Buffered reads with a limit on the total number of bytes taken from the stream."""

    def __init__(self, stream: BinaryIO, max_total: int) -> None:
        self.stream, self.max_total, self.total = stream, max_total, 0
        self.buffer, self.eof = b"", False

    def fill(self) -> bool:
        if self.eof:
            return False
        chunk = self.stream.read(READ_SIZE)
        if not chunk:
            self.eof = True
            return False
        self.total += len(chunk)
        if self.total > self.max_total:
            raise ApiError("request_too_large", f"The request is larger than {self.max_total // 2**20} MiB.", 413)
        self.buffer += chunk
        return True


def read_parts(
    stream: BinaryIO, boundary: bytes, *, max_part_bytes: int, max_total_bytes: int, max_parts: int
) -> list[Part]:
    """The parts of a multipart body, each in a temporary file; ParseError when malformed."""
    reader = _Reader(stream, max_total_bytes)
    reader.buffer = b"\r\n"  # so a delimiter at the very start matches like any other
    delimiter = b"\r\n--" + boundary
    if not _skip_to(reader, delimiter):
        raise exceptions.ParseError("The multipart body has no parts.")
    parts: list[Part] = []
    while True:
        while len(reader.buffer) < 2 and reader.fill():
            pass
        if reader.buffer.startswith(b"--") or not reader.buffer:
            return parts  # the close delimiter (or a body cut right after a delimiter)
        if len(parts) >= max_parts:
            raise ApiError("too_many_instances", f"At most {max_parts} instances per request.", 413)
        headers = _headers(reader)
        upload = TemporaryUploadedFile("part.dcm", headers.get("content-type", "application/dicom"), 0, None)
        part = Part(content_type=headers.get("content-type", "application/dicom"), file=upload)
        parts.append(part)
        _copy_until(reader, delimiter, part, max_part_bytes)
        part.file.seek(0)


def _skip_to(reader: _Reader, delimiter: bytes) -> bool:
    while True:
        index = reader.buffer.find(delimiter)
        if index >= 0:
            reader.buffer = reader.buffer[index + len(delimiter) :]
            return True
        reader.buffer = reader.buffer[-(len(delimiter) - 1) :]
        if not reader.fill():
            return False


def _headers(reader: _Reader) -> dict[str, str]:
    """Part headers after a delimiter line; a part may have none (an empty line)."""
    while b"\r\n" not in reader.buffer and reader.fill():
        pass
    _, sep, rest = reader.buffer.partition(b"\r\n")  # transport padding after the delimiter
    if not sep:
        raise exceptions.ParseError("A multipart delimiter is not followed by a line break.")
    reader.buffer = rest
    while len(reader.buffer) < 2 and reader.fill():
        pass
    if reader.buffer.startswith(b"\r\n"):
        reader.buffer = reader.buffer[2:]
        return {}
    while b"\r\n\r\n" not in reader.buffer:
        if len(reader.buffer) > MAX_HEADER_BYTES or not reader.fill():
            raise exceptions.ParseError("A multipart part has no header/body separator.")
    head, _, reader.buffer = reader.buffer.partition(b"\r\n\r\n")
    headers = {}
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


def _copy_until(reader: _Reader, delimiter: bytes, part: Part, max_bytes: int) -> None:
    keep = len(delimiter) - 1
    while True:
        index = reader.buffer.find(delimiter)
        if index >= 0:
            _write(part, reader.buffer[:index], max_bytes)
            reader.buffer = reader.buffer[index + len(delimiter) :]
            return
        if len(reader.buffer) > keep:
            _write(part, reader.buffer[:-keep], max_bytes)
            reader.buffer = reader.buffer[-keep:]
        if not reader.fill():
            raise exceptions.ParseError("The multipart body ends inside a part (no close delimiter).")


def _write(part: Part, data: bytes, max_bytes: int) -> None:
    part.size += len(data)
    if part.size > max_bytes:
        part.too_large = True
    if not part.too_large:
        part.file.write(data)


class MultipartRelatedParser(parsers.BaseParser):
    """multipart/related; type="application/dicom" -> {"parts": [Part, ...]} on disk."""

    media_type = "multipart/related"

    def parse(
        self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> dict:
        params = content_type_params(media_type or "")
        if params.get("type", "application/dicom").lower() != "application/dicom":
            raise exceptions.UnsupportedMediaType(media_type or "", detail="Only application/dicom parts are accepted.")
        boundary = params.get("boundary")
        if not boundary:
            raise exceptions.ParseError("The multipart/related request has no boundary.")
        view = (parser_context or {}).get("view")
        parts = read_parts(
            stream,
            boundary.encode("latin-1"),
            max_part_bytes=view.max_part_bytes(),  # type: ignore[union-attr]
            max_total_bytes=view.max_total_bytes(),  # type: ignore[union-attr]
            max_parts=view.max_parts,  # type: ignore[union-attr]
        )
        return {"parts": parts}
