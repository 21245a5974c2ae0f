"""Request helpers shared by the pages and the API (never used by services)."""

from __future__ import annotations

import logging

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.request import Request

from classifier.services.audit import AuditContext

logger = logging.getLogger(__name__)

API_PREFIXES = ("/api/", "/dicomweb/")
FHIR_PREFIX = "/fhir/"
# Seconds a client should wait before retrying while a dependency is down.
RETRY_AFTER_SECONDS = 30


def error_response(request: HttpRequest, status: int, code: str, message: str) -> HttpResponse:
    """A refusal in the shape the path's clients read: OperationOutcome under /fhir/,
    ``{"error": {"code", "message"}}`` for the API and DICOMweb, plain text for pages.
    Renders no template and touches no database (it answers database outages too)."""
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


def is_database_outage(exc: BaseException | None) -> bool:
    """The database could not be reached or dropped the connection (psycopg2 and sqlite3
    both raise these through Django's wrappers), as opposed to a bad query."""
    return isinstance(exc, (OperationalError, InterfaceError))


def database_unavailable(request: HttpRequest) -> HttpResponse:
    """503 with Retry-After: the request may succeed once the database is back."""
    logger.error("database unavailable: %s %s", request.method, request.path_info)
    response = error_response(request, 503, "database_unavailable", "The database is unavailable; retry in a moment.")
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def audit_context(request: HttpRequest | None) -> AuditContext:
    """The audit context of a request. X-Forwarded-For is not trusted: deploy behind a
    proxy that sets REMOTE_ADDR."""
    if request is None:
        return AuditContext()
    return AuditContext(
        ip_address=request.META.get("REMOTE_ADDR") or None, user_agent=request.META.get("HTTP_USER_AGENT", "")[:255]
    )


def request_user(request: HttpRequest | Request) -> User:
    """The authenticated user of a request that passed its role check (action_required or
    ActionPermission), typed for the services; anything else is refused."""
    user = request.user
    if not isinstance(user, User) or not user.is_authenticated:
        raise PermissionDenied("Authentication is required.")
    return user
