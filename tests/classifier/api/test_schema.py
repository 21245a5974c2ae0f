"""OpenAPI 3 schema, local Swagger UI, and property-based testing of the API against its schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)


@pytest.mark.django_db
def test_schema_is_valid_openapi_3_and_complete(client_for) -> None:
    from drf_spectacular.validation import validate_schema

    response = client_for("Clinician").get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)
    assert schema["openapi"].startswith("3.")
    assert {
        "/api/v1/studies/",
        "/api/v1/images/",
        "/api/v1/predictions/{id}/",
        "/dicomweb/studies",
        "/fhir/DiagnosticReport/{id}",
        "/api/v1/tokens/",
        "/api/v1/webhooks/",
    } <= set(schema["paths"])
    assert {"ApiToken", "Session"} <= set(schema["components"]["securitySchemes"])
    post = schema["paths"]["/api/v1/studies/"]["post"]
    assert any(p["name"] == "Idempotency-Key" for p in post["parameters"])
    assert {"201", "200", "400", "401", "403", "413", "415", "429"} <= set(post["responses"])


@pytest.mark.django_db
def test_swagger_ui_is_served_locally(client, role_users) -> None:
    """drf-spectacular's Swagger UI view on the sidecar's static files: no external host."""
    import re

    from django.contrib.staticfiles import finders

    client.force_login(role_users["Clinician"])
    page = client.get("/api/docs/").content.decode()
    assert "cdn" not in page.lower() and "https://" not in page and "http://" not in page
    assets = re.findall(r'(?:src|href)="/static/([^"]+)"', page)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    assert any(a.endswith("swagger-ui.css") for a in assets)
    for asset in assets:  # collectstatic (Dockerfile, scripts/run.sh) serves these
        assert finders.find(asset), asset
    script = re.search(r'<script src="(/api/docs/\?script[^"]*)"', page)
    assert script, page  # the start-up script is served, not inline (the CSP allows no inline script)
    assert "/api/schema/" in client.get(script.group(1).replace("&amp;", "&")).content.decode()


@schemathesis.serializer("multipart/related")
def _multipart_related(ctx, value) -> bytes:
    """Generated STOW-RS bodies: whatever bytes were drawn, sent as one application/dicom part."""
    data = value if isinstance(value, bytes) else str(value).encode()
    return b"--fuzz\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n--fuzz--\r\n"


def _load_schema() -> schemathesis.BaseSchema:
    # Generated at collection (pytest-django has set Django up), as /api/schema/ serves it:
    # that endpoint needs a signed-in caller, and there is no database yet to sign one in.
    import json

    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    from cxrsite.wsgi import application

    raw = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))
    raw["paths"].pop("/api/schema/", None)  # the schema document itself, checked above
    loaded = schemathesis.openapi.from_dict(raw)
    loaded.app = application
    return loaded


schema = _load_schema()


@pytest.fixture
def wsgi_in_test_transaction():
    """Keep the test's connection open across WSGI calls, as Django's own test client does."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=6, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@pytest.mark.django_db
def test_api_conforms_to_its_schema(case, api_tokens, wsgi_in_test_transaction) -> None:
    """No 500 for any generated input; statuses, content types and bodies match the schema."""
    case.call_and_validate(
        headers={"Authorization": f"Bearer {api_tokens['Admin']}"},
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
    )
