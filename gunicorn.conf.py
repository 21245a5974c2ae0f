"""gunicorn settings of every deployment (gunicorn reads ./gunicorn.conf.py by default, so
scripts/run.sh and the Docker image both use it; command-line flags override it).

Threads, not sync workers: a client that sends its body slowly holds one thread, not the
whole process, and the body of every request must arrive within CXR_REQUEST_BODY_TIMEOUT
seconds in total (not per read), after which the read fails and the thread is free.
Oversized declared bodies never get that far (classifier.middleware).
"""

from __future__ import annotations

import socket
import time
from typing import Any

from cxrsite.boot import configure

configure()

from django.conf import settings  # noqa: E402

worker_class = "gthread"
# The access log without patient identifiers from query strings.
logger_class = "cxrsite.accesslog.RedactingLogger"
threads = 8
timeout = 60
body_timeout = float(settings.CXR["REQUEST_BODY_TIMEOUT"])


class DeadlineReader:
    """Wraps gunicorn's body reader: every read gets the time left until one deadline as its
    socket timeout, so a body trickled a byte at a time cannot outlast the deadline."""

    def __init__(self, reader: Any, sock: socket.socket, deadline: float) -> None:
        self.reader, self.sock, self.deadline = reader, sock, deadline

    def read(self, size: int) -> bytes:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request body did not arrive in time")
        self.sock.settimeout(remaining)
        return self.reader.read(size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.reader, name)


def pre_request(worker: Any, req: Any) -> None:
    sock = getattr(req.unreader, "sock", None)
    body = getattr(req, "body", None)
    if isinstance(sock, socket.socket) and body is not None and hasattr(body, "reader"):
        body.reader = DeadlineReader(body.reader, sock, time.monotonic() + body_timeout)
