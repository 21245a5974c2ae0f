"""Radiologist reviews: confirm or correct a finished prediction."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from classifier.models import Label, Prediction, Review
from classifier.services.audit import AuditContext, audit_record
from classifier.services.dicom_results import dicom_results_emit
from classifier.services.errors import ServiceError
from classifier.services.studies import study_refresh
from classifier.services.webhooks import review_created


@transaction.atomic
def review_submit(
    *,
    prediction: Prediction,
    radiologist: User,
    decision: str,
    label: str = "",
    comment: str = "",
    audit: AuditContext | None = None,
) -> Review:
    """Record a radiologist's confirm/correct. The latest review becomes the image's label.

    The review, its audit event and its review.created deliveries commit together.
    """
    if prediction.status != Prediction.Status.DONE:
        raise ServiceError("prediction_not_done", "Only a finished prediction can be reviewed.", 409)
    if decision == Review.Decision.CONFIRM:
        label = prediction.label
    elif decision == Review.Decision.CORRECT:
        if label not in Label.values:
            raise ServiceError("invalid_label", "Choose the correct label from the list.")
        if label == prediction.label:
            # "Correcting" to the AI's own label agrees with it: stored as a confirm, so the
            # agreement statistics and FHIR ("Radiologist confirmed") tell the truth.
            decision = Review.Decision.CONFIRM
    else:
        raise ServiceError("invalid_decision", "The decision must be confirm or correct.")
    review = Review.objects.create(
        prediction=prediction,
        image=prediction.image,
        radiologist=radiologist,
        decision=decision,
        label=label,
        comment=comment.strip(),
    )
    audit_record(
        actor=radiologist,
        action="review",
        obj=review,
        audit=audit,
        detail={"prediction": prediction.pk, "decision": decision, "label": label},
    )
    review_created(review.pk)  # the event's delivery rows commit with the review
    dicom_results_emit(prediction_id=prediction.pk, review_id=review.pk)  # so do the PACS objects
    transaction.on_commit(lambda: study_refresh(prediction.image.study_id))
    return review
