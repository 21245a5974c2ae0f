"""Reads. Views and the API go through these, never through ad-hoc queries."""
from __future__ import annotations

from typing import NamedTuple

from django.db.models import OuterRef, QuerySet, Subquery

from classifier.models import Image, Prediction, Review, Study


def prediction_latest(image: Image) -> Prediction | None:
    """The most recent prediction of an image, whatever its status."""
    return image.predictions.select_related("model_version").order_by("-created_at", "-id").first()


class ImageState(NamedTuple):
    """What a study's status and priority depend on, per image."""

    status: str | None          # latest prediction's status; None: no prediction yet
    p_abnormal: float | None
    flag: bool | None
    reviewed: bool


def study_image_states(study_ids: list[int]) -> dict[int, list[ImageState]]:
    """Each image of the studies with its latest prediction's outcome, by study id.

    Three plain queries (images, their predictions newest first, reviewed images) for
    any number of studies: this runs after every batch of predictions, where one query
    with correlated subqueries per study cost more to compile than to run.
    """
    images = list(Image.objects.filter(study_id__in=study_ids).order_by("created_at", "pk")
                  .values_list("pk", "study_id"))
    latest: dict[int, tuple[str, float | None, bool | None]] = {}
    for image_id, status, p_abnormal, flag in (
            Prediction.objects.filter(image__study_id__in=study_ids).order_by("-created_at", "-id")
            .values_list("image_id", "status", "p_abnormal", "flag")):
        latest.setdefault(image_id, (status, p_abnormal, flag))
    reviewed = set(Review.objects.filter(image__study_id__in=study_ids).values_list("image_id", flat=True))
    states: dict[int, list[ImageState]] = {}
    for image_id, study_id in images:
        states.setdefault(study_id, []).append(
            ImageState(*latest.get(image_id, (None, None, None)), reviewed=image_id in reviewed))
    return states


def review_latest(image: Image) -> Review | None:
    """The latest review of an image: this is its label."""
    return image.reviews.order_by("-created_at", "-id").first()


def reviewed_images() -> QuerySet[Image]:
    """Images with at least one review, annotated with ``reviewed_label`` (latest review)."""
    latest = Review.objects.filter(image=OuterRef("pk")).order_by("-created_at", "-id")
    return (Image.objects.filter(reviews__isnull=False).distinct()
            .annotate(reviewed_label=Subquery(latest.values("label")[:1]),
                      reviewed_at=Subquery(latest.values("created_at")[:1])))


def worklist(*, status: str | None = None, flagged: bool | None = None) -> QuerySet[Study]:
    """Studies in reading order: priority first, then oldest first."""
    studies = Study.objects.select_related("patient").order_by("-priority", "created_at", "id")
    if status:
        studies = studies.filter(status=status)
    if flagged is not None:
        studies = studies.filter(images__predictions__flag=flagged).distinct()
    return studies
