"""Request-level guards that run before any view, CSRF check or body parser.

Bodies are refused from their declared Content-Length alone: nothing here reads a byte
of the body, so a client announcing 2 GB and sending 1 KB cannot hold a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

API_PREFIXES = ("/api/", "/dicomweb/")
FHIR_PREFIX = "/fhir/"


def error_response(request: HttpRequest, status: int, code: str, message: str) -> HttpResponse:
    """The refusal in the shape the path's clients read: OperationOutcome for FHIR,
    ``{"error": {"code", "message"}}`` for the API and DICOMweb, plain text for pages."""
    path = request.path_info
    if path.startswith(FHIR_PREFIX):
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [
                {"severity": "error", "code": "exception" if status >= 500 else "invalid", "diagnostics": message}
            ],
        }
        return JsonResponse(outcome, status=status, content_type="application/fhir+json")
    if path.startswith(API_PREFIXES):
        return JsonResponse({"error": {"code": code, "message": message}}, status=status)
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


class RequestSizeLimitMiddleware:
    """413 for a declared body over CXR_MAX_REQUEST_BYTES, 400 for a malformed length.

    Per-view limits (classifier.api.base.ApiMixin.max_body_bytes) stay: this is the
    ceiling for every path, applied before CsrfViewMiddleware reads a POST body."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        declared = request.META.get("CONTENT_LENGTH") or "0"
        limit = settings.CXR["MAX_REQUEST_BYTES"]
        if not declared.isascii() or not declared.strip().isdigit():
            return error_response(request, 400, "invalid_content_length", "The Content-Length header is not a number.")
        if int(declared) > limit:
            return error_response(
                request, 413, "request_too_large", f"The request is larger than {limit // (1024 * 1024)} MiB."
            )
        return self.get_response(request)
