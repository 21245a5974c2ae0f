"""OpenAPI 3 schema (drf-spectacular) and Swagger UI served from local files (no CDN).

The Swagger UI assets come from the drf-spectacular-sidecar package and are streamed by
``SwaggerAssetApi`` from its directory, so the page works without the sidecar being an
installed app and without internet access.
"""
from __future__ import annotations

import mimetypes
from pathlib import Path

from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from drf_spectacular.views import SpectacularAPIView

API_DESCRIPTION = """\
REST API of the chest X-ray triage platform. Results are **decision support, not a diagnosis**.

Authenticate with `Authorization: Bearer <token>` (an API token created by an
administrator) or with the browser session. POSTs accept an `Idempotency-Key` header:
a retry with the same key and body returns the original response. Errors are
`{"error": {"code": ..., "message": ...}}`.
"""
SCHEMA_SETTINGS = {
    "TITLE": "CXR triage API",
    "DESCRIPTION": API_DESCRIPTION,
    "VERSION": "1.0.0",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "classifier.api.schema.postprocess"],
    "ENUM_NAME_OVERRIDES": {
        "StudyStatusEnum": "classifier.models.Study.Status",
        "PredictionStatusEnum": "classifier.models.Prediction.Status",
        "ModelVersionStatusEnum": "training.models.ModelVersion.Status",
        "TrainingRunStatusEnum": "training.models.TrainingRun.Status",
        "DeliveryStatusEnum": "classifier.integrations.WebhookDelivery.Status",
        "ViewPositionEnum": "classifier.models.Study.View",
    },
}
ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "favicon-32x32.png")
INIT_JS = """\
"use strict";
function csrfToken() {
  const match = document.cookie.match(/(?:^|; )csrftoken=([^;]*)/);
  return match ? decodeURIComponent(match[1]) : "";
}
window.ui = SwaggerUIBundle({
  url: "%(schema)s",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "BaseLayout",
  requestInterceptor: (request) => { request.headers["X-CSRFToken"] = csrfToken(); return request; },
});
"""
PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>CXR triage API</title>
<link rel="icon" href="%(base)sassets/favicon-32x32.png">
<link rel="stylesheet" href="%(base)sassets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="%(base)sassets/swagger-ui-bundle.js"></script>
<script src="%(base)sassets/swagger-ui-standalone-preset.js"></script>
<script src="%(base)sinit.js"></script></body></html>
"""


def _asset_dir() -> Path:
    import drf_spectacular_sidecar

    return Path(drf_spectacular_sidecar.__file__).parent / "static" / "drf_spectacular_sidecar" / "swagger-ui-dist"


class SchemaApi(SpectacularAPIView):
    """The OpenAPI 3 document (YAML by default, JSON with ?format=json)."""

    custom_settings = SCHEMA_SETTINGS
    schema = None  # the schema endpoint is not part of the API it describes


@require_GET
def swagger_page(request: HttpRequest) -> HttpResponse:
    return HttpResponse(PAGE % {"base": "/api/docs/"}, content_type="text/html; charset=utf-8")


@require_GET
def swagger_init(request: HttpRequest) -> HttpResponse:
    return HttpResponse(INIT_JS % {"schema": "/api/schema/"}, content_type="text/javascript")


@require_GET
def swagger_asset(request: HttpRequest, name: str) -> FileResponse:
    if name not in ASSETS:  # a fixed list: no path from the URL reaches the filesystem
        raise Http404("No such asset.")
    response = FileResponse((_asset_dir() / name).open("rb"), content_type=mimetypes.guess_type(name)[0])
    response["Cache-Control"] = "public, max-age=86400"
    return response
