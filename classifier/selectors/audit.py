"""Reads of the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django.db.models import QuerySet

from classifier.models import AuditEvent


@dataclass
class AuditFilters:
    action: str = ""
    user: str = ""
    date_from: date | None = None
    date_to: date | None = None


def audit_events(filters: AuditFilters) -> QuerySet[AuditEvent]:
    """Audit events, newest first, filtered."""
    events = AuditEvent.objects.order_by("-created_at", "-id")
    if filters.action:
        events = events.filter(action=filters.action)
    if filters.user:
        events = events.filter(actor_username__iexact=filters.user)
    if filters.date_from:
        events = events.filter(created_at__date__gte=filters.date_from)
    if filters.date_to:
        events = events.filter(created_at__date__lte=filters.date_to)
    return events


def audit_actions() -> list[str]:
    """Distinct action names for the filter menu, sorted.

    The explicit order_by replaces the model's default ordering (-created_at), which
    DISTINCT would otherwise include and so return one row per event."""
    return list(AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct())
