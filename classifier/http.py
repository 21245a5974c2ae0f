"""Request helpers shared by the pages and the API (never used by services)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from rest_framework.request import Request

from classifier.services.audit import AuditContext


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
