"""The access log of a real gunicorn (started as run.sh starts it, with an access log)
names paths and parameters but never the patient identifiers in query values."""

from __future__ import annotations

import time
from pathlib import Path

import requests

from cxrsite.accesslog import redact_query, redact_url
from tests.webserver import gunicorn_server


def test_query_values_are_redacted_except_paging_and_sorting() -> None:
    assert redact_query("q=MRN-1&page=2&sort=-priority") == "q=-&page=2&sort=-priority"
    assert redact_url("https://h/dicomweb/studies?PatientID=MRN-2#x") == "https://h/dicomweb/studies?PatientID=-"
    assert redact_query("") == ""


def test_the_access_log_holds_no_mrn_from_query_strings(worker_env, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with gunicorn_server(worker_env, tmp_path, extra_args=("--access-logfile", str(log))) as base:
        for path in (
            "/?q=MRN-SECRET-1",
            "/dicomweb/studies?PatientID=MRN-SECRET-2",
            "/api/v1/studies/?mrn=MRN-SECRET-3&page=2",
        ):
            requests.get(f"{base}{path}", headers={"Referer": f"{base}/?q=MRN-SECRET-4"}, timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and log.read_text().count("\n") < 4:  # /healthz + the three
            time.sleep(0.1)
    text = log.read_text()
    assert "MRN-SECRET" not in text, text
    assert "/dicomweb/studies?PatientID=-" in text and "mrn=-&page=2" in text
