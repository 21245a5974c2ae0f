"""Database down: every page and endpoint answers 503 + Retry-After in its own error shape,
and /healthz names the dependency that is down. A real server on an unreachable database."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import requests

from tests.webserver import gunicorn_server

UNREACHABLE_DB = "postgres://postgres@127.0.0.1:1/cxr_unreachable"


def _production_env(tmp_path, **overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DEBUG="false",
        SECRET_KEY="test-only-" + "abcdefghij" * 6,
        ALLOWED_HOSTS="127.0.0.1",
        CXR_SECURE_COOKIES="false",  # plain http in the test
        CXR_VAR_DIR=str(tmp_path),
        PYTHONPATH=os.getcwd(),
    )
    env.update(overrides)
    return env


@pytest.fixture
def server_without_database(tmp_path) -> Iterator[str]:
    with gunicorn_server(_production_env(tmp_path, DATABASE_URL=UNREACHABLE_DB), tmp_path) as base:
        yield base


def _assert_503(response: requests.Response) -> None:
    assert response.status_code == 503, (response.status_code, response.text[:300])
    assert int(response.headers["Retry-After"]) > 0


def test_health_names_the_database_as_down(server_without_database) -> None:
    response = requests.get(f"{server_without_database}/healthz", timeout=10)
    _assert_503(response)
    assert response.json() == {"status": "unavailable", "checks": {"database": "down", "broker": "ok"}}


@pytest.mark.parametrize("path", ["/api/v1/studies/", "/api/v1/images/", "/dicomweb/studies?PatientID=1"])
def test_api_answers_503_in_the_json_error_shape(server_without_database, path: str) -> None:
    response = requests.get(
        f"{server_without_database}{path}", headers={"Authorization": "Bearer cxr_not-a-real-token"}, timeout=10
    )
    _assert_503(response)
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "database_unavailable"


def test_fhir_answers_503_with_an_operation_outcome(server_without_database) -> None:
    response = requests.get(
        f"{server_without_database}/fhir/Patient/1", headers={"Authorization": "Bearer cxr_x"}, timeout=10
    )
    _assert_503(response)
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "exception"


@pytest.mark.parametrize("path", ["/", "/admin/", "/audit/"])
def test_pages_of_a_signed_in_browser_answer_503_not_500(server_without_database, path: str) -> None:
    response = requests.get(
        f"{server_without_database}{path}", cookies={"sessionid": "a" * 32}, allow_redirects=False, timeout=10
    )
    _assert_503(response)
    assert "database" in response.text


def test_login_post_answers_503(server_without_database) -> None:
    session = requests.Session()
    page = session.get(f"{server_without_database}/accounts/login/", timeout=10)
    assert page.status_code == 200  # the form itself needs no database
    response = session.post(
        f"{server_without_database}/accounts/login/",
        data={"username": "u", "password": "p", "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{server_without_database}/accounts/login/"},
        allow_redirects=False,
        timeout=10,
    )
    _assert_503(response)


def test_health_names_the_broker_when_only_the_broker_is_down(worker_env, tmp_path) -> None:
    env = {**worker_env, "CELERY_BROKER_URL": "redis://127.0.0.1:1/0"}
    with gunicorn_server(env, tmp_path) as base:
        response = requests.get(f"{base}/healthz", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "degraded", "checks": {"database": "ok", "broker": "down"}}
