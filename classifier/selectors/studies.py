"""Reads of studies and their images' latest predictions. Views, the API and the
workers go through these, never through ad-hoc queries."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

from django.db.models import Count, Exists, F, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse

from classifier.findings import Finding
from classifier.models import Image, Label, Prediction, Review, Study
from classifier.selectors.predictions import prediction_finding_of


def prediction_latest(image: Image) -> Prediction | None:
    """The most recent prediction of an image, whatever its status."""
    return image.predictions.select_related("model_version", "site_threshold").order_by("-created_at", "-id").first()


class ImageState(NamedTuple):
    """What a study's status and priority depend on, per image."""

    status: str | None  # latest prediction's status; None: no prediction yet
    p_abnormal: float | None
    flag: bool | None
    reviewed: bool


def study_image_states(study_ids: list[int]) -> dict[int, list[ImageState]]:
    """Each image of the studies with its latest prediction's outcome, by study id.

    Three plain queries (images, their predictions newest first, reviewed images) for
    any number of studies: this runs after every batch of predictions, where one query
    with correlated subqueries per study cost more to compile than to run.
    """
    images = list(
        Image.objects.filter(study_id__in=study_ids).order_by("created_at", "pk").values_list("pk", "study_id")
    )
    latest: dict[int, tuple[str, float | None, bool | None]] = {}
    for image_id, status, p_abnormal, flag in (
        Prediction.objects.filter(image__study_id__in=study_ids)
        .order_by("-created_at", "-id")
        .values_list("image_id", "status", "p_abnormal", "flag")
    ):
        latest.setdefault(image_id, (status, p_abnormal, flag))
    reviewed = set(Review.objects.filter(image__study_id__in=study_ids).values_list("image_id", flat=True))
    states: dict[int, list[ImageState]] = {}
    for image_id, study_id in images:
        states.setdefault(study_id, []).append(
            ImageState(*latest.get(image_id, (None, None, None)), image_id in reviewed)  # type: ignore[call-arg]
        )
    return states


def worklist(*, status: str | None = None) -> QuerySet[Study]:
    """Studies in reading order: priority first, then oldest first. A study without images
    (an order whose images have not arrived) is not on the worklist: nothing to read.

    ``Study.has_images`` (stored by the refresh every upload runs), not an EXISTS over the
    images: the page count would otherwise semi-join every image of every study."""
    studies = Study.objects.select_related("patient").filter(has_images=True).order_by("-priority", "created_at", "id")
    if status:
        studies = studies.filter(status=status)
    return studies


def study_annotate_current_result(studies: QuerySet[Study]) -> QuerySet[Study]:
    """The one rule for "is this study flagged", as annotations every reader uses.

    An image's current result is its latest prediction. ``flagged`` is True when any
    current image result is flagged, False when none is but at least one is unflagged,
    None while no image has a result (pending, failed, no image). ``current_p_abnormal``
    (a column) is the highest current p(abnormal) of the study's images.

    Both are read from the columns ``study_refresh`` stores after every change of a
    prediction or review (``Study.current_flag``, ``Study.current_p_abnormal``):
    computing them per study from the images' latest predictions made a selective
    flag filter walk most of the table.
    """
    return studies.annotate(flagged=F("current_flag"))


def study_annotate_image_count(studies: QuerySet[Study]) -> QuerySet[Study]:
    """``n_images``: each study's number of images, as a correlated subquery (evaluated
    for the rows a page returns; a join with GROUP BY would aggregate the whole table
    before the LIMIT)."""
    counts = Image.objects.filter(study=OuterRef("pk")).order_by().values("study").annotate(n=Count("pk")).values("n")
    return studies.annotate(n_images=Coalesce(Subquery(counts), 0))


def study_ids_to_resync() -> list[int]:
    """Studies whose stored state may lag their images, for the sweeper to refresh fully:
    those with a pending or running prediction (a worker's claim, a release and a reclaim
    change a prediction's status without refreshing its study), and unreviewed studies
    with images but no ``triage_base`` (rows written without the services). Both sets
    are small in steady state; the first is served by the prediction status index."""
    active = Prediction.objects.filter(status__in=[Prediction.Status.PENDING, Prediction.Status.RUNNING]).values_list(
        "image__study_id", flat=True
    )
    unset = (
        Study.objects.filter(triage_base__isnull=True)
        .exclude(status=Study.Status.REVIEWED)
        .filter(Exists(Image.objects.filter(study=OuterRef("pk"))))
        .values_list("pk", flat=True)
    )
    return sorted(set(active) | set(unset))


def study_filter_flagged(studies: QuerySet[Study], flagged: bool) -> QuerySet[Study]:
    """Studies whose ``flagged`` (see ``study_annotate_current_result``) equals ``flagged``:
    the stored column it reads, so no annotation is needed."""
    return studies.filter(current_flag=flagged)


@dataclass
class ImagePanel:
    """One image of a study page: its latest prediction, history and reviews."""

    image: Image
    latest: Prediction | None
    predictions: list[Prediction]
    reviews: list[Review]
    probability_rows: list[dict[str, Any]] = field(default_factory=list)
    finding: Finding | None = None
    form: Any = None  # the review form, set by the view for users who may review
    dicom_deliveries: list[Any] = field(default_factory=list)  # results sent to the PACS, set by the view

    @property
    def view_name(self) -> str:
        """The image's own view (its header) when known, else the study's."""
        own = Study.view_code((self.image.metadata or {}).get("view_position"))
        view = own if own != Study.View.UNKNOWN else self.image.study.view_position
        return str(dict(Study.View.choices).get(view, view))

    @cached_property
    def viewer(self) -> dict[str, Any] | None:
        """What the full-resolution viewer needs, when the image has a film and the latest
        result its registered heatmap: film URL and description, and where the heatmap's
        region sits on the film (percent of its width and height)."""
        p = self.latest
        if not (self.image.film and p is not None and p.heatmap_rgba and p.geometry.get("crop_box")):
            return None
        width, height = p.geometry["source_size"]
        x0, y0, x1, y1 = p.geometry["crop_box"]
        return {
            "script_id": f"viewer-data-{self.image.pk}",
            "overlay_url": reverse("prediction_image", args=[p.pk, "heatmap_rgba"]),
            "overlay_box": {
                "left": round(100 * x0 / width, 4),
                "top": round(100 * y0 / height, 4),
                "width": round(100 * (x1 - x0) / width, 4),
                "height": round(100 * (y1 - y0) / height, 4),
            },
            "data": {"film_url": reverse("image_film", args=[self.image.pk]), "film": self.image.film_meta},
        }

    @property
    def reviewable(self) -> bool:
        return self.latest is not None and self.latest.status == Prediction.Status.DONE

    @property
    def failed(self) -> list[Prediction]:
        return [p for p in self.predictions if p.status == Prediction.Status.FAILED]


def _probability_rows(prediction: Prediction | None) -> list[dict[str, Any]]:
    if prediction is None or not prediction.probabilities:
        return []
    names = dict(Label.choices)
    rows = [
        {"label": key, "name": names.get(key, key), "p": float(value), "pct": round(float(value) * 100, 1)}
        for key, value in prediction.probabilities.items()
    ]
    return sorted(rows, key=lambda row: -row["p"])


def study_detail(study_id: int) -> tuple[Study, list[ImagePanel], list[Study]]:
    """A study with its image panels and the patient's other studies (newest first).

    Raises Study.DoesNotExist.
    """
    study = Study.objects.select_related("patient", "requesting_clinician").get(pk=study_id)
    panels = []
    for image in study.images.order_by("created_at", "id"):
        predictions = list(
            image.predictions.select_related("model_version", "site_threshold").order_by("-created_at", "-id")
        )
        reviews = list(
            image.reviews.select_related("radiologist", "prediction__model_version").order_by("-created_at", "-id")
        )
        latest = predictions[0] if predictions else None
        panels.append(
            ImagePanel(
                image=image,
                latest=latest,
                predictions=predictions,
                reviews=reviews,
                probability_rows=_probability_rows(latest),
                finding=prediction_finding_of(latest) if latest is not None else None,
            )
        )
    previous = list(Study.objects.filter(patient=study.patient).exclude(pk=study.pk).order_by("-created_at")[:20])
    return study, panels, previous


def study_pending(study_id: int) -> dict[str, Any]:
    """What the study page polls: the study status and its latest predictions' statuses."""
    study = Study.objects.get(pk=study_id)
    statuses = [state.status for state in study_image_states([study_id]).get(study_id, []) if state.status is not None]
    return {
        "status": study.status,
        "pending": any(s in ("pending", "running") for s in statuses),
        "predictions": statuses,
    }
