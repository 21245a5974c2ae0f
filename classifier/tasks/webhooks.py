"""The webhook delivery task, on its own ``webhooks`` queue (cxrsite.settings routes it), so
slow or failing receivers never hold up inference: ids in, classifier.services.webhooks
does the work. A message lost with the broker is re-sent by the sweeper."""

from __future__ import annotations

from celery import shared_task


@shared_task(
    name="classifier.tasks.webhook_deliver_task",
    bind=True,
    acks_late=True,
    max_retries=None,
    soft_time_limit=30,
    time_limit=60,
)
def webhook_deliver_task(self, delivery_id: int) -> str:
    """Deliver one webhook event; retried with backoff up to ``MAX_ATTEMPTS`` attempts.

    Attempts are counted on the delivery row, not by the task, so a delivery re-sent by
    the sweeper continues its schedule instead of starting a new one.
    """
    from classifier.integrations import WebhookDelivery
    from classifier.services.webhooks import (
        WebhookDeliveryFailed,
        retry_countdown,
        webhook_deliver,
        webhook_give_up,
        webhook_max_attempts,
    )

    try:
        return webhook_deliver(delivery_id=delivery_id)
    except WebhookDeliveryFailed as exc:
        attempts = WebhookDelivery.objects.values_list("attempts", flat=True).get(pk=delivery_id)
        if attempts >= webhook_max_attempts():
            webhook_give_up(delivery_id=delivery_id)
            return WebhookDelivery.Status.FAILED
        raise self.retry(exc=exc, countdown=retry_countdown(attempts - 1)) from None
