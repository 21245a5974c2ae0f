"""Smaller input defects: ?format= as a filter, impossible dates, animated PNGs, two files
in one field, and STOW-RS refusals with their reason."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage

from classifier.models import Image, Patient
from tests.conftest import synthetic_dicom, synthetic_png

pytestmark = pytest.mark.django_db


def _file(data: bytes, name: str) -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = name
    return handle


def _upload(client, data: bytes, name: str = "a.png", **fields):
    return client.post("/api/v1/images/", {"file": _file(data, name), **fields}, format="multipart")


def test_format_query_filters_images_instead_of_choosing_a_renderer(client_for) -> None:
    client = client_for("Clinician")
    assert _upload(client, synthetic_png(96), mrn="F-1", accession_number="F-1").status_code == 201
    assert _upload(client, synthetic_dicom(mrn="F-2", accession="F-2"), "b.dcm").status_code == 201
    response = client.get("/api/v1/images/", {"format": "PNG"})
    assert response.status_code == 200, response.content
    assert [row["format"] for row in response.json()["results"]] == ["PNG"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"mrn": "D-1", "birth_date": "9999-12-31"}, "birth date 9999-12-31"),
        ({"mrn": "D-2", "birth_date": "1850-01-01"}, "birth date 1850-01-01"),
    ],
)
def test_impossible_birth_dates_are_refused(client_for, body: dict, fragment: str) -> None:
    response = client_for("Clinician").post("/api/v1/patients/", body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_date" and fragment in error["message"]
    assert not Patient.objects.exists()


def test_a_study_dated_before_the_birth_in_its_header_is_refused(client_for) -> None:
    data = synthetic_dicom(mrn="D-3", accession="D-3", birth_date="20200101", study_date="20190101")
    response = _upload(client_for("Clinician"), data, "d.dcm")
    assert response.status_code == 400, response.content
    assert "before the birth date" in response.json()["error"]["message"]
    assert not Image.objects.exists()


def test_a_typed_future_birth_date_is_refused_on_the_upload_page(role_users) -> None:
    from django.test import Client

    client = Client()
    client.force_login(role_users["Clinician"])
    response = client.post(
        "/studies/upload/file/",
        {
            "mrn": "D-4",
            "accession_number": "D-4",
            "birth_date": "2999-01-01",
            "file": _file(synthetic_png(96), "a.png"),
        },
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "invalid_date"


def _animated_png() -> bytes:
    frames = [PILImage.open(io.BytesIO(synthetic_png(96, seed=s))) for s in (1, 2)]
    frames[1] = PILImage.fromarray(255 - np.asarray(frames[1]))
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


def test_an_animated_png_is_refused_not_read_as_its_first_frame(client_for) -> None:
    response = _upload(client_for("Clinician"), _animated_png(), mrn="A-1", accession_number="A-1")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "multi_frame" and "2 frames" in response.json()["error"]["message"]


def test_two_files_in_one_field_are_refused_not_silently_dropped(client_for, role_users) -> None:
    from django.test import Client

    files = [_file(synthetic_png(96, seed=1), "a.png"), _file(synthetic_png(96, seed=2), "b.png")]
    response = client_for("Clinician").post(
        "/api/v1/images/", {"file": files, "mrn": "T-1", "accession_number": "T-1"}, format="multipart"
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "too_many_files"
    page = Client()
    page.force_login(role_users["Clinician"])
    files = [_file(synthetic_png(96, seed=1), "a.png"), _file(synthetic_png(96, seed=2), "b.png")]
    response = page.post("/studies/upload/file/", {"file": files, "mrn": "T-1", "accession_number": "T-1"})
    assert response.status_code == 400 and response.json()["error_code"] == "too_many_files"
    assert not Image.objects.exists()


def test_stow_names_the_missing_identifier_in_its_failure_reason(client_for) -> None:
    from pydicom import dcmread

    ds = dcmread(io.BytesIO(synthetic_dicom(mrn="S-1", accession="S-1")))
    del ds.PatientID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    body = b"--xyz\r\nContent-Type: application/dicom\r\n\r\n" + buffer.getvalue() + b"\r\n--xyz--\r\n"
    response = client_for("Clinician").generic(
        "POST",
        "/dicomweb/studies",
        body,
        content_type='multipart/related; type="application/dicom"; boundary=xyz',
        HTTP_ACCEPT="application/dicom+json",
    )
    assert response.status_code == 409
    failed = response.json()["00081198"]["Value"][0]
    assert "MRN" in failed["00000902"]["Value"][0]
