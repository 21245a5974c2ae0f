"""The worklist: studies in reading order with their latest result, filtered."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from django.db.models import Exists, F, OuterRef, Q, QuerySet, Subquery

from classifier.models import Review, Study
from classifier.selectors.studies import study_annotate_current_result, study_filter_flagged, worklist

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
    sort: str = ""  # one of SORTS, "-" in front for descending; "" = reading order


# Sortable columns: name -> ordering (ascending). Reading order (priority) is the default
# and the tie-break of every other order.
SORTS = {
    "priority": ("priority",),
    "patient": ("patient__name", "patient__mrn"),
    "mrn": ("patient__mrn",),
    "accession": ("accession_number",),
    "received": ("created_at",),
    "status": ("status",),
    "p_abnormal": ("current_p_abnormal",),
    "modality": ("modality", "view_position"),
}


def worklist_rows(filters: WorklistFilters | None = None) -> QuerySet[Study]:
    """Studies in reading order, annotated with their current result (``flagged``,
    ``current_p_abnormal``: see ``study_annotate_current_result``) and ``has_review``.

    A re-run counts as the image's current result, so it shows as pending until it finishes.
    """
    filters = filters or WorklistFilters()
    latest_review = Review.objects.filter(image__study=OuterRef("pk")).order_by("-created_at", "-id")
    rows: Any = (  # an annotated queryset: its extra names are not model fields
        study_annotate_current_result(worklist(status=filters.status or None))
        .select_related("requesting_clinician__api_token")
        .annotate(
            has_review=Exists(Review.objects.filter(image__study=OuterRef("pk"))),
            review_label=Subquery(latest_review.values("label")[:1]),
        )
    )
    if filters.flag is not None:
        rows = study_filter_flagged(rows, filters.flag)
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
    key = filters.sort.lstrip("-")
    if key in SORTS and key != "priority":
        descending = filters.sort.startswith("-")
        order = [F(name).desc(nulls_last=True) if descending else F(name).asc(nulls_last=True) for name in SORTS[key]]
        rows = rows.order_by(*order, "-priority", "created_at", "id")
    elif filters.sort == "-priority":  # lowest priority first
        rows = rows.order_by("priority", "-created_at", "-id")
    return rows


def worklist_rows_by_id(ids: list[int]) -> list[Study]:
    """The given worklist rows (for the polling endpoint), same annotations."""
    return list(worklist_rows().filter(pk__in=ids[:200]))
