"""The worklist page and its row poll. Thin: parse, call a selector, render."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import render
from django.template.loader import render_to_string

from classifier.forms import WorklistFilterForm
from classifier.http import audit_context
from classifier.roles import action_required
from classifier.selectors.worklist import PENDING_STUDY_STATUSES, worklist_rows, worklist_rows_by_id
from classifier.services.audit import audit_record

WORKLIST_PAGE_SIZE = 50
# (header, sort key or "" when the column does not sort, data-col name)
COLUMNS = (
    ("Priority", "priority", "priority"),
    ("Patient", "patient", "patient"),
    ("MRN", "mrn", "mrn"),
    ("Accession", "accession", "accession"),
    ("Modality / view", "modality", "modality"),
    ("Received", "received", "received"),
    ("Status", "status", "status"),
    ("Result", "", "result"),
    ("p(abnormal)", "p_abnormal", "p_abnormal"),
    ("Requested by", "", "requester"),
)


def _headers(query: QueryDict, current: str) -> list[dict[str, str]]:
    """Column headers with links that sort by them (again: the other direction)."""
    headers = []
    for label, key, col in COLUMNS:
        entry = {"label": label, "col": col, "url": "", "aria_sort": "none"}
        if key:
            active = current.lstrip("-") == key or (not current and key == "priority")
            descending = current.startswith("-") or (not current and key == "priority")
            # Priority reads highest first; every other column starts ascending.
            first = "" if key == "priority" else key
            target = (key if descending else f"-{key}") if active else first
            params = query.copy()
            params.pop("page", None)
            params["sort"] = target
            entry["url"] = "?" + params.urlencode()
            if active:
                entry["aria_sort"] = "descending" if descending else "ascending"
        headers.append(entry)
    return headers


@action_required("view_studies")
def worklist(request: HttpRequest) -> HttpResponse:
    """Studies in priority order with filters and search; pending rows refresh by polling."""
    form = WorklistFilterForm(request.GET or None)
    filters = form.to_filters()
    rows = worklist_rows(filters)
    page = Paginator(rows, WORKLIST_PAGE_SIZE).get_page(request.GET.get("page"))
    # Reading the worklist (and searching it by MRN) shows patient data: one event per page.
    audit_record(
        actor=request.user,
        action="worklist_view",
        audit=audit_context(request),
        detail={"search": filters.q, "page": page.number, "studies": [study.pk for study in page.object_list]},
    )
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "classifier/worklist.html",
        {
            "form": form,
            "page": page,
            "studies": page.object_list,
            "query": query.urlencode(),
            "headers": _headers(request.GET, filters.sort),
            "pending_statuses": PENDING_STUDY_STATUSES,
        },
    )


@action_required("view_studies")
def worklist_poll(request: HttpRequest) -> JsonResponse:
    """Fresh HTML of the requested worklist rows: ``?ids=1,2,3`` -> {"rows": {id: {...}}}.

    Rows are re-rendered with the same template as the page, so the page and the poll can
    never disagree on what a row shows.
    """
    try:
        ids = [int(part) for part in request.GET.get("ids", "").split(",") if part.strip()]
    except ValueError:
        return JsonResponse({"error": "ids must be comma-separated integers"}, status=400)
    rows = {}
    for study in worklist_rows_by_id(ids):
        rows[study.pk] = {
            "status": study.status,
            "pending": study.status in PENDING_STUDY_STATUSES,
            "html": render_to_string(
                "classifier/_worklist_row.html",
                {"study": study, "pending_statuses": PENDING_STUDY_STATUSES},
                request=request,
            ),
        }
    audit_record(
        actor=request.user, action="worklist_poll", audit=audit_context(request), detail={"studies": list(rows)}
    )
    return JsonResponse({"rows": rows})
