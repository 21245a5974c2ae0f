"""Base classes of every API view: role actions, request size, audit.

Authentication, permissions, throttling, rendering, pagination, filtering and the error
handler are DRF settings (cxrsite.settings.REST_FRAMEWORK).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.db import models
from rest_framework import generics, renderers
from rest_framework.negotiation import BaseContentNegotiation, DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.views import APIView

from classifier.api.errors import ApiError
from classifier.http import audit_context
from classifier.services.audit import audit_record


class BinaryRenderer(renderers.BaseRenderer):
    """A binary media type a client may ask for; a view returns the bytes (or a file
    response itself), while error bodies still go out as JSON."""

    charset = None
    render_style = "binary"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Mapping[str, Any] | None = None
    ) -> bytes:
        if isinstance(data, bytes):
            return data
        response = (renderer_context or {}).get("response")
        if response is not None:
            response["Content-Type"] = "application/json"
        return renderers.JSONRenderer().render(data)


class QueryFormatIsAFilter(DefaultContentNegotiation):
    """Content negotiation from the Accept header only: ``?format=`` is the image filter
    (DICOM, PNG, JPEG), not DRF's renderer override (which answered 404 for it)."""

    # DefaultContentNegotiation reads only URL_FORMAT_OVERRIDE from its settings.
    settings = SimpleNamespace(URL_FORMAT_OVERRIDE=None)  # type: ignore[assignment]


class ApiMixin:
    """Shared policy; ``role_actions`` maps HTTP methods to roles.ACTIONS keys."""

    content_negotiation_class: type[BaseContentNegotiation] = QueryFormatIsAFilter
    role_actions: dict[str, str] = {}
    # The largest request body a view accepts, checked from Content-Length before parsing.
    max_body_bytes: int | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Who is asking and whether the role allows it come first: DRF negotiates the
        # response format (406) before its permission check, and a refused caller must get
        # 403 whatever it sends or accepts. DRF's initial() repeats both checks, cheaply
        # (the user is cached on the request, ActionPermission has no side effects).
        # format_kwarg first: a refusal's response is negotiated (or falls back) with it.
        self.format_kwarg = self.get_format_suffix(**kwargs)  # type: ignore[attr-defined]
        self.perform_authentication(request)  # type: ignore[attr-defined]
        self.check_permissions(request)  # type: ignore[attr-defined]
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        if self.max_body_bytes is not None:
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                raise ApiError("invalid_content_length", "The Content-Length header is not a number.") from None
            if length > self.max_body_bytes:
                raise ApiError(
                    "request_too_large", f"The request is larger than {self.max_body_bytes // (1024 * 1024)} MiB.", 413
                )

    def audit(self, action: str, obj: models.Model | None = None, **detail: Any) -> None:
        """Record a read or write of patient data by the authenticated user (or token user)."""
        request = self.request  # type: ignore[attr-defined]
        audit_record(
            actor=request.user,
            action=action,
            obj=obj,
            audit=audit_context(request),
            detail={"api": request.path[:200], **detail},
        )


class Api(ApiMixin, APIView):
    """A plain API view."""


class ListApi(ApiMixin, generics.ListAPIView):
    """A paginated, filterable, ordered list that audits which rows it returned."""

    audit_action = "api_list"

    def paginate_queryset(self, queryset: Any) -> list[Any] | None:
        page = super().paginate_queryset(queryset)
        rows = page if page is not None else list(queryset)
        model = queryset.model._meta.label_lower
        self.audit(self.audit_action, None, model=model, ids=[row.pk for row in rows][:200])
        return page


class RetrieveApi(ApiMixin, generics.RetrieveAPIView):
    """One row, audited."""

    audit_action = "api_read"

    def get_object(self) -> Any:
        obj = super().get_object()
        self.audit(self.audit_action, obj)
        return obj


def upload_limit_bytes(files: int = 1) -> int:
    """Content-Length allowed for ``files`` uploads plus a MiB of form fields and framing."""
    return settings.CXR["MAX_UPLOAD_BYTES"] * files + 1024 * 1024
