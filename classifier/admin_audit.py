"""The Django admin's reads and writes of patient data, audited like the pages and the API.

``AuditedAdmin`` goes first in the bases of every ModelAdmin that shows patient data. Each
request is one AuditEvent: a changelist page ``admin_list`` (model, rows shown, count;
the search term and filter values are redacted), a change, view, delete-confirmation or
history page ``admin_view`` (the object), a save ``admin_change`` (changed field names,
old -> new only for ``audit_values``), an add ``admin_add``, a delete ``admin_delete``
(one per object, the bulk action too), an action's confirmation page ``admin_action``.

A write's event is written inside the admin's own transaction (changeform_view,
delete_view and list_editable saves are atomic; the bulk delete is made atomic here), so
the change and its event commit or roll back together. Values of fields outside
``audit_values`` (MRN, name, dates, notes, UIDs) are never written to the log.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import models, router, transaction
from django.http import HttpRequest, HttpResponse

from classifier.http import audit_context
from classifier.services.audit import audit_record

REDACTED = "<redacted>"
# Row ids kept in a list event; the count is always recorded.
MAX_IDS = 200


def _plain(value: Any) -> Any:
    """A JSON-safe form of a non-identifying field value."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class AuditedAdmin(admin.ModelAdmin):
    """Audits every admin page and save of its model (see the module docstring)."""

    # Fields whose old and new values may be written to the audit log (never identifiers).
    audit_values: tuple[str, ...] = ()

    def _audit(self, request: HttpRequest, action: str, obj: models.Model | None = None, **detail: Any) -> None:
        audit_record(
            actor=request.user,
            action=action,
            obj=obj,
            object_type="" if obj is not None else self.model._meta.label_lower,
            audit=audit_context(request),
            detail={"admin": request.path[:200], **detail},
        )

    def _redacted(self, params: dict[str, Any]) -> dict[str, Any]:
        """Filter parameters with values kept only for ``audit_values`` lookups."""
        return {
            key: _plain(value) if key.split("__", 1)[0] in self.audit_values else REDACTED
            for key, value in params.items()
        }

    def _values(self, obj: models.Model, names: list[str]) -> dict[str, Any]:
        return {name: _plain(getattr(obj, name, None)) for name in names if name in self.audit_values}

    # Reads -------------------------------------------------------------------------------

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None) or {}
        changelist = context.get("cl")
        if response.status_code == 200 and changelist is not None:
            self._audit(
                request,
                "admin_list",
                search=REDACTED if changelist.query else "",
                filters=self._redacted(changelist.params),
                page=changelist.page_num,
                count=changelist.result_count,
                ids=[row.pk for row in changelist.result_list][:MAX_IDS],
            )
        elif response.status_code == 200 and "queryset" in context:
            # An action's confirmation page (the bulk delete's lists what it would delete).
            self._audit(
                request,
                "admin_action",
                name=request.POST.get("action", ""),
                ids=[row.pk for row in context["queryset"]][:MAX_IDS],
            )
        return response

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        # The change (or view-only) page of one row, and a refused save shown again.
        if obj is not None and not add:
            self._audit(request, "admin_view", obj, page="change")
        return super().render_change_form(request, context, add, change, form_url, obj)

    def render_delete_form(self, request: HttpRequest, context: dict[str, Any]) -> Any:
        obj = context.get("object")
        if isinstance(obj, models.Model):
            self._audit(request, "admin_view", obj, page="delete")
        return super().render_delete_form(request, context)

    def history_view(self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None) -> Any:
        response: HttpResponse = super().history_view(request, object_id, extra_context)
        obj = (getattr(response, "context_data", None) or {}).get("object")
        if response.status_code == 200 and isinstance(obj, models.Model):
            self._audit(request, "admin_view", obj, page="history")
        return response

    # Writes (inside the admin's transaction) -----------------------------------------------

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        fields = list(form.changed_data)
        if not change:
            super().save_model(request, obj, form, change)
            self._audit(request, "admin_add", obj, fields=fields, values=self._values(obj, fields))
            return
        watched = [name for name in fields if name in self.audit_values]
        stored = type(obj)._default_manager.filter(pk=obj.pk).first()
        old = self._values(stored, watched) if stored is not None else {}
        super().save_model(request, obj, form, change)
        changes = {name: {"old": old.get(name), "new": value} for name, value in self._values(obj, watched).items()}
        self._audit(request, "admin_change", obj, fields=fields, changes=changes)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self._audit(request, "admin_delete", obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        with transaction.atomic(using=router.db_for_write(self.model)):
            for obj in queryset:
                self._audit(request, "admin_delete", obj, bulk=True)
            super().delete_queryset(request, queryset)
