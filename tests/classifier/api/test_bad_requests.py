"""Hostile request shapes get a 400 in the error shape, never a 500: deeply nested JSON,
NUL bytes in query parameters (QIDO-RS, API filters, pages)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/v1/patients/", "/api/v1/studies/", "/api/v1/webhooks/"])
@pytest.mark.parametrize("depth", [100_000, 40])
def test_deeply_nested_json_is_a_400(client_for, path: str, depth: int) -> None:
    body = "[" * depth + "]" * depth
    response = client_for("Admin").post(path, body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    error = response.json()["error"]
    assert error["code"] == "parse_error" and "nested" in error["message"]


def test_json_nested_a_few_levels_still_parses(client_for) -> None:
    response = client_for("Clinician").post("/api/v1/patients/", {"mrn": "N-1", "name": "Nest Ed"}, format="json")
    assert response.status_code == 201, response.content


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/dicomweb/studies", "PatientID"),
        ("/dicomweb/studies", "AccessionNumber"),
        ("/dicomweb/studies", "00100020"),
        ("/api/v1/studies/", "mrn"),
        ("/api/v1/images/", "sop_instance_uid"),
    ],
)
def test_nul_in_a_query_parameter_is_a_400_naming_it(client_for, path: str, param: str) -> None:
    response = client_for("Clinician").get(path, {param: "MRN\x001"})
    assert response.status_code == 400, response.content[:300]
    error = response.json()["error"]
    assert error["code"] == "invalid_query" and param in error["message"]


def test_nul_in_the_worklist_search_is_a_400_page(role_users) -> None:
    from django.test import Client

    client = Client()
    client.force_login(role_users["Clinician"])
    response = client.get("/", {"q": "\x00"})
    assert response.status_code == 400
