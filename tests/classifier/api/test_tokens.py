"""API tokens: shown once, stored hashed, carry their role, revocable, throttled per token."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from classifier.api.auth import token_hash
from classifier.integrations import ApiToken
from classifier.models import AuditEvent

pytestmark = pytest.mark.django_db


def _bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_admin_creates_a_token_shown_once_and_stored_hashed(client_for) -> None:
    admin = client_for("Admin")
    created = admin.post("/api/v1/tokens/", {"name": "RIS", "role": "Radiologist"}, format="json")
    assert created.status_code == 201
    raw = created.json()["token"]
    assert raw.startswith("cxr_") and len(raw) > 40
    row = ApiToken.objects.get(pk=created.json()["id"])
    assert row.token_hash == token_hash(raw) and raw not in str(vars(row))
    assert not row.user.has_usable_password() and row.user.groups.get().name == "Radiologist"
    assert "token" not in admin.get(f"/api/v1/tokens/{row.pk}/").json()
    assert all("token" not in item for item in admin.get("/api/v1/tokens/").json()["results"])
    assert AuditEvent.objects.filter(action="api_token_create", object_id=str(row.pk)).exists()
    # The token has the Radiologist role: it may read, it may not manage models.
    assert _bearer(raw).get("/api/v1/studies/").status_code == 200
    assert _bearer(raw).get("/api/v1/models/").status_code == 403


def test_revoked_expired_or_malformed_tokens_are_401(client_for, api_tokens) -> None:
    admin = client_for("Admin")
    token = ApiToken.objects.get(token_hash=token_hash(api_tokens["Clinician"]))
    assert admin.post(f"/api/v1/tokens/{token.pk}/revoke/").json()["revoked"] is True
    assert admin.post(f"/api/v1/tokens/{token.pk}/revoke/").status_code == 200  # idempotent
    response = _bearer(api_tokens["Clinician"]).get("/api/v1/patients/")
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_token"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert _bearer("cxr_not-a-real-token").get("/api/v1/patients/").status_code == 401
    assert _bearer("garbage").get("/api/v1/patients/").status_code == 401
    bad_role = admin.post("/api/v1/tokens/", {"name": "x", "role": "Janitor"}, format="json")
    assert bad_role.status_code == 400
    bad_rate = admin.post("/api/v1/tokens/", {"name": "x", "role": "Admin", "rate": "fast"}, format="json")
    assert bad_rate.status_code == 400 and bad_rate.json()["error"]["code"] == "invalid_rate"


def test_throttling_is_per_token(client_for) -> None:
    admin = client_for("Admin")
    slow = admin.post("/api/v1/tokens/", {"name": "slow", "role": "Clinician", "rate": "3/min"}, format="json").json()[
        "token"
    ]
    statuses = [_bearer(slow).get("/api/v1/patients/").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    throttled = _bearer(slow).get("/api/v1/patients/")
    assert throttled.json()["error"]["code"] == "throttled" and int(throttled["Retry-After"]) > 0
    assert client_for("Clinician").get("/api/v1/patients/").status_code == 200  # other tokens unaffected


def test_session_auth_works_for_the_browser(role_users) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(role_users["Clinician"])
    assert client.get("/api/v1/studies/").status_code == 200
    no_csrf = client.post("/api/v1/patients/", {"mrn": "S-1"}, format="json")
    assert no_csrf.status_code == 403  # session writes need the CSRF token


@pytest.mark.parametrize("rate", ["0/min", "-5/min", "+5/min", "fast"])
def test_a_rate_below_one_request_per_period_is_refused(client_for, rate: str) -> None:
    response = client_for("Admin").post("/api/v1/tokens/", {"name": "x", "role": "Admin", "rate": rate}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_rate"


def test_a_token_that_would_expire_in_the_past_is_refused(client_for) -> None:
    response = client_for("Admin").post(
        "/api/v1/tokens/", {"name": "x", "role": "Admin", "expires_at": "2020-01-01T00:00:00Z"}, format="json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_expiry"
