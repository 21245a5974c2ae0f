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
        e("get", "/fhir/metadata", VIEW),
        e("get", "/fhir/ImagingStudy?patient={patient}", VIEW),
        e("get", "/fhir/DiagnosticReport?status=final", VIEW),
        e("get", "/dicomweb/studies?PatientID=MX", VIEW),
        e("get", "/dicomweb/series?PatientID=MX", VIEW),
        e("get", "/dicomweb/instances?PatientID=MX", VIEW),
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


def _browser_session(user) -> Any:
    """An APIClient that is the logged-in browser: session cookie, CSRF cookie and header enforced."""
    from django.middleware.csrf import _get_new_csrf_string
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    token = _get_new_csrf_string()
    client.cookies["csrftoken"] = token
    client.credentials(HTTP_X_CSRFTOKEN=token)
    return client


@pytest.mark.parametrize("content_type", ["", "text/plain"])
def test_role_refusal_comes_before_parsing_the_body(role_users, client_for, content_type: str) -> None:
    """A radiologist's rollback without a JSON body is refused for the role (403), not for
    its media type (415): the session's CSRF check used to parse the body first."""
    for client in (_browser_session(role_users["Radiologist"]), client_for("Radiologist")):
        response = client.generic("POST", "/api/v1/models/rollback/", b'{"name": "x"}', content_type=content_type)
        assert response.status_code == 403, response.content
        assert response.json()["error"]["code"] == "permission_denied"


@pytest.mark.parametrize(
    "endpoint", [e for e in _endpoints() if e.method == "post"], ids=lambda e: f"{e.method} {e.path}"
)
def test_every_refused_post_is_403_whatever_its_body_or_accept_header(endpoint: Endpoint, role_users, rows) -> None:
    """Siblings across the API: a user without a role gets 403 before content negotiation
    (Accept) and before parsing (Content-Type)."""
    path, client = endpoint.path.format(**rows), _browser_session(role_users["none"])
    for content_type, accept in (("text/plain", "application/json"), ("application/json", "image/x-nothing")):
        response = client.generic("POST", path, b"{}", content_type=content_type, HTTP_ACCEPT=accept)
        assert response.status_code == 403, (content_type, accept, response.status_code, response.content)


def test_a_refusal_logs_one_line_without_a_traceback(client_for, role_users, caplog) -> None:
    """An API 403 and a page 403 each write one log record, with no exception attached."""
    from django.test import Client

    page = Client()
    page.force_login(role_users["Clinician"])
    for call in (
        lambda: client_for("Radiologist").post("/api/v1/models/rollback/", {}, format="json"),
        lambda: page.get("/audit/"),
    ):
        caplog.clear()
        with caplog.at_level("INFO"):
            assert call().status_code == 403
        refusals = [r for r in caplog.records if r.name.startswith("django")]
        assert len(refusals) == 1, [r.getMessage() for r in refusals]
        assert refusals[0].exc_info is None and "Traceback" not in caplog.text
