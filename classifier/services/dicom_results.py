"""AI results back to the PACS: a DICOM SR and a Secondary Capture per finished prediction,
and again after each radiologist review, sent by C-STORE to every active destination.

Delivery is an outbox, like the webhooks: ``dicom_results_emit`` writes one
DicomDelivery per object and destination (with its UIDs) in the transaction of the
outcome it reports and sends the delivery task after commit; ``dicom_delivery_send``
builds the object (``imaging.results``, highdicom) and C-STOREs it, retried with the
webhooks' backoff by the task; ``dicom_delivery_sweep`` (run by the prediction sweeper)
re-sends deliveries whose task was lost. Only predictions of DICOM images have a study
to send back to.

The delivery task is ``classifier.tasks.dicom_results.dicom_delivery_task`` (``webhooks`` queue).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from classifier.integrations import DicomDelivery, DicomDestination
from classifier.models import Image, Prediction, Review
from classifier.selectors.predictions import prediction_finding_of

if TYPE_CHECKING:  # highdicom is imported only where an object is built
    from pydicom.dataset import Dataset

    from classifier.imaging.results import ResultSummary

log = logging.getLogger(__name__)
SR_SERIES_NUMBER, SC_SERIES_NUMBER = 9901, 9902
# C-STORE success and warnings (PS3.4 B.2.3): the PACS has the object.
STORED = {0x0000, 0xB000, 0xB006, 0xB007}


class DicomDeliveryFailed(Exception):
    """The destination could not be reached or did not store the object; worth retrying."""


def dicom_results_emit(*, prediction_id: int, review_id: int | None = None) -> list[int]:
    """Queue the SR and SC of a finished prediction (or of its review) for every active
    destination, in the caller's transaction. Never raises, in a savepoint: a delivery
    problem never fails the outcome it reports."""
    try:
        with transaction.atomic():
            return _emit(prediction_id, review_id)
    except Exception:
        log.exception("DICOM result emission for prediction %s failed", prediction_id)
        return []


def _emit(prediction_id: int, review_id: int | None) -> list[int]:
    from pydicom.uid import generate_uid

    destinations = list(DicomDestination.objects.filter(is_active=True))
    if not destinations:
        return []
    prediction = Prediction.objects.select_related("image").filter(pk=prediction_id).first()
    if (
        prediction is None
        or prediction.status != Prediction.Status.DONE
        or prediction.model_version_id is None
        or prediction.image.format != Image.Format.DICOM
    ):
        return []
    ids = []
    for kind, number in ((DicomDelivery.Kind.SR, SR_SERIES_NUMBER), (DicomDelivery.Kind.SC, SC_SERIES_NUMBER)):
        series_uid, sop_uid = generate_uid(), generate_uid()  # one object, whatever the destinations
        for destination in destinations:
            delivery = DicomDelivery.objects.create(
                destination=destination,
                prediction=prediction,
                review_id=review_id,
                kind=kind,
                series_instance_uid=series_uid,
                sop_instance_uid=sop_uid,
                series_number=number,
            )
            ids.append(delivery.pk)
    transaction.on_commit(lambda: _send(ids))
    return ids


def _send(ids: list[int]) -> None:
    from classifier.tasks.dicom_results import dicom_delivery_task

    for pk in ids:
        try:
            dicom_delivery_task.delay(pk)
        except Exception:  # broker down: the row stays pending for the sweeper
            log.warning("broker unavailable; DICOM delivery %s not sent", pk, exc_info=True)


def _summary(delivery: DicomDelivery) -> ResultSummary:
    from classifier.imaging.results import ResultSummary

    prediction = delivery.prediction
    version = prediction.model_version
    assert version is not None  # only finished predictions are emitted
    finding = prediction_finding_of(prediction)
    review: Review | None = delivery.review
    return ResultSummary(
        finding=finding.headline,
        p_abnormal=float(prediction.p_abnormal or 0.0),
        flag=bool(prediction.flag),
        threshold=float(prediction.threshold or 0.0),
        cause=finding.cause_note or "",
        model_name=version.name,
        model_version=str(version.version),
        model_sha256=(version.artifact_sha256 or {}).get("model.tflite", ""),
        review=f"Radiologist {review.decision}ed: {review.label}" if review else "",
    )


def dicom_delivery_object(delivery: DicomDelivery) -> Dataset:
    """The SR or SC of a delivery, rebuilt identically on every attempt."""
    import pydicom

    from classifier.imaging.results import secondary_capture, structured_report

    prediction = delivery.prediction
    with prediction.image.file.open("rb") as handle:
        source = pydicom.dcmread(handle, stop_before_pixels=True, force=True)
    uids = {
        "series_uid": delivery.series_instance_uid,
        "sop_uid": delivery.sop_instance_uid,
        "series_number": delivery.series_number,
    }
    summary = _summary(delivery)
    if delivery.kind == DicomDelivery.Kind.SR:
        return structured_report(source, summary, **uids)  # type: ignore[arg-type]
    with prediction.heatmap.open("rb") as handle:
        overlay = handle.read()
    return secondary_capture(source, overlay, summary, **uids)  # type: ignore[arg-type]


def _c_store(destination: DicomDestination, dataset: Dataset) -> tuple[int | None, str]:
    """(C-STORE status, error text); status None when no association was possible."""
    from pynetdicom import AE
    from pynetdicom.presentation import build_context

    ae = AE(ae_title=settings.CXR["DICOM_AE_TITLE"])
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = settings.CXR["DICOM_TIMEOUT_SECONDS"]
    ae.requested_contexts = [build_context(dataset.SOPClassUID, [dataset.file_meta.TransferSyntaxUID])]
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        return None, f"no association with {destination.ae_title}@{destination.host}:{destination.port}"
    try:
        status = assoc.send_c_store(dataset)
    finally:
        assoc.release()
    if "Status" not in status:
        return None, "no C-STORE response (timeout or abort)"
    code = int(status.Status)
    return code, "" if code in STORED else f"C-STORE status 0x{code:04X} {status.get('ErrorComment', '')}".strip()


def dicom_delivery_send(*, delivery_id: int) -> str:
    """One attempt. Returns the final status; raises DicomDeliveryFailed to ask for a retry."""
    delivery = DicomDelivery.objects.select_related(
        "destination", "prediction__image__study", "prediction__model_version", "review"
    ).get(pk=delivery_id)
    if delivery.status != DicomDelivery.Status.PENDING:
        return delivery.status  # a redelivered message after success
    if not delivery.destination.is_active:
        _finish(delivery_id, DicomDelivery.Status.FAILED, "", "The destination was disabled.")
        return DicomDelivery.Status.FAILED
    try:
        dataset = dicom_delivery_object(delivery)
    except Exception as exc:  # a missing file or heatmap, an unusable header: no attempt can succeed
        log.exception("DICOM delivery %s: the object could not be built", delivery_id)
        _finish(delivery_id, DicomDelivery.Status.FAILED, "", f"The object could not be built: {exc}"[:500])
        return DicomDelivery.Status.FAILED
    code, error = _c_store(delivery.destination, dataset)
    ok = code in STORED
    status = DicomDelivery.Status.SUCCEEDED if ok else None
    _finish(delivery_id, status, "" if code is None else f"0x{code:04X}", error, attempted=True)
    if not ok:
        raise DicomDeliveryFailed(error)
    return DicomDelivery.Status.SUCCEEDED


def _finish(delivery_id: int, status: str | None, last_status: str, error: str, *, attempted: bool = False) -> None:
    """Record an outcome; ``attempted`` counts a C-STORE attempt (permanent failures made none)."""
    now = timezone.now()
    changes: dict[str, object] = {"last_status": last_status, "last_error": error}
    if status is not None:
        changes["status"] = status
    if status == DicomDelivery.Status.SUCCEEDED:
        changes["delivered_at"] = now
    if attempted:
        changes.update(attempts=F("attempts") + 1, last_attempt_at=now)
    DicomDelivery.objects.filter(pk=delivery_id).update(**changes)


def dicom_delivery_give_up(*, delivery_id: int) -> None:
    DicomDelivery.objects.filter(pk=delivery_id, status=DicomDelivery.Status.PENDING).update(
        status=DicomDelivery.Status.FAILED
    )


def dicom_delivery_sweep(*, now: datetime | None = None) -> int:
    """Re-send pending deliveries whose next attempt is overdue (their task was lost)."""
    from classifier.services.webhooks import overdue_delivery_ids
    from classifier.tasks.dicom_results import dicom_delivery_task

    overdue = overdue_delivery_ids(DicomDelivery.objects.filter(status=DicomDelivery.Status.PENDING), now=now)
    for pk in overdue:
        dicom_delivery_task.delay(pk)
    return len(overdue)
