"""Every endpoint x every role: allowed roles get past the role check, others 403, anonymous 401.

Roles are decided by classifier.roles.user_can only; an API token acts as its service
user, a member of the token's role group, so tokens and people share this matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from classifier.models import Patient, Prediction
from classifier.services.studies import StudyFields
from classifier.services.uploads import image_upload
from tests.classifier.api.conftest import synthetic_dicom
from tests.conftest import synthetic_png

pytestmark = pytest.mark.django_db

VIEW = {"Clinician", "Radiologist", "Admin"}
UPLOAD = VIEW
REVIEW = {"Radiologist", "Admin"}
ADMIN = {"Admin"}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    allowed: frozenset
    body: Any = None
    format: str = "json"


def _endpoints() -> list[Endpoint]:
    e = Endpoint
    return [
        e("get", "/api/v1/patients/", VIEW),
        e("post", "/api/v1/patients/", UPLOAD, {"mrn": "NEW-{role}"}),
        e("get", "/api/v1/patients/{patient}/", VIEW),
        e("get", "/api/v1/studies/", VIEW),
        e("post", "/api/v1/studies/", UPLOAD, {"mrn": "S-{role}", "accession_number": "SA-{role}"}),
        e("get", "/api/v1/studies/{study}/", VIEW),
        e("get", "/api/v1/studies/{study}/predictions/", VIEW),
        e("get", "/api/v1/images/", VIEW),
        e("get", "/api/v1/images/{image}/", VIEW),
        e("post", "/api/v1/images/", UPLOAD, "dicom", "multipart"),
        e("get", "/api/v1/predictions/", VIEW),
        e("get", "/api/v1/predictions/{prediction}/", VIEW),
        e("get", "/api/v1/predictions/{prediction}/heatmap/", VIEW),
        e("post", "/api/v1/predictions/{prediction}/rerun/", UPLOAD),
        e("get", "/api/v1/predictions/{prediction}/reviews/", VIEW),
        e("post", "/api/v1/predictions/{prediction}/reviews/", REVIEW, {"decision": "confirm"}),
        e("get", "/api/v1/models/", ADMIN),
        e("get", "/api/v1/models/{model}/", ADMIN),
        e("post", "/api/v1/models/{model}/activate/", ADMIN),
        e("post", "/api/v1/models/rollback/", ADMIN, {}),
        e("get", "/api/v1/training-runs/", ADMIN),
        e("post", "/api/v1/training-runs/", ADMIN, {"spec": {"nonsense": 1}}),
        e("get", "/api/v1/tokens/", ADMIN),
        e("post", "/api/v1/tokens/", ADMIN, {"name": "x", "role": "Clinician"}),
        e("get", "/api/v1/tokens/{token}/", ADMIN),
        e("post", "/api/v1/tokens/{token}/revoke/", ADMIN),
        e("get", "/api/v1/webhooks/", VIEW),
        e("post", "/api/v1/webhooks/", ADMIN, {"url": "https://93.184.216.34/hook"}),
        e("get", "/fhir/Patient/{patient}", VIEW),
        e("get", "/fhir/ImagingStudy/{study}", VIEW),
        e("get", "/fhir/DiagnosticReport/{prediction}", VIEW),
        e("get", "/dicomweb/studies?PatientID=MX", VIEW),
        e("post", "/dicomweb/studies", UPLOAD, "stow", "stow"),
    ]


@pytest.fixture
def rows(role_users) -> dict[str, int]:
    from classifier.services.tokens import api_token_create
    from training.models import ModelVersion

    outcome = image_upload(
        data=synthetic_png(96),
        filename="m.png",
        uploaded_by=role_users["Clinician"],
        fields=StudyFields(mrn="MX", accession_number="AX"),
    )
    version = ModelVersion.objects.create(
        name="matrix",
        version=1,
        architecture="none",
        input_size=32,
        labels=[],
        preprocess_config={},
        artifact_dir="/nonexistent",
    )
    token, _ = api_token_create(name="to revoke", role="Clinician", created_by=role_users["Admin"])
    return {
        "patient": Patient.objects.get(mrn="MX").pk,
        "study": outcome.image.study_id,
        "image": outcome.image.pk,
        "prediction": Prediction.objects.get(image=outcome.image).pk,
        "model": version.pk,
        "token": token.pk,
    }


def _call(client, endpoint: Endpoint, rows: dict[str, int], role: str):
    path = endpoint.path.format(**rows)
    if endpoint.method == "get":
        return client.get(path)
    if endpoint.body == "dicom":
        from django.core.files.uploadedfile import SimpleUploadedFile

        data = synthetic_dicom(mrn=f"D-{role}", accession=f"DA-{role}")
        return client.post(path, {"file": SimpleUploadedFile("x.dcm", data)}, format="multipart")
    if endpoint.body == "stow":
        body = (
            b"--b1\r\nContent-Type: application/dicom\r\n\r\n"
            + synthetic_dicom(mrn=f"W-{role}", accession=f"WA-{role}")
            + b"\r\n--b1--\r\n"
        )
        return client.generic(
            "POST", path, body, content_type='multipart/related; type="application/dicom"; boundary=b1'
        )
    body = {k: v.format(role=role) if isinstance(v, str) else v for k, v in (endpoint.body or {}).items()}
    return client.post(path, body, format=endpoint.format)


def _code(endpoint: Endpoint, response) -> str:
    body = response.json()
    if endpoint.path.startswith("/fhir/"):  # FHIR answers errors as OperationOutcome
        assert body["resourceType"] == "OperationOutcome"
        return {"login": "not_authenticated", "forbidden": "permission_denied"}[body["issue"][0]["code"]]
    return body["error"]["code"]


@pytest.mark.parametrize("endpoint", _endpoints(), ids=lambda e: f"{e.method} {e.path}")
def test_role_matrix(endpoint: Endpoint, client_for, rows) -> None:
    for role in ("anon", "none", "Clinician", "Radiologist", "Admin"):
        response = _call(client_for(role), endpoint, rows, role)
        assert response.status_code < 500, (role, response.content)
        if role == "anon":
            assert response.status_code == 401, (role, response.status_code)
            assert _code(endpoint, response) == "not_authenticated"
        elif role in endpoint.allowed:
            assert response.status_code not in (401, 403), (role, response.status_code, response.content)
        else:
            assert response.status_code == 403, (role, response.status_code, response.content)
            assert _code(endpoint, response) == "permission_denied"
