"""The audit trail. Records ids and actions, never patient identifiers in free text."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.http import HttpRequest

from classifier.models import AuditEvent


def client_ip(request: HttpRequest | None) -> str | None:
    """The client address. X-Forwarded-For is not trusted: deploy behind a proxy that sets REMOTE_ADDR."""
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def audit_record(
    *,
    actor: Any,
    action: str,
    obj: models.Model | None = None,
    request: HttpRequest | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event. ``actor`` may be None (system) or an anonymous user."""
    user = actor if getattr(actor, "is_authenticated", False) else None
    return AuditEvent.objects.create(
        actor=user,
        actor_username=getattr(user, "username", "") if user else (detail or {}).get("username", ""),
        action=action,
        object_type=obj._meta.label_lower if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        ip_address=client_ip(request),
        user_agent=(request.META.get("HTTP_USER_AGENT", "")[:255] if request is not None else ""),
        detail=detail or {},
    )
