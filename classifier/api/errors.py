"""One error shape for every API answer: ``{"error": {"code": ..., "message": ...}}``.

``api_exception_handler`` is DRF's EXCEPTION_HANDLER. It turns the domain's refusals
(ServiceError, ImagingError, RegistryError) and DRF's own exceptions into that shape
with the right status, so bad input never surfaces as a 500.
"""
from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from classifier.imaging import FileTooLarge, ImageTooLarge, ImagingError, UnsupportedFormat
from classifier.services.errors import ServiceError

# ServiceError codes that image_upload reports in its outcome (the exception itself is swallowed).
SERVICE_STATUS = {"patient_mismatch": status.HTTP_409_CONFLICT}


class ApiError(exceptions.APIException):
    """An API-level refusal with an explicit code and status."""

    def __init__(self, code: str, message: str, status_code: int = 400) -> None:
        super().__init__(detail=message, code=code)
        self.status_code = status_code


def imaging_status(error: type[ImagingError] | ImagingError) -> int:
    """413 for size limits, 415 for formats we do not read, 400 for everything else."""
    cls = error if isinstance(error, type) else type(error)
    if issubclass(cls, (FileTooLarge, ImageTooLarge)):
        return status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    if issubclass(cls, UnsupportedFormat):
        return status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    return status.HTTP_400_BAD_REQUEST


def _subclasses(cls: type) -> list[type]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_subclasses(sub))
    return found


# image_upload reports only the code of the ImagingError it caught; this maps it back.
IMAGING_STATUS_BY_CODE = {cls.code: imaging_status(cls) for cls in _subclasses(ImagingError)}


def outcome_status(code: str) -> int:
    """The HTTP status for an UploadOutcome.error_code."""
    return IMAGING_STATUS_BY_CODE.get(code) or SERVICE_STATUS.get(code, status.HTTP_400_BAD_REQUEST)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def _flatten(detail: Any) -> str:
    """The first readable sentence of a DRF detail (string, list or dict of lists)."""
    if isinstance(detail, dict):
        for field, value in detail.items():
            text = _flatten(value)
            return text if field == "non_field_errors" else f"{field}: {text}"
        return "Invalid input."
    if isinstance(detail, list):
        return _flatten(detail[0]) if detail else "Invalid input."
    return str(detail)


def _drf_error(exc: exceptions.APIException) -> tuple[str, str, dict[str, Any]]:
    extra: dict[str, Any] = {}
    if isinstance(exc, exceptions.ValidationError):
        extra["fields"] = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        return "invalid", _flatten(exc.detail), extra
    codes = exc.get_codes()
    code = codes if isinstance(codes, str) else exc.default_code
    return code, _flatten(exc.detail), extra


@csrf_exempt
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """JSON 404 for paths under the API prefixes that match no route."""
    return JsonResponse(error_body("not_found", "No such API endpoint."), status=404)


@csrf_exempt
def fhir_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    outcome = {"resourceType": "OperationOutcome",
               "issue": [{"severity": "error", "code": "not-found", "diagnostics": "No such resource."}]}
    return JsonResponse(outcome, status=404, content_type="application/fhir+json")


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler; returns None (-> 500) only for genuine server faults."""
    from training.registry import RegistryError

    headers: dict[str, str] = {}
    if isinstance(exc, ServiceError):
        code, message, http, extra = exc.code, exc.message, exc.status, {}
    elif isinstance(exc, ImagingError):
        code, message, http, extra = exc.code, exc.message, imaging_status(exc), {}
    elif isinstance(exc, RegistryError):
        code, message, http, extra = "registry_conflict", str(exc), status.HTTP_409_CONFLICT, {}
    elif isinstance(exc, RequestDataTooBig):
        code, message, http, extra = "request_too_large", "The request body is too large.", 413, {}
    elif isinstance(exc, DataError):  # a value the database cannot represent: bad input, not a fault
        code, message, http, extra = "invalid_value", "A value in the request is out of range.", 400, {}
    elif isinstance(exc, TooManyFieldsSent):
        code, message, http, extra = "too_many_fields", "The request has too many fields.", 400, {}
    elif isinstance(exc, DjangoValidationError):
        code, message, http, extra = "invalid", "; ".join(exc.messages), 400, {}
    elif isinstance(exc, Http404):
        code, message, http, extra = "not_found", "Not found.", status.HTTP_404_NOT_FOUND, {}
    elif isinstance(exc, DjangoPermissionDenied):
        code, message, http, extra = "permission_denied", str(exc) or "Your role does not allow this.", 403, {}
    elif isinstance(exc, exceptions.APIException):
        code, message, extra = _drf_error(exc)
        http = exc.status_code
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
    else:
        return None
    set_rollback()
    return Response(error_body(code, message, **extra), status=http, headers=headers or None)
