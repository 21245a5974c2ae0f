"""Request-level guards around every view, CSRF check and body parser.

Bodies are refused from their declared Content-Length alone: nothing here reads a byte
of the body, so a client announcing 2 GB and sending 1 KB cannot hold a worker thread.
A database that cannot be reached is a 503 with Retry-After, not a 500.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_cache_control

from classifier.http import database_unavailable, error_response, is_database_outage


class RequestSizeLimitMiddleware:
    """413 for a declared body over CXR_MAX_REQUEST_BYTES, 400 for a malformed length.

    Per-view limits (classifier.api.base.ApiMixin.max_body_bytes) stay: this is the
    ceiling for every path, applied before CsrfViewMiddleware reads a POST body. STOW-RS
    (a POST under /dicomweb/studies) has its own, CXR_STOW_MAX_BYTES: it streams any
    number of instances to temporary files, and its multipart/related body is one CSRF
    never parses."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        declared = request.META.get("CONTENT_LENGTH") or "0"
        stow = request.method == "POST" and request.path.startswith("/dicomweb/studies")
        limit = settings.CXR["STOW_MAX_BYTES" if stow else "MAX_REQUEST_BYTES"]
        if not declared.isascii() or not declared.strip().isdigit():
            return error_response(request, 400, "invalid_content_length", "The Content-Length header is not a number.")
        if int(declared) > limit:
            return error_response(
                request, 413, "request_too_large", f"The request is larger than {limit // (1024 * 1024)} MiB."
            )
        return self.get_response(request)


class DatabaseUnavailableMiddleware:
    """A view that fails because the database is unreachable answers 503 + Retry-After in
    the path's error shape. Failures outside views (a session saved on the way out) reach
    ``handler500`` (classifier.views.errors.server_error), which answers the same."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if is_database_outage(exception):
            return database_unavailable(request)
        return None


class NulInQueryMiddleware:
    """400 naming the parameter for a NUL byte in the path or a query parameter: no
    database stores one, and PostgreSQL's driver raised (500) on the lookups (QIDO-RS
    ``?PatientID=%00``, API filters)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path:
            return error_response(request, 400, "invalid_path", "The path contains a NUL byte.")
        for name, values in request.GET.lists():
            if "\x00" in name or any("\x00" in value for value in values):
                shown = name.replace("\x00", "")[:64] or "(unnamed)"
                return error_response(
                    request, 400, "invalid_query", f"The query parameter {shown} contains a NUL byte."
                )
        return self.get_response(request)


class SecurityHeadersMiddleware:
    """Content-Security-Policy (settings.CONTENT_SECURITY_POLICY) on every response, and
    ``Cache-Control: no-store`` on every response that does not set its own caching:
    pages, API answers and images carry patient data, which must not stay in a browser's
    or a proxy's cache. Static files keep whitenoise's caching headers."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = settings.CONTENT_SECURITY_POLICY
        if "Cache-Control" not in response:
            patch_cache_control(response, no_store=True, private=True)
        return response
