"""API throttling counts across every web process: a real gunicorn with two workers and
the embedded default's shared cache (the database)."""

from __future__ import annotations

import requests

from tests.webserver import gunicorn_server


def test_a_10_per_minute_token_gets_10_requests_through_two_gunicorn_workers(worker_env, role_users, tmp_path) -> None:
    from classifier.services.tokens import api_token_create

    _, raw = api_token_create(name="limited", role="Clinician", created_by=role_users["Admin"], rate="10/min")
    with gunicorn_server(worker_env, tmp_path) as base:
        codes = [
            requests.get(f"{base}/api/v1/patients/", headers={"Authorization": f"Bearer {raw}"}, timeout=10).status_code
            for _ in range(40)  # a new connection each: the two workers share them
        ]
    assert codes.count(200) == 10, codes
    assert codes.count(429) == 30
