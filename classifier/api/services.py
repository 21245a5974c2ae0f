"""Writes the API owns: patients by MRN, API tokens, webhook registrations.

Same discipline as classifier.services: keyword-only arguments, validation before the
write, an audit event for each change, ServiceError for refusals.
"""
from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.throttling import SimpleRateThrottle

from classifier.api.auth import TOKEN_PREFIX, token_hash
from classifier.audit import audit_record
from classifier.integrations import ApiToken, Webhook
from classifier.models import Patient
from classifier.roles import ensure_roles
from classifier.services import ServiceError


def patient_get_or_create(*, mrn: str, name: str = "", birth_date: Any = None, sex: str = "",
                          actor: Any, request: Any = None) -> tuple[Patient, bool]:
    """The patient with this MRN, created when new; an existing row is returned unchanged."""
    mrn = mrn.strip()
    if not mrn:
        raise ServiceError("missing_field", "Please enter the patient MRN.")
    try:
        with transaction.atomic():
            patient, created = Patient.objects.get_or_create(
                mrn=mrn, defaults={"name": name[:200], "birth_date": birth_date, "sex": sex})
    except IntegrityError:  # a concurrent create of the same MRN won
        patient, created = Patient.objects.get(mrn=mrn), False
    if created:
        audit_record(actor=actor, action="patient_create", obj=patient, request=request)
    return patient, created


def _check_rate(rate: str) -> None:
    if not rate:
        return
    try:
        SimpleRateThrottle.parse_rate(None, rate)  # type: ignore[arg-type]
    except (ValueError, KeyError, IndexError):
        raise ServiceError("invalid_rate", "The rate must look like '600/min' (per sec, min, hour or day).") from None


@transaction.atomic
def api_token_create(*, name: str, role: str, created_by: Any, rate: str = "",
                     expires_at: datetime | None = None, request: Any = None) -> tuple[ApiToken, str]:
    """Create a token and its service user in ``role``'s group. Returns the raw token, shown once."""
    if role not in ApiToken.Role.values:
        raise ServiceError("invalid_role", f"The role must be one of {', '.join(ApiToken.Role.values)}.")
    if not name.strip():
        raise ServiceError("missing_field", "Please name the integration that uses this token.")
    _check_rate(rate)
    group = Group.objects.filter(name=role).first() or ensure_roles()[role]
    user = get_user_model().objects.create_user(username=f"api-{uuid.uuid4().hex[:12]}")
    user.set_unusable_password()  # the service user can never log in to the web pages
    user.first_name = name.strip()[:150]
    user.save(update_fields=["password", "first_name"])
    user.groups.add(group)
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(name=name.strip()[:100], role=role, user=user, token_hash=token_hash(raw),
                                    prefix=raw[:12], rate=rate, created_by=created_by, expires_at=expires_at)
    audit_record(actor=created_by, action="api_token_create", obj=token, request=request,
                 detail={"role": role, "service_user": user.username})
    return token, raw


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor: Any, request: Any = None) -> ApiToken:
    """Revoke a token for good and deactivate its service user. Idempotent."""
    token = ApiToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        get_user_model().objects.filter(pk=token.user_id).update(is_active=False)
        Webhook.objects.filter(owner_id=token.user_id).update(is_active=False)
        audit_record(actor=actor, action="api_token_revoke", obj=token, request=request)
    return token


def webhook_create(*, owner: Any, url: str, events: list[str], request: Any = None) -> Webhook:
    """Register a callback URL for ``events`` (empty: all). The secret is in the returned row."""
    unknown = sorted(set(events) - set(Webhook.Event.values))
    if unknown:
        raise ServiceError("invalid_event", f"Unknown events: {', '.join(unknown)}.")
    if not url.lower().startswith(("http://", "https://")):
        raise ServiceError("invalid_url", "The callback URL must be http or https.")
    webhook = Webhook.objects.create(owner=owner, url=url, events=sorted(set(events)),
                                     secret=secrets.token_urlsafe(32))
    audit_record(actor=owner, action="webhook_create", obj=webhook, request=request, detail={"events": events})
    return webhook


def webhook_delete(*, webhook: Webhook, actor: Any, request: Any = None) -> None:
    """Deactivate a webhook; its delivery history is kept."""
    Webhook.objects.filter(pk=webhook.pk).update(is_active=False)
    audit_record(actor=actor, action="webhook_delete", obj=webhook, request=request)
