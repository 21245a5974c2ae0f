"""API fixtures: DICOM files and a local webhook receiver (clients per role and synthetic_dicom are in tests/conftest.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import synthetic_dicom  # re-exported for the API tests


@pytest.fixture
def dicom_bytes() -> Callable[..., bytes]:
    return synthetic_dicom


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: records requests, answers the next queued status codes."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    got: threading.Event = field(default_factory=threading.Event)

    def verify(self, request: dict[str, Any], secret: str) -> bool:
        expected = "sha256=" + hmac.new(secret.encode(), request["body"], hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, request["headers"].get("X-CXR-Signature", ""))

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.requests]


@pytest.fixture
def webhook_receiver() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            receiver.requests.append({"body": body, "headers": dict(self.headers.items()), "path": self.path})
            code = receiver.statuses.pop(0) if receiver.statuses else 200
            self.send_response(code)
            self.end_headers()
            receiver.got.set()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()
