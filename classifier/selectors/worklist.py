"""The worklist: studies in reading order with their latest result, filtered."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery

from classifier.models import Prediction, Review, Study
from classifier.selectors.studies import worklist

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
    rows = (worklist(status=filters.status or None)
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
