"""The audit log page (admins)."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from classifier.forms import AuditFilterForm
from classifier.http import audit_context
from classifier.roles import action_required
from classifier.selectors.audit import audit_actions, audit_events
from classifier.services.audit import audit_record

AUDIT_PAGE_SIZE = 50


@action_required("view_audit")
def audit_log(request: HttpRequest) -> HttpResponse:
    """Audit events, newest first, filterable by action, user and date; paginated."""
    form = AuditFilterForm(request.GET or None, actions=audit_actions())
    filters = form.to_filters()
    page = Paginator(audit_events(filters), AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    # The audit log names patients' records and who read them: reading it is audited too.
    audit_record(
        actor=request.user,
        action="audit_view",
        audit=audit_context(request),
        detail={"action": filters.action, "user": filters.user, "page": page.number},
    )
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "classifier/audit.html", {"form": form, "page": page, "query": query.urlencode()})
