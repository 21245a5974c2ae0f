"""Reads for the server-rendered pages, built on classifier.selectors.

Kept apart from selectors.py only because that module belongs to the core work; these
are selectors in every other respect (no writes, no request objects) and can move there.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery

from classifier import selectors
from classifier.models import AuditEvent, Image, Label, Prediction, Review, Study

PENDING_STUDY_STATUSES = (Study.Status.QUEUED, Study.Status.RUNNING)


@dataclass
class WorklistFilters:
    """Parsed worklist filters; empty values mean "no filter"."""

    status: str = ""
    flag: bool | None = None
    reviewed: bool | None = None
    date_from: date | None = None
    date_to: date | None = None
    clinician: int | None = None
    q: str = ""


def worklist_rows(filters: WorklistFilters | None = None) -> QuerySet[Study]:
    """Studies in reading order, annotated with the latest prediction's flag and score.

    ``latest_*`` come from the most recent prediction of any image of the study, so a
    re-run shows as pending until it finishes.
    """
    filters = filters or WorklistFilters()
    latest = Prediction.objects.filter(image__study=OuterRef("pk")).order_by("-created_at", "-id")
    rows = (selectors.worklist(status=filters.status or None)
            .select_related("requesting_clinician")
            .annotate(latest_flag=Subquery(latest.values("flag")[:1]),
                      latest_p_abnormal=Subquery(latest.values("p_abnormal")[:1]),
                      latest_status=Subquery(latest.values("status")[:1]),
                      has_review=Exists(Review.objects.filter(image__study=OuterRef("pk")))))
    if filters.flag is not None:
        rows = rows.filter(latest_flag=filters.flag)
    if filters.reviewed is not None:
        rows = rows.filter(has_review=filters.reviewed)
    if filters.date_from:
        rows = rows.filter(created_at__date__gte=filters.date_from)
    if filters.date_to:
        rows = rows.filter(created_at__date__lte=filters.date_to)
    if filters.clinician:
        rows = rows.filter(requesting_clinician_id=filters.clinician)
    if filters.q:
        rows = rows.filter(Q(patient__mrn__icontains=filters.q) | Q(accession_number__icontains=filters.q))
    return rows


def worklist_rows_by_id(ids: list[int]) -> list[Study]:
    """The given worklist rows (for the polling endpoint), same annotations."""
    return list(worklist_rows().filter(pk__in=ids[:200]))


@dataclass
class ImagePanel:
    """One image of a study page: its latest prediction, history and reviews."""

    image: Image
    latest: Prediction | None
    predictions: list[Prediction]
    reviews: list[Review]
    probability_rows: list[dict[str, Any]] = field(default_factory=list)
    form: Any = None  # the review form, set by the view for users who may review

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
    rows = [{"label": key, "name": names.get(key, key), "p": float(value), "pct": round(float(value) * 100, 1)}
            for key, value in prediction.probabilities.items()]
    return sorted(rows, key=lambda row: -row["p"])


def study_detail(study_id: int) -> tuple[Study, list[ImagePanel], list[Study]]:
    """A study with its image panels and the patient's other studies (newest first).

    Raises Study.DoesNotExist.
    """
    study = Study.objects.select_related("patient", "requesting_clinician").get(pk=study_id)
    panels = []
    for image in study.images.order_by("created_at", "id"):
        predictions = list(image.predictions.select_related("model_version").order_by("-created_at", "-id"))
        reviews = list(image.reviews.select_related("radiologist", "prediction__model_version")
                       .order_by("-created_at", "-id"))
        latest = predictions[0] if predictions else None
        panels.append(ImagePanel(image=image, latest=latest, predictions=predictions, reviews=reviews,
                                 probability_rows=_probability_rows(latest)))
    previous = list(Study.objects.filter(patient=study.patient).exclude(pk=study.pk)
                    .order_by("-created_at")[:20])
    return study, panels, previous


def study_pending(study_id: int) -> dict[str, Any]:
    """What the study page polls: the study status and its latest predictions' statuses."""
    study = Study.objects.get(pk=study_id)
    statuses = [state.status for state in selectors.study_image_states([study_id]).get(study_id, [])
                if state.status is not None]
    return {"status": study.status, "pending": any(s in ("pending", "running") for s in statuses),
            "predictions": statuses}


def review_next_study(*, exclude: list[int]) -> Study | None:
    """The highest-priority study whose AI result is ready and that has an unreviewed image."""
    unreviewed = Image.objects.filter(study=OuterRef("pk"), reviews__isnull=True,
                                      predictions__status=Prediction.Status.DONE)
    return (selectors.worklist(status=Study.Status.DONE).filter(Exists(unreviewed))
            .exclude(pk__in=exclude).first())


@dataclass
class AuditFilters:
    action: str = ""
    user: str = ""
    date_from: date | None = None
    date_to: date | None = None


def audit_events(filters: AuditFilters) -> QuerySet[AuditEvent]:
    """Audit events, newest first, filtered."""
    events = AuditEvent.objects.order_by("-created_at", "-id")
    if filters.action:
        events = events.filter(action=filters.action)
    if filters.user:
        events = events.filter(actor_username__iexact=filters.user)
    if filters.date_from:
        events = events.filter(created_at__date__gte=filters.date_from)
    if filters.date_to:
        events = events.filter(created_at__date__lte=filters.date_to)
    return events


def audit_actions() -> list[str]:
    """Distinct action names for the filter menu."""
    return sorted(AuditEvent.objects.values_list("action", flat=True).distinct())
