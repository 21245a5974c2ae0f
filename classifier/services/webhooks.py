"""Webhooks, in one place: registration, payload, signing, emission, delivery, sweep.

``webhook_emit`` stores one WebhookDelivery per interested webhook (the exact body) in
the caller's transaction (an outbox: the event commits with the change it reports, or
not at all) and sends the delivery task, on the ``webhooks`` queue, after commit;
``webhook_deliver`` POSTs it, retried with exponential backoff by the task;
``webhook_sweep`` (run by the prediction sweeper) re-sends deliveries whose task was
lost. Delivery is at least once: receivers deduplicate on the event id
(``X-CXR-Delivery`` and the body's ``id``), which is stable across retries.

Signature: ``X-CXR-Signature: sha256=<hex HMAC-SHA256 of the raw body with the webhook
secret>``; ``X-CXR-Timestamp`` is the attempt's Unix time (the body carries ``created_at``).

The delivery task is ``classifier.tasks.webhooks.webhook_deliver_task``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from classifier.findings import NOTICE
from classifier.integrations import Webhook, WebhookDelivery
from classifier.models import Prediction, Review
from classifier.roles import user_can
from classifier.selectors.predictions import prediction_finding_of
from classifier.services.audit import Actor, AuditContext, audit_record
from classifier.services.broker import broker_send_failed, broker_send_succeeded
from classifier.services.errors import ServiceError
from classifier.services.webhook_targets import TargetAddress, webhook_target_check

log = logging.getLogger(__name__)
USER_AGENT = "cxr-triage-webhooks/1"
CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS = 3.0, 10.0
BACKOFF_SECONDS = 10.0  # the first retry; each later one waits twice as long, at most an hour
MAX_ATTEMPTS = 6
# What the API shows of a failed attempt: no exception text (it would map the network).
UNREACHABLE = "The receiver could not be reached."
TARGET_REFUSED = "The callback URL's host no longer resolves only to public addresses; nothing was sent."


class WebhookDeliveryFailed(Exception):
    """The receiver did not answer 2xx (or could not be reached); worth retrying."""


def webhook_sign(secret: str, body: bytes) -> str:
    """The X-CXR-Signature value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _prediction_data(prediction: Prediction) -> dict[str, Any]:
    version = prediction.model_version
    study = prediction.image.study
    return {
        "prediction": {
            "id": prediction.pk,
            "image": prediction.image_id,
            "study": study.pk,
            "status": prediction.status,
            "label": prediction.label,
            "probabilities": prediction.probabilities,
            "p_abnormal": prediction.p_abnormal,
            "flag": prediction.flag,
            "finding": prediction_finding_of(prediction).as_dict() if prediction.status == "done" else None,
            "threshold": prediction.threshold,
            "threshold_source": prediction.threshold_source,
            "priority": study.priority,
            "model": {
                "name": version.name,
                "version": version.version,
                "artifact_sha256": (version.artifact_sha256 or {}).get("model.tflite", ""),
            }
            if version
            else None,
            "error": {"code": prediction.error_code, "message": prediction.error_message}
            if prediction.error_code
            else None,
            "notice": NOTICE,
        },
        "study": {
            "id": study.pk,
            "accession_number": study.accession_number,
            "study_instance_uid": study.study_instance_uid,
        },
        "links": {
            "prediction": f"/api/v1/predictions/{prediction.pk}/",
            "fhir": f"/fhir/DiagnosticReport/{prediction.pk}",
        },
    }


def _review_data(review: Review) -> dict[str, Any]:
    data = _prediction_data(review.prediction)
    data["review"] = {
        "id": review.pk,
        "prediction": review.prediction_id,
        "decision": review.decision,
        "label": review.label,
        "created_at": review.created_at.isoformat(),
    }
    return data


def webhook_emit(event: str, obj: Prediction | Review) -> list[int]:
    """Queue ``event`` about ``obj`` for every active webhook that wants it. Returns delivery ids."""
    webhooks = [
        hook
        for hook in Webhook.objects.filter(is_active=True).select_related("owner")
        # Only integrations an admin registered (and whose owner still may manage them)
        # receive events: they report any patient's results.
        if hook.wants(event) and user_can(hook.owner, "manage_integrations")
    ]
    if not webhooks:
        return []
    data = _review_data(obj) if isinstance(obj, Review) else _prediction_data(obj)
    event_id = uuid.uuid4()
    body = json.dumps(
        {"id": str(event_id), "event": event, "created_at": timezone.now().isoformat(), "data": data},
        separators=(",", ":"),
        sort_keys=True,
    )
    ids = []
    with transaction.atomic():
        for hook in webhooks:
            ids.append(WebhookDelivery.objects.create(webhook=hook, event=event, event_id=event_id, body=body).pk)

    def send() -> None:
        from classifier.tasks.webhooks import webhook_deliver_task

        for pk in ids:
            try:
                webhook_deliver_task.delay(pk)
            except Exception as exc:  # broker down: the row stays pending with its body
                broker_send_failed(f"webhook delivery {pk}", exc)
            else:
                broker_send_succeeded()

    transaction.on_commit(send)
    return ids


def prediction_finished(prediction_id: int) -> list[int]:
    """Emit prediction.done or prediction.failed for a finished prediction.

    Call it in the transaction that writes the outcome: the delivery rows then commit
    with it (an outbox), and the delivery tasks are sent after commit; a delivery whose
    task never reached the broker is re-sent by ``webhook_sweep``.  Never raises, and
    runs in a savepoint, so a webhook problem can neither fail the caller's transaction
    nor turn a finished prediction into a retried task.
    """
    try:
        with transaction.atomic():
            return _prediction_finished(prediction_id)
    except Exception:
        log.exception("webhook emission for prediction %s failed", prediction_id)
        return []


def _prediction_finished(prediction_id: int) -> list[int]:
    if not Webhook.objects.filter(is_active=True).exists():
        return []  # the common case, one cheap query per finished prediction
    prediction = Prediction.objects.select_related("model_version", "image__study").filter(pk=prediction_id).first()
    if prediction is None or prediction.status not in (Prediction.Status.DONE, Prediction.Status.FAILED):
        return []
    event = "prediction.done" if prediction.status == Prediction.Status.DONE else "prediction.failed"
    return webhook_emit(event, prediction)


def review_created(review_id: int) -> list[int]:
    """Emit review.created for a new review, in the transaction that creates it.

    Same outbox contract as ``prediction_finished``: the delivery rows commit with the
    review (a crash after commit loses no event), and a webhook problem never fails it.
    """
    try:
        with transaction.atomic():
            if not Webhook.objects.filter(is_active=True).exists():
                return []
            review = Review.objects.select_related("prediction__model_version", "prediction__image__study").get(
                pk=review_id
            )
            return webhook_emit("review.created", review)
    except Exception:
        log.exception("webhook emission for review %s failed", review_id)
        return []


def webhook_deliver(*, delivery_id: int) -> str:
    """One attempt. Returns the final status; raises WebhookDeliveryFailed to ask for a retry."""
    delivery = WebhookDelivery.objects.select_related("webhook").get(pk=delivery_id)
    if delivery.status != WebhookDelivery.Status.PENDING:
        return delivery.status  # a redelivered message after success: nothing to do
    hook = delivery.webhook
    if not hook.is_active:
        WebhookDelivery.objects.filter(pk=delivery_id).update(
            status=WebhookDelivery.Status.FAILED, last_error="The webhook was disabled."
        )
        return WebhookDelivery.Status.FAILED
    if not user_can(hook.owner, "manage_integrations"):
        _attempted(delivery_id, code=None, error="The webhook's owner may no longer receive events.")
        webhook_give_up(delivery_id=delivery_id)
        return WebhookDelivery.Status.FAILED
    import requests

    try:  # resolved and checked again for every attempt: the name may now point elsewhere
        target = webhook_target_check(hook.url)
    except ServiceError:
        log.warning("webhook %s: delivery %s refused, the URL's target is not allowed", hook.pk, delivery_id)
        _attempted(delivery_id, code=None, error=TARGET_REFUSED)
        raise WebhookDeliveryFailed(TARGET_REFUSED) from None
    body = delivery.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-CXR-Event": delivery.event,
        "X-CXR-Delivery": str(delivery.event_id),
        "X-CXR-Timestamp": str(int(time.time())),
        "X-CXR-Signature": webhook_sign(hook.secret, body),
    }
    code, error = None, ""
    try:
        code = _post_pinned(target, hook.url, body, headers)
        error = "" if 200 <= code < 300 else f"HTTP {code}"
    except requests.RequestException as exc:
        # The reason stays in the server's log: in the API it would map the network.
        log.warning("webhook %s: delivery %s failed: %s", hook.pk, delivery_id, f"{type(exc).__name__}: {exc}"[:500])
        error = UNREACHABLE
    ok = code is not None and 200 <= code < 300
    _attempted(delivery_id, code=code, error=error, ok=ok)
    if not ok:
        raise WebhookDeliveryFailed(error)
    return WebhookDelivery.Status.SUCCEEDED


def _attempted(delivery_id: int, *, code: int | None, error: str, ok: bool = False) -> None:
    WebhookDelivery.objects.filter(pk=delivery_id).update(
        attempts=F("attempts") + 1,
        last_attempt_at=timezone.now(),
        last_status_code=code,
        last_error=error,
        **({"status": WebhookDelivery.Status.SUCCEEDED, "delivered_at": timezone.now()} if ok else {}),
    )


def _post_pinned(target: TargetAddress, url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST to the address just checked, not to a fresh lookup of the name: the Host header
    and, for https, SNI and the certificate check still use the name. No redirects, no
    proxy or credentials from the environment. Returns the status code."""
    import requests
    from requests.adapters import HTTPAdapter

    class PinnedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            if target.scheme == "https":
                kwargs["server_hostname"] = target.host
                kwargs["assert_hostname"] = target.host
            super().init_poolmanager(*args, **kwargs)

    with requests.Session() as session:
        session.trust_env = False
        session.mount(f"{target.scheme}://", PinnedAdapter())
        response = session.post(
            target.pinned_url(url),
            data=body,
            headers={**headers, "Host": target.host_header},
            allow_redirects=False,
            timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
        )
        return response.status_code


def webhook_give_up(*, delivery_id: int) -> None:
    WebhookDelivery.objects.filter(pk=delivery_id, status=WebhookDelivery.Status.PENDING).update(
        status=WebhookDelivery.Status.FAILED
    )


def webhook_max_attempts() -> int:
    """Attempts after which a delivery is given up as FAILED."""
    return MAX_ATTEMPTS


def retry_countdown(retries: int) -> float:
    """Exponential backoff: base, 2*base, 4*base ... capped at an hour."""
    return min(BACKOFF_SECONDS * (2**retries), 3600.0)


def overdue_delivery_ids(pending: Any, *, now: datetime | None = None) -> list[int]:
    """Ids of pending outbox rows (webhook or DICOM deliveries: ``attempts``, ``created_at``,
    ``last_attempt_at``) whose next attempt, at creation or ``retry_countdown`` after the
    last one, is overdue by more than the sweep interval; at most 500, oldest first."""
    from datetime import timedelta

    now = now or timezone.now()
    grace = timedelta(seconds=settings.CXR["SWEEP_INTERVAL_SECONDS"])
    overdue = []
    for pk, attempts, created_at, last_attempt_at in pending.order_by("pk").values_list(
        "pk", "attempts", "created_at", "last_attempt_at"
    )[:500]:
        due = (
            last_attempt_at + timedelta(seconds=retry_countdown(attempts - 1))
            if attempts and last_attempt_at
            else created_at
        )
        if due + grace < now:
            overdue.append(pk)
    return overdue


def webhook_sweep(*, now: datetime | None = None) -> int:
    """Re-send pending deliveries whose next attempt is overdue by more than
    CXR_SWEEP_INTERVAL_SECONDS (their task was lost: broker down when it was sent, or
    a retry dropped with a broker restart).  Returns how many were re-sent.

    The next attempt is due at creation, or ``retry_countdown`` after the last attempt,
    the schedule ``webhook_deliver_task`` follows; a late duplicate is harmless, since
    receivers deduplicate on the event id.
    """
    overdue = overdue_delivery_ids(WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING), now=now)
    from classifier.tasks.webhooks import webhook_deliver_task

    for pk in overdue:
        webhook_deliver_task.delay(pk)
    return len(overdue)


def webhook_check(*, url: str, events: list[str]) -> None:
    """Refuse unknown event names and callback URLs that fail ``webhook_target_check``
    (https, public addresses) with a ServiceError."""
    unknown = sorted(set(events) - set(Webhook.Event.values))
    if unknown:
        raise ServiceError("invalid_event", f"Unknown events: {', '.join(unknown)}.")
    webhook_target_check(url)


def webhook_create(*, owner: User, url: str, events: list[str], audit: AuditContext | None = None) -> Webhook:
    """Register a callback URL for ``events`` (empty: all). The secret is in the returned row.

    Only integration managers (admins) register webhooks: events carry every patient's
    results. The URL must pass ``webhook_check``."""
    if not user_can(owner, "manage_integrations"):
        raise ServiceError("forbidden", "Only administrators register webhooks.", 403)
    webhook_check(url=url, events=events)
    webhook = Webhook.objects.create(owner=owner, url=url, events=sorted(set(events)), secret=secrets.token_urlsafe(32))
    audit_record(actor=owner, action="webhook_create", obj=webhook, audit=audit, detail={"events": events})
    return webhook


def webhook_delete(*, webhook: Webhook, actor: Actor, audit: AuditContext | None = None) -> None:
    """Deactivate a webhook; its delivery history is kept."""
    Webhook.objects.filter(pk=webhook.pk).update(is_active=False)
    audit_record(actor=actor, action="webhook_delete", obj=webhook, audit=audit)


def webhook_reactivate(*, webhook: Webhook, actor: Actor, audit: AuditContext | None = None) -> None:
    """Deliver events to a deactivated webhook again (not one whose token was revoked)."""
    if webhook.owner.is_active:
        Webhook.objects.filter(pk=webhook.pk).update(is_active=True)
        audit_record(actor=actor, action="webhook_reactivate", obj=webhook, audit=audit)
