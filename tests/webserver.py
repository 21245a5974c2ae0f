"""A real gunicorn for tests, started as scripts/run.sh starts it (./gunicorn.conf.py is
read by default), on the tests' own port."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.conftest import ROOT, wait_for

PORT = 8103
BASE = f"http://127.0.0.1:{PORT}"


@contextmanager
def gunicorn_server(
    env: dict[str, str], log_dir: Path | str, workers: int = 2, extra_args: tuple[str, ...] = ()
) -> Iterator[str]:
    """Yields the base URL once /healthz answers anything; stops the server afterwards."""
    log_path = Path(log_dir) / f"gunicorn-{time.time_ns()}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "cxrsite.wsgi",
                "-b",
                f"127.0.0.1:{PORT}",
                "--workers",
                str(workers),
                *extra_args,
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def up() -> bool:
            if proc.poll() is not None:
                return True  # exited: fail below with its log
            try:
                requests.get(f"{BASE}/healthz", timeout=2)
            except requests.RequestException:
                return False
            return True

        try:
            wait_for(up, timeout=60, interval=0.2, message=log_path.read_text)
            assert proc.poll() is None, log_path.read_text()
            yield BASE
        finally:
            proc.terminate()
            proc.wait(timeout=30)
