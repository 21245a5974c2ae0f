"""``Idempotency-Key`` for POSTs: a retried request gets the original response back.

Concurrency contract: the IdempotencyRecord row is inserted in the same transaction as
the work it guards and the unique (user, key) constraint serialises attempts. A second
attempt racing the first blocks on that insert until the first commits, then finds the
row and replays its response; if the first fails with a server error everything rolls
back and the retry runs afresh. A refusal (4xx) is stored and replayed too, but the work
it may have started is rolled back to a savepoint, so a refused request changes nothing.
Records older than RECORD_TTL are forgotten (the key may then be reused).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from classifier.api.errors import ApiError
from classifier.integrations import IdempotencyRecord
from classifier.storage import stream_sha256

HEADER = "Idempotency-Key"
RECORD_TTL = timedelta(hours=24)
REPLAYED_HEADER = "Idempotent-Replayed"
KEPT_HEADERS = ("Location",)


def _canonical(value: Any) -> Any:
    if isinstance(value, UploadedFile):
        return f"file:{stream_sha256(value)}"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"bytes:{hashlib.sha256(bytes(value)).hexdigest()}"
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def request_fingerprint(request: Request) -> str:
    """sha256 of method, path and parsed content: the same upload as JSON or form matches itself only."""
    data = request.data
    content = {k: _canonical(v) for k, v in data.lists()} if hasattr(data, "lists") else _canonical(data)
    canonical = json.dumps([request.method, request.path, content], sort_keys=True, cls=DjangoJSONEncoder)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _jsonable(data: Any) -> Any:
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def _replay(record: IdempotencyRecord, fingerprint: str) -> Response:
    if record.fingerprint != fingerprint:
        raise ApiError("idempotency_key_reused", "This Idempotency-Key was already used with a different request.", 409)
    headers = {**record.response_headers, REPLAYED_HEADER: "true"}
    return Response(record.response_body, status=record.status_code, headers=headers)


def idempotency_run(*, view: Any, request: Request, key: str, run: Callable[[], Response]) -> Response:
    """Run ``run`` at most once per (user, key); see the module docstring for the contract."""
    fingerprint = request_fingerprint(request)
    with transaction.atomic():
        IdempotencyRecord.objects.filter(
            user=request.user,  # type: ignore[misc]  # authenticated: ActionPermission ran first
            key=key,
            created_at__lt=timezone.now() - RECORD_TTL,
        ).delete()
        record, created = IdempotencyRecord.objects.get_or_create(
            user=request.user,  # type: ignore[misc]  # authenticated: ActionPermission ran first
            key=key,
            defaults={"fingerprint": fingerprint, "method": str(request.method), "path": request.path[:255]},
        )
        if not created:
            return _replay(record, fingerprint)
        with transaction.atomic():  # a savepoint: refusals leave no partial work behind
            try:
                response = run()
            except Exception as exc:
                response = view.handle_exception(exc)
            if response.status_code >= 400:
                transaction.set_rollback(True)
        if response.status_code >= 500:
            transaction.set_rollback(True)  # no record: the client may retry
            return response
        record.status_code = response.status_code
        record.response_body = _jsonable(response.data)
        record.response_headers = {name: response[name] for name in KEPT_HEADERS if response.has_header(name)}
        record.save(update_fields=["status_code", "response_body", "response_headers"])
    return response


def idempotent(method: Callable[..., Response]) -> Callable[..., Response]:
    """Decorator for an APIView's ``post``: honours the Idempotency-Key header when present."""

    @wraps(method)
    def wrapper(self: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get(HEADER)
        if key is None:
            return method(self, request, *args, **kwargs)
        key = key.strip()
        if not key or len(key) > 255:
            raise ApiError("invalid_idempotency_key", "The Idempotency-Key must be 1 to 255 characters.", 400)
        return idempotency_run(view=self, request=request, key=key, run=lambda: method(self, request, *args, **kwargs))

    wrapper.idempotent = True  # type: ignore[attr-defined]  # read by the schema hook
    return wrapper
