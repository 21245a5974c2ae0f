"""A NUL byte or an over-length identifier in a DICOM header is a 400 naming the field on
every upload path (web form, web XHR, /api/v1/images/, STOW-RS), never a 500."""

from __future__ import annotations

import io

import pytest
from django.test import Client

from classifier.models import Image, Patient
from tests.conftest import synthetic_dicom

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore::UserWarning")]

BAD = [
    ("PatientID", {"mrn": "MRN\x00-9"}),
    ("PatientName", {"patient_name": "Doe^Ja\x00ne"}),
    ("AccessionNumber", {"accession": "ACC\x00-9"}),
    ("BodyPartExamined", {"body_part": "CHE\x00ST"}),
    ("PatientID", {"mrn": "M" * 80}),
    ("AccessionNumber", {"accession": "A" * 70}),
]


def _file(data: bytes, name: str = "bad.dcm") -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = name
    return handle


@pytest.fixture
def clinician(role_users) -> Client:
    client = Client()
    client.force_login(role_users["Clinician"])
    return client


@pytest.mark.parametrize(("keyword", "kwargs"), BAD)
def test_web_xhr_upload_answers_400_naming_the_field(clinician, keyword, kwargs) -> None:
    response = clinician.post("/studies/upload/file/", {"file": _file(synthetic_dicom(**kwargs))})
    assert response.status_code == 400
    assert keyword in response.json()["error_message"]
    assert not Image.objects.exists() and not Patient.objects.exists()


@pytest.mark.parametrize(("keyword", "kwargs"), BAD[:2])
def test_web_form_upload_answers_400_naming_the_field(clinician, keyword, kwargs) -> None:
    # A browser sends every field, blank ones included.
    response = clinician.post("/studies/upload/", {"mrn": "", "files": [_file(synthetic_dicom(**kwargs))]})
    assert response.status_code == 400
    assert keyword in response.content.decode()


@pytest.mark.parametrize(("keyword", "kwargs"), BAD)
def test_api_image_upload_answers_400_naming_the_field(client_for, keyword, kwargs) -> None:
    response = client_for("Clinician").post(
        "/api/v1/images/", {"file": _file(synthetic_dicom(**kwargs))}, format="multipart"
    )
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_header_value" and keyword in error["message"]


@pytest.mark.parametrize(("keyword", "kwargs"), BAD[:3])
def test_stow_reports_the_failure_reason_naming_the_field(client_for, keyword, kwargs) -> None:
    part = synthetic_dicom(**kwargs)
    body = b"--xyz\r\nContent-Type: application/dicom\r\n\r\n" + part + b"\r\n--xyz--\r\n"
    response = client_for("Clinician").generic(
        "POST",
        "/dicomweb/studies",
        body,
        content_type='multipart/related; type="application/dicom"; boundary=xyz',
        HTTP_ACCEPT="application/dicom+json",
    )
    assert response.status_code == 409, response.content
    failed = response.json()["00081198"]["Value"][0]
    assert failed["00081197"]["Value"] == [0xC000]
    assert keyword in failed["00000902"]["Value"][0]


def test_a_nul_in_the_uploaded_filename_is_dropped_not_a_500(clinician) -> None:
    response = clinician.post("/studies/upload/file/", {"file": _file(synthetic_dicom(), "a\x00b.dcm")})
    assert response.status_code == 200, response.content
    assert Image.objects.get().original_filename == "ab.dcm"
