"""Server-rendered pages. Thin: parse, call a selector or service, render."""
from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from classifier import selectors
from classifier.roles import action_required


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness plus a database round trip; no patient data."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


@action_required("view_studies")
def worklist(request: HttpRequest) -> HttpResponse:
    studies = selectors.worklist(status=request.GET.get("status") or None)[:200]
    return render(request, "classifier/worklist.html", {"studies": studies})
