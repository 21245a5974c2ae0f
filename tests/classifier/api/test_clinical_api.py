"""Patients, studies and images through the API: natural keys, filters, error statuses, audit."""

from __future__ import annotations

import pytest

from classifier.models import AuditEvent, Image, Patient, Study
from tests.classifier.api.conftest import synthetic_dicom
from tests.conftest import synthetic_png

pytestmark = pytest.mark.django_db


def _error(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    return body["error"]


def test_patient_create_is_idempotent_by_mrn_and_audited(client_for, role_users) -> None:
    client = client_for("Clinician")
    first = client.post("/api/v1/patients/", {"mrn": "P-1", "name": "Ann", "sex": "F"}, format="json")
    again = client.post("/api/v1/patients/", {"mrn": "P-1", "name": "Other"}, format="json")
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and again.json()["name"] == "Ann"
    assert Patient.objects.count() == 1
    event = AuditEvent.objects.get(action="patient_create")
    assert event.actor.api_token.role == "Clinician"  # the token's service user is the actor


def test_patient_list_is_paginated_filtered_and_ordered(client_for) -> None:
    client = client_for("Clinician")
    for mrn in ("B", "A", "C"):
        client.post("/api/v1/patients/", {"mrn": mrn, "sex": "M" if mrn == "B" else "F"}, format="json")
    page = client.get("/api/v1/patients/?ordering=-mrn&page_size=2").json()
    assert page["count"] == 3 and [p["mrn"] for p in page["results"]] == ["C", "B"] and page["next"]
    assert [p["mrn"] for p in client.get("/api/v1/patients/?sex=M").json()["results"]] == ["B"]
    assert AuditEvent.objects.filter(action="api_list").exists()


def test_study_with_images_in_one_multipart_request(client_for) -> None:
    client = client_for("Clinician")
    response = client.post(
        "/api/v1/studies/",
        {
            "mrn": "M-1",
            "accession_number": "A-1",
            "view_position": "PA",
            "clinical_notes": "cough",
            "images": [_file(synthetic_png(96, seed=1), "a.png"), _file(synthetic_png(96, seed=2), "b.png")],
        },
        format="multipart",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["study"]["accession_number"] == "A-1" and len(body["study"]["images"]) == 2
    assert all(upload["error"] is None for upload in body["uploads"])
    prediction = body["study"]["images"][0]["latest_prediction"]
    assert prediction["status"] == "pending" and prediction["notice"] == "decision support, not a diagnosis"
    # Same accession again: the existing study (200), the duplicate image is not stored twice.
    again = client.post(
        "/api/v1/studies/",
        {"mrn": "M-1", "accession_number": "A-1", "images": [_file(synthetic_png(96, seed=1), "a.png")]},
        format="multipart",
    )
    assert again.status_code == 200 and again.json()["study"]["id"] == body["study"]["id"]
    assert again.json()["uploads"][0]["duplicate"] is True
    assert Study.objects.count() == 1 and Image.objects.count() == 2


def test_study_json_without_images_and_patient_mismatch(client_for) -> None:
    client = client_for("Clinician")
    assert client.post("/api/v1/studies/", {"mrn": "M-2", "accession_number": "A-2"}, format="json").status_code == 201
    clash = client.post("/api/v1/studies/", {"mrn": "M-3", "accession_number": "A-2"}, format="json")
    assert clash.status_code == 409 and _error(clash)["code"] == "patient_mismatch"
    missing = client.post("/api/v1/studies/", {"mrn": "M-2"}, format="json")
    assert missing.status_code == 400 and _error(missing)["code"] == "invalid"


def test_bad_file_refuses_the_whole_study_with_the_right_status(client_for) -> None:
    client = client_for("Clinician")
    text = client.post(
        "/api/v1/studies/",
        {"mrn": "M", "accession_number": "A", "images": [_file(b"hello, not an image", "x.png")]},
        format="multipart",
    )
    assert text.status_code == 415 and _error(text)["code"] == "unsupported_format"
    broken = client.post(
        "/api/v1/studies/",
        {"mrn": "M", "accession_number": "A", "images": [_file(synthetic_png(96)[:40], "x.png")]},
        format="multipart",
    )
    assert broken.status_code == 400
    assert Study.objects.count() == 0


def test_dicom_alone_creates_patient_and_study_from_its_header(client_for) -> None:
    client = client_for("Clinician")
    data = synthetic_dicom(mrn="H-1", accession="HA-1")
    response = client.post("/api/v1/images/", {"file": _file(data, "x.dcm")}, format="multipart")
    assert response.status_code == 201, response.content
    study = Study.objects.get(accession_number="HA-1")
    assert study.patient.mrn == "H-1" and response.json()["image"]["study"] == study.pk
    assert study.patient.name == "Test, Patient"  # the PN as the upload page shows it, not "Test^Patient"
    again = client.post("/api/v1/images/", {"file": _file(data, "x.dcm")}, format="multipart")
    assert again.status_code == 200 and again.json()["duplicate"] is True
    listed = client.get(f"/api/v1/images/?study={study.pk}").json()
    assert listed["count"] == 1
    assert client.get("/api/v1/studies/?mrn=H-1").json()["results"][0]["id"] == study.pk


def test_image_errors_map_to_400_413_415(client_for, settings) -> None:
    client = client_for("Clinician")
    png = client.post("/api/v1/images/", {"file": _file(synthetic_png(96), "p.png")}, format="multipart")
    assert png.status_code == 400 and _error(png)["code"] == "missing_field"  # no MRN/accession in a PNG
    exe = client.post("/api/v1/images/", {"file": _file(b"MZ" + b"\0" * 200, "p.exe")}, format="multipart")
    assert exe.status_code == 400 and _error(exe)["code"] == "suspicious_file"
    odd = client.post(
        "/api/v1/images/",
        {"file": _file(b"GIF89a" + b"\0" * 100, "p.gif"), "mrn": "x", "accession_number": "y"},
        format="multipart",
    )
    assert odd.status_code == 415
    settings.CXR = {**settings.CXR, "MAX_UPLOAD_BYTES": 2048}
    big = client.post(
        "/api/v1/images/",
        {"file": _file(synthetic_png(96) + b"\0" * 4096, "p.png"), "mrn": "x", "accession_number": "y"},
        format="multipart",
    )
    assert big.status_code == 413 and _error(big)["code"] == "file_too_large"
    no_file = client.post("/api/v1/images/", {"mrn": "x"}, format="multipart")
    assert no_file.status_code == 400
    wrong_type = client.post("/api/v1/images/", {"file": "x"}, format="json")
    assert wrong_type.status_code == 415 and _error(wrong_type)["code"] == "unsupported_media_type"


def test_unknown_rows_are_json_404s(client_for) -> None:
    client = client_for("Clinician")
    for path in (
        "/api/v1/patients/999999/",
        "/api/v1/studies/999999/",
        "/api/v1/predictions/999999/",
        "/api/v1/studies/999999/predictions/",
        "/api/v1/predictions/999999/heatmap/",
    ):
        response = client.get(path)
        assert response.status_code == 404 and _error(response)["code"] == "not_found", path


def test_reads_are_audited_with_the_token_user(client_for) -> None:
    client = client_for("Radiologist")
    patient = client.post("/api/v1/patients/", {"mrn": "AU-1"}, format="json").json()
    client.get(f"/api/v1/patients/{patient['id']}/")
    event = AuditEvent.objects.filter(action="api_read", object_id=str(patient["id"])).get()
    assert event.actor.username.startswith("api-") and event.detail["api"] == f"/api/v1/patients/{patient['id']}/"


def _file(data: bytes, name: str):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data)


def test_a_study_post_whose_only_file_is_stored_creates_no_study(client_for) -> None:
    client = client_for("Clinician")
    first = client.post(
        "/api/v1/studies/",
        {"mrn": "M-9", "accession_number": "A-9", "images": [_file(synthetic_png(96, seed=9), "a.png")]},
        format="multipart",
    )
    assert first.status_code == 201
    patients, studies = Patient.objects.count(), Study.objects.count()
    # Another accession of the same patient, carrying only an already stored DICOM.
    dicom = synthetic_dicom(mrn="M-9", accession="")
    client.post("/api/v1/images/", {"file": _file(dicom, "d.dcm"), "accession_number": "A-9"}, format="multipart")
    studies = Study.objects.count()
    again = client.post(
        "/api/v1/studies/",
        {"mrn": "M-9", "accession_number": "A-10", "images": [_file(dicom, "d.dcm")]},
        format="multipart",
    )
    assert again.status_code == 200 and again.json()["uploads"][0]["duplicate"] is True
    assert again.json()["study"]["accession_number"] == "A-9"  # the study that holds the file
    assert (Patient.objects.count(), Study.objects.count()) == (patients, studies)
    assert not Study.objects.filter(accession_number="A-10").exists()


def test_a_json_study_without_images_is_an_order_off_the_worklist(client_for) -> None:
    client = client_for("Clinician")
    created = client.post("/api/v1/studies/", {"mrn": "M-O", "accession_number": "A-O"}, format="json")
    assert created.status_code == 201
    assert created.json()["study"]["id"] not in [s["id"] for s in client.get("/api/v1/studies/").json()["results"]]
    assert client.get(f"/api/v1/studies/{created.json()['study']['id']}/").status_code == 200


def test_a_used_sop_uid_with_other_pixels_is_409_and_audited(client_for) -> None:
    client = client_for("Clinician")
    ok = client.post(
        "/api/v1/images/", {"file": _file(synthetic_dicom(sop_uid="1.2.9.9", seed=1), "a.dcm")}, format="multipart"
    )
    assert ok.status_code == 201
    clash = client.post(
        "/api/v1/images/", {"file": _file(synthetic_dicom(sop_uid="1.2.9.9", seed=2), "b.dcm")}, format="multipart"
    )
    assert clash.status_code == 409 and _error(clash)["code"] == "sop_conflict"
    assert Image.objects.count() == 1 and AuditEvent.objects.filter(action="upload_conflict").exists()


def test_a_known_mrn_with_another_name_is_409_until_the_patient_is_confirmed(client_for) -> None:
    client = client_for("Clinician")
    client.post("/api/v1/patients/", {"mrn": "M-C", "name": "Doe, Jane"}, format="json")
    body = {
        "mrn": "M-C",
        "patient_name": "Roe, Rick",
        "accession_number": "A-C",
        "images": [_file(synthetic_png(96, seed=5), "a.png")],
    }
    refused = client.post("/api/v1/studies/", body, format="multipart")
    assert refused.status_code == 409 and _error(refused)["code"] == "patient_unconfirmed"
    body["images"] = [_file(synthetic_png(96, seed=5), "a.png")]
    confirmed = client.post("/api/v1/studies/", {**body, "patient_confirmed": "true"}, format="multipart")
    assert confirmed.status_code == 201 and Patient.objects.get(mrn="M-C").name == "Doe, Jane"


def test_the_study_list_runs_the_same_queries_for_5_rows_as_for_50(client_for) -> None:
    """No per-row query (the image count was one per study: 62 queries for a page of 50)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.factories import ImageFactory, StudyFactory

    for i in range(55):
        study = StudyFactory()
        for _ in range(1 + i % 3):
            ImageFactory(study=study)
    client = client_for("Clinician")
    client.get("/api/v1/studies/?page_size=5")  # warm-up: token, throttle and cache queries

    def page(size: int) -> tuple[int, list[int]]:
        with CaptureQueriesContext(connection) as captured:
            body = client.get(f"/api/v1/studies/?page_size={size}").json()
        assert len(body["results"]) == size
        return len(captured), [row["image_count"] for row in body["results"]]

    small, counts = page(5)
    large, all_counts = page(50)
    assert large == small
    assert all_counts[:5] == counts and set(all_counts) == {1, 2, 3}
