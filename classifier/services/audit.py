"""The audit trail. Records ids and actions, never patient identifiers in free text.

Services take who acted (``Actor``) and where from (``AuditContext``) as values; the
pages and the API build the context from their request (classifier.http.audit_context),
so no service sees an HttpRequest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from django.contrib.auth.models import AnonymousUser, User
from django.db import models

from classifier.models import AuditEvent

# Who acted: a user, an anonymous visitor (failed login) or None (the system).
Actor: TypeAlias = User | AnonymousUser | None


@dataclass(frozen=True)
class AuditContext:
    """Where an action came from: client address and user agent, as the audit log keeps them."""

    ip_address: str | None = None
    user_agent: str = ""


def audit_record(
    *,
    actor: Actor,
    action: str,
    obj: models.Model | None = None,
    object_type: str = "",
    audit: AuditContext | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event. ``actor`` may be None (system) or an anonymous user; without
    ``obj``, ``object_type`` names the kind of rows the event is about (a list page)."""
    user = actor if isinstance(actor, User) and actor.is_authenticated else None
    context = audit or AuditContext()
    return AuditEvent.objects.create(
        actor=user,
        actor_username=user.username if user else (detail or {}).get("username", ""),
        action=action,
        object_type=obj._meta.label_lower if obj is not None else object_type,
        object_id=str(obj.pk) if obj is not None else "",
        ip_address=context.ip_address,
        user_agent=context.user_agent[:255],
        detail=detail or {},
    )
