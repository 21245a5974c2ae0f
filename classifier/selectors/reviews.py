"""Reads of reviews: an image's label, the reviewed images, the next study to review."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, QuerySet, Subquery

from classifier.models import Image, Prediction, Review, Study
from classifier.selectors.studies import worklist


def review_latest(image: Image) -> Review | None:
    """The latest review of an image: this is its label."""
    return image.reviews.order_by("-created_at", "-id").first()


def review_of_prediction(prediction: Prediction) -> Review | None:
    """The latest review of this analysis. An image re-analysed after its review has a new
    prediction that nobody has read yet: the earlier read is not this result's."""
    return prediction.reviews.order_by("-created_at", "-id").first()


def reviewed_images() -> QuerySet[Image]:
    """Images with at least one review, annotated with ``reviewed_label`` (latest review)."""
    latest = Review.objects.filter(image=OuterRef("pk")).order_by("-created_at", "-id")
    return (
        Image.objects.filter(reviews__isnull=False)
        .distinct()
        .annotate(
            reviewed_label=Subquery(latest.values("label")[:1]), reviewed_at=Subquery(latest.values("created_at")[:1])
        )
    )


def review_next_study(*, exclude: list[int]) -> Study | None:
    """The highest-priority study whose AI result is ready and that has an unreviewed image."""
    unreviewed = Image.objects.filter(
        study=OuterRef("pk"), reviews__isnull=True, predictions__status=Prediction.Status.DONE
    )
    return worklist(status=Study.Status.DONE).filter(Exists(unreviewed)).exclude(pk__in=exclude).first()
