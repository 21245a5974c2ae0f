"""Hardening headers: a Content-Security-Policy on every page, no-store on everything
that carries patient data, and the API's schema and docs for signed-in callers only."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def _assert_hardened(response) -> None:
    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-eval" not in csp and "script-src 'self' 'unsafe-inline'" not in csp
    assert "no-store" in response["Cache-Control"]


def test_every_page_has_a_csp_and_is_not_stored(clients, done_study) -> None:
    image = done_study.images.get()
    pages_of_images = [f"/images/{image.pk}/film.u16z"]
    pages = {
        "anonymous": ["/accounts/login/", "/admin/login/"],
        "Clinician": ["/", "/?q=MRN-T1", "/studies/upload/", f"/studies/{done_study.pk}/", "/api/docs/"],
        "Radiologist": ["/review/stats/"],
        "Admin": ["/audit/", "/models/"],
    }
    for role, paths in pages.items():
        for path in paths:
            response = clients[role].get(path)
            assert response.status_code == 200, (role, path, response.status_code)
            _assert_hardened(response)
    for path in pages_of_images:
        response = clients["Clinician"].get(path)
        assert "no-store" in response.get("Cache-Control", ""), (path, response.status_code)


def test_api_fhir_and_dicomweb_answers_with_patient_data_are_not_stored(client_for, done_study) -> None:
    client = client_for("Clinician")
    patient = done_study.patient_id
    for path in (
        "/api/v1/patients/",
        f"/api/v1/patients/{patient}/",
        f"/api/v1/studies/{done_study.pk}/",
        f"/fhir/Patient/{patient}",
        "/dicomweb/studies?PatientID=MRN-T1",
    ):
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        assert "no-store" in response["Cache-Control"], path


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_schema_and_docs_need_a_signed_in_caller(client, client_for, path: str) -> None:
    assert client.get(path).status_code in (401, 403)
    assert client_for("Clinician").get(path).status_code == 200
