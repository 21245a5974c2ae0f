"""One error shape for every API answer: ``{"error": {"code": ..., "message": ...}}``.

``api_exception_handler`` is DRF's EXCEPTION_HANDLER. It translates the domain's
refusals (ServiceError, ImagingError, RegistryError) and Django's exceptions into DRF
exceptions and delegates to DRF's handler, then puts the answer in that shape, so bad
input never surfaces as a 500.
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
from rest_framework.views import exception_handler

from classifier.imaging import FileTooLarge, ImageTooLarge, ImagingError, UnsupportedFormat
from classifier.services.errors import ServiceError
from classifier.services.uploads import UploadOutcome

# ServiceError codes that image_upload reports in its outcome (the exception itself is swallowed).


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


def _subclasses(cls: type[ImagingError]) -> list[type[ImagingError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_subclasses(sub))
    return found


# image_upload reports only the code of the ImagingError it caught; this maps it back.
IMAGING_STATUS_BY_CODE = {cls.code: imaging_status(cls) for cls in _subclasses(ImagingError)}


def outcome_status(outcome: UploadOutcome) -> int:
    """The HTTP status for a refused upload: the service's own (409 for conflicts), else by imaging code."""
    return outcome.error_status or IMAGING_STATUS_BY_CODE.get(outcome.error_code) or status.HTTP_400_BAD_REQUEST


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
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "not-found", "diagnostics": "No such resource."}],
    }
    return JsonResponse(outcome, status=404, content_type="application/fhir+json")


def _translate(exc: Exception) -> Exception:
    """The domain's refusals and Django's exceptions as DRF exceptions with our codes."""
    from training.registry import RegistryError

    if isinstance(exc, ServiceError):
        return ApiError(exc.code, exc.message, exc.status)
    if isinstance(exc, ImagingError):
        return ApiError(exc.code, exc.message, imaging_status(exc))
    if isinstance(exc, RegistryError):
        return ApiError("registry_conflict", str(exc), status.HTTP_409_CONFLICT)
    if isinstance(exc, RequestDataTooBig):
        return ApiError("request_too_large", "The request body is too large.", 413)
    if isinstance(exc, DataError):  # a value the database cannot represent: bad input, not a fault
        return ApiError("invalid_value", "A value in the request is out of range.", 400)
    if isinstance(exc, TooManyFieldsSent):
        return ApiError("too_many_fields", "The request has too many fields.", 400)
    if isinstance(exc, DjangoValidationError):
        return ApiError("invalid", "; ".join(exc.messages), 400)
    if isinstance(exc, Http404):
        return exceptions.NotFound("Not found.")
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(str(exc) or "Your role does not allow this.")
    return exc


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """REST_FRAMEWORK["EXCEPTION_HANDLER"]: translate, then let DRF's own handler answer
    (status, WWW-Authenticate, Retry-After, rollback), in our error shape. None (-> 500)
    only for genuine server faults."""
    exc = _translate(exc)
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    code, message, extra = _drf_error(exc)
    response.data = error_body(code, message, **extra)
    return response
