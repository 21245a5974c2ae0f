"""API tokens: create one for an integration (shown once) and revoke it."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.utils import timezone
from rest_framework.throttling import SimpleRateThrottle

from classifier.integrations import ApiToken, Webhook
from classifier.roles import ensure_roles
from classifier.services.audit import Actor, AuditContext, audit_record
from classifier.services.errors import ServiceError

TOKEN_PREFIX = "cxr_"


def token_hash(raw: str) -> str:
    """The stored form of a token: its sha256 (see ApiToken)."""
    return hashlib.sha256(raw.encode()).hexdigest()


def _check_rate(rate: str) -> None:
    """A DRF rate with at least one request per period: '0/min' and '-5/min' parse, but
    throttle everything (or nothing) in ways nobody meant."""
    if not rate:
        return
    message = "The rate must look like '600/min': at least 1 request per sec, min, hour or day."
    try:
        count, _ = SimpleRateThrottle.parse_rate(None, rate)  # type: ignore[arg-type]
    except (ValueError, KeyError, IndexError):
        raise ServiceError("invalid_rate", message) from None
    if count is None or count < 1 or not rate.partition("/")[0].strip().isdigit():
        raise ServiceError("invalid_rate", message)


@transaction.atomic
def api_token_create(
    *,
    name: str,
    role: str,
    created_by: User | None,
    rate: str = "",
    expires_at: datetime | None = None,
    audit: AuditContext | None = None,
) -> tuple[ApiToken, str]:
    """Create a token and its service user in ``role``'s group. Returns the raw token, shown once."""
    if role not in ApiToken.Role.values:
        raise ServiceError("invalid_role", f"The role must be one of {', '.join(ApiToken.Role.values)}.")
    if not name.strip():
        raise ServiceError("missing_field", "Please name the integration that uses this token.")
    _check_rate(rate)
    if expires_at is not None and expires_at <= timezone.now():
        raise ServiceError("invalid_expiry", "The expiry must be in the future.")
    group = Group.objects.filter(name=role).first() or ensure_roles()[role]
    user = get_user_model().objects.create_user(username=f"api-{uuid.uuid4().hex[:12]}")
    user.set_unusable_password()  # the service user can never log in to the web pages
    user.first_name = name.strip()[:150]
    user.save(update_fields=["password", "first_name"])
    user.groups.add(group)
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        name=name.strip()[:100],
        role=role,
        user=user,
        token_hash=token_hash(raw),
        prefix=raw[:12],
        rate=rate,
        created_by=created_by,
        expires_at=expires_at,
    )
    audit_record(
        actor=created_by,
        action="api_token_create",
        obj=token,
        audit=audit,
        detail={"role": role, "service_user": user.username},
    )
    return token, raw


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor: Actor, audit: AuditContext | None = None) -> ApiToken:
    """Revoke a token for good and deactivate its service user. Idempotent."""
    token = ApiToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        get_user_model().objects.filter(pk=token.user_id).update(is_active=False)
        Webhook.objects.filter(owner_id=token.user_id).update(is_active=False)
        audit_record(actor=actor, action="api_token_revoke", obj=token, audit=audit)
    return token
