"""The worklist page and its row poll. Thin: parse, call a selector, render."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string

from classifier.forms import WorklistFilterForm
from classifier.roles import action_required
from classifier.selectors.worklist import PENDING_STUDY_STATUSES, worklist_rows, worklist_rows_by_id

WORKLIST_PAGE_SIZE = 50


@action_required("view_studies")
def worklist(request: HttpRequest) -> HttpResponse:
    """Studies in priority order with filters and search; pending rows refresh by polling."""
    form = WorklistFilterForm(request.GET or None)
    rows = worklist_rows(form.to_filters())
    page = Paginator(rows, WORKLIST_PAGE_SIZE).get_page(request.GET.get("page"))
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
    return JsonResponse({"rows": rows})
