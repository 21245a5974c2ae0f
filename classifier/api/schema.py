"""OpenAPI post-processing (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]): the shared error
shape, the Idempotency-Key header and the standards' media types on every operation."""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {"type": "object", "additionalProperties": True},
            },
        }
    },
    "required": ["error"],
}
OUTCOME_SCHEMA = {
    "type": "object",
    "required": ["resourceType", "issue"],
    "properties": {"resourceType": {"type": "string"}, "issue": {"type": "array", "items": {}}},
}
ERROR_STATUSES = {
    "400": "Invalid request.",
    "401": "Not authenticated.",
    "403": "The role does not allow this.",
    "404": "Not found.",
    "429": "Too many requests (throttled).",
}
POST_ERRORS = {
    "409": "Conflict (e.g. Idempotency-Key reused with another request).",
    "413": "Request too large.",
    "415": "Unsupported media type.",
}
IDEMPOTENCY_PARAMETER = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "schema": {"type": "string", "maxLength": 255},
    "description": "Retrying with the same key and body returns the original response; another body: 409.",
}


def _idempotent_operations(generator: Any) -> set[tuple[str, str]]:
    found = set()
    for path, _, method, callback in getattr(generator, "endpoints", None) or []:
        handler = getattr(getattr(callback, "cls", None), method.lower(), None)
        if getattr(handler, "idempotent", False):
            found.add((path, method.lower()))
    return found


def _media_types(path: str) -> list[str]:
    """What a client may receive: the standard's type, or plain JSON when it asks for that."""
    if path.startswith("/fhir/"):
        return ["application/fhir+json", "application/json"]
    if path.startswith("/dicomweb/"):
        return ["application/dicom+json", "application/json"]
    return ["application/json"]


def postprocess(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Document the shared error shape, the Idempotency-Key header and rate limiting on every operation."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    schemas["OperationOutcome"] = OUTCOME_SCHEMA
    idempotent = _idempotent_operations(generator)
    for path, operations in result.get("paths", {}).items():
        error_ref = {"$ref": "#/components/schemas/" + ("OperationOutcome" if path.startswith("/fhir/") else "Error")}
        media = _media_types(path)
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            statuses = {**ERROR_STATUSES, **(POST_ERRORS if method == "post" else {})}
            responses = operation.setdefault("responses", {})
            for code, text in statuses.items():
                if code not in responses or "content" not in responses[code]:
                    description = responses.get(code, {}).get("description") or text
                    responses[code] = {"description": description, "content": {m: {"schema": error_ref} for m in media}}
            for response in responses.values():
                content = response.get("content", {})
                json_like = next((content[m] for m in media if m in content), None)
                if json_like is not None:
                    for alias in media:
                        content.setdefault(alias, json_like)
            if (path, method) in idempotent:
                operation.setdefault("parameters", []).append(IDEMPOTENCY_PARAMETER)
    return result
