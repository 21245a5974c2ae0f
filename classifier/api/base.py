"""Base classes of every API view: authentication, roles, throttling, errors, audit.

The API sets these on its own classes rather than relying on REST_FRAMEWORK defaults,
so its behaviour does not change when other apps' DRF views tune the global settings.
"""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.openapi import AutoSchema
from rest_framework import filters, generics, pagination
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from classifier.api.auth import ApiTokenAuthentication, CsrfSessionAuthentication, TokenRateThrottle
from classifier.api.errors import ApiError, api_exception_handler
from classifier.api.permissions import ActionPermission
from classifier.services.audit import audit_record

NOTICE = "decision support, not a diagnosis"


class ApiPagination(pagination.PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class ApiMixin:
    """Shared policy; ``role_actions`` maps HTTP methods to roles.ACTIONS keys."""

    authentication_classes = [ApiTokenAuthentication, CsrfSessionAuthentication]
    permission_classes = [ActionPermission]
    throttle_classes = [TokenRateThrottle]
    renderer_classes = [JSONRenderer]
    schema = AutoSchema()
    role_actions: dict[str, str] = {}
    # The largest request body a view accepts, checked from Content-Length before parsing.
    max_body_bytes: int | None = None

    def get_exception_handler(self) -> Any:
        return api_exception_handler

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        if self.max_body_bytes is not None:
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                raise ApiError("invalid_content_length", "The Content-Length header is not a number.") from None
            if length > self.max_body_bytes:
                raise ApiError("request_too_large", f"The request is larger than "
                               f"{self.max_body_bytes // (1024 * 1024)} MiB.", 413)

    def audit(self, action: str, obj: models.Model | None = None, **detail: Any) -> None:
        """Record a read or write of patient data by the authenticated user (or token user)."""
        request = self.request  # type: ignore[attr-defined]
        audit_record(actor=request.user, action=action, obj=obj, request=request,
                     detail={"api": request.path[:200], **detail})


class Api(ApiMixin, APIView):
    """A plain API view."""


class ListApi(ApiMixin, generics.ListAPIView):
    """A paginated, filterable, ordered list that audits which rows it returned."""

    pagination_class = ApiPagination
    filter_backends = [DjangoFilterBackend, filters.OrderingFilter]
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
