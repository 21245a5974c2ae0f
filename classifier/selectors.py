"""Reads. Views and the API go through these, never through ad-hoc queries."""
from __future__ import annotations

from django.db.models import OuterRef, QuerySet, Subquery

from classifier.models import Image, Prediction, Review, Study


def prediction_latest(image: Image) -> Prediction | None:
    """The most recent prediction of an image, whatever its status."""
    return image.predictions.select_related("model_version").order_by("-created_at", "-id").first()


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
