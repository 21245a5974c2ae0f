"""The worklist: studies in reading order with their latest result, filtered."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from django.db.models import BooleanField, Exists, ExpressionWrapper, F, OuterRef, Q, QuerySet, Subquery

from classifier.models import Patient, Review, Study
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
            review_label=Subquery(latest_review.values("label")[:1]),
        )
        # From the latest review's label (never empty), not a second EXISTS: PostgreSQL
        # planned that one as a hash of every reviewed image, built for each page.
        .annotate(has_review=ExpressionWrapper(Q(review_label__isnull=False), output_field=BooleanField()))
    )
    if filters.flag is not None:
        rows = study_filter_flagged(rows, filters.flag)
    if filters.reviewed is not None:
        reviewed = Exists(Review.objects.filter(image__study=OuterRef("pk")))  # a semi-join in WHERE
        rows = rows.filter(reviewed if filters.reviewed else ~reviewed)
    if filters.date_from:
        rows = rows.filter(created_at__date__gte=filters.date_from)
    if filters.date_to:
        rows = rows.filter(created_at__date__lte=filters.date_to)
    if filters.clinician:
        rows = rows.filter(requesting_clinician_id=filters.clinician)
    if filters.q:
        rows = rows.filter(pk__in=_search_ids(filters.q))
    key = filters.sort.lstrip("-")
    if key in SORTS and key != "priority":
        descending = filters.sort.startswith("-")
        order = [F(name).desc(nulls_last=True) if descending else F(name).asc(nulls_last=True) for name in SORTS[key]]
        rows = rows.order_by(*order, "-priority", "created_at", "id")
    elif filters.sort == "-priority":  # lowest priority first
        rows = rows.order_by("priority", "-created_at", "-id")
    return rows


def _search_ids(q: str) -> Any:  # a union of values() querysets, for pk__in
    """Ids of the studies whose patient MRN or accession number contains ``q`` (any case).

    A union of two id subqueries rather than one OR across the patient join: each side
    is served by its own trigram index on PostgreSQL (migration 0011), where the OR
    forced a scan of every study joined to its patient."""
    # No ORDER BY in either part: the models' default orderings would make the planner
    # prefer an ordered b-tree scan with a filter over the trigram index.
    patients = Patient.objects.filter(mrn__icontains=q).order_by().values("pk")
    by_mrn = Study.objects.filter(patient__in=patients).order_by().values("pk")
    by_accession = Study.objects.filter(accession_number__icontains=q).order_by().values("pk")
    return by_mrn.union(by_accession)


def worklist_rows_by_id(ids: list[int]) -> list[Study]:
    """The given worklist rows (for the polling endpoint), same annotations."""
    return list(worklist_rows().filter(pk__in=ids[:200]))
