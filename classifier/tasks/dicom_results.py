"""The DICOM result delivery task (C-STORE to a PACS), on the ``webhooks`` queue with the
other outbound deliveries: ids in, classifier.services.dicom_results does the work."""

from __future__ import annotations

from celery import shared_task


@shared_task(
    name="classifier.tasks.dicom_delivery_task",
    bind=True,
    acks_late=True,
    max_retries=None,
    soft_time_limit=120,
    time_limit=150,
)
def dicom_delivery_task(self, delivery_id: int) -> str:
    """Send one SR or SC; retried with the webhooks' backoff, attempts counted on the row."""
    from classifier.integrations import DicomDelivery
    from classifier.services.dicom_results import DicomDeliveryFailed, dicom_delivery_give_up, dicom_delivery_send
    from classifier.services.webhooks import retry_countdown, webhook_max_attempts

    try:
        return dicom_delivery_send(delivery_id=delivery_id)
    except DicomDeliveryFailed as exc:
        attempts = DicomDelivery.objects.values_list("attempts", flat=True).get(pk=delivery_id)
        if attempts >= webhook_max_attempts():
            dicom_delivery_give_up(delivery_id=delivery_id)
            return DicomDelivery.Status.FAILED
        raise self.retry(exc=exc, countdown=retry_countdown(attempts - 1)) from None
