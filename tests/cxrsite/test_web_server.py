"""The web tier under slow and oversized bodies: a real gunicorn, started the way
scripts/run.sh and the Docker image start it (./gunicorn.conf.py is read by default)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import requests
from django.conf import settings
from django.test import Client

from tests.webserver import PORT, gunicorn_server

HUGE = 2 * 1024**3


def _slow_post(path: str) -> socket.socket:
    """Declare a 2 GiB multipart body, send 1 KiB of it, keep the connection open."""
    sock = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: multipart/form-data; boundary=xyz\r\n"
        f"Content-Length: {HUGE}\r\n\r\n"
    )
    sock.sendall(head.encode() + b"--xyz\r\n" + b"a" * 1024)
    return sock


@pytest.fixture
def gunicorn(worker_env) -> Iterator[str]:
    with gunicorn_server(worker_env, worker_env["CXR_VAR_DIR"]) as base:
        yield base


def test_two_clients_declaring_2gb_bodies_do_not_delay_a_third(gunicorn) -> None:
    slow = [_slow_post("/accounts/login/"), _slow_post("/api/v1/images/")]
    try:
        time.sleep(0.3)  # both are inside the workers now
        started = time.monotonic()
        response = requests.get(f"http://127.0.0.1:{PORT}/healthz", timeout=10)
        elapsed = time.monotonic() - started
        assert response.status_code == 200
        assert elapsed < 1.0, f"the third client waited {elapsed:.1f} s"
        # Both were refused from their declared length, without waiting for the body.
        for sock in slow:
            sock.settimeout(2)
            assert sock.recv(64).startswith(b"HTTP/1.1 413")
    finally:
        for sock in slow:
            sock.close()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/accounts/login/", "text/plain"),
        ("/api/v1/images/", "application/json"),
        ("/dicomweb/studies", "application/json"),
        ("/fhir/Patient/1", "application/fhir+json"),
    ],
)
def test_declared_body_over_the_limit_is_refused_before_csrf_reads_it(path: str, content_type: str) -> None:
    client = Client(enforce_csrf_checks=True)
    # STOW-RS streams many instances and has its own, larger ceiling.
    limit = settings.CXR["STOW_MAX_BYTES" if path == "/dicomweb/studies" else "MAX_REQUEST_BYTES"]
    response = client.post(
        path,
        data=b"--xyz\r\n" + b"a" * 1024,
        content_type="multipart/form-data; boundary=xyz",
        CONTENT_LENGTH=str(max(HUGE, limit + 1)),
    )
    assert response.status_code == 413
    assert response["Content-Type"].startswith(content_type)
    if content_type == "application/json":
        assert response.json()["error"]["code"] == "request_too_large"
    elif content_type == "application/fhir+json":
        assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.django_db
def test_malformed_content_length_is_a_400_in_the_api_shape() -> None:
    response = Client().post("/api/v1/images/", data=b"x", content_type="application/json", CONTENT_LENGTH="12x")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_content_length"
