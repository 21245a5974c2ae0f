"""Upload pages: the form, the per-file XHR endpoint, the DICOM header probe.

No pixels are decoded here: ``image_upload`` and ``probe_bytes`` read headers only;
the worker decodes under a time limit.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from classifier.forms import StudyFieldsForm
from classifier.http import audit_context, request_user
from classifier.imaging import ImagingError
from classifier.imaging.probe import probe_bytes
from classifier.roles import action_required
from classifier.services.audit import audit_record
from classifier.services.studies import StudyFields, fields_from_header
from classifier.services.uploads import UploadOutcome, image_upload, upload_limits


def _read(uploaded: UploadedFile) -> bytes | None:
    """The file's bytes, or None when it is over the limit (not read into memory at all)."""
    if uploaded.size is not None and uploaded.size > settings.CXR["MAX_UPLOAD_BYTES"]:
        return None
    return uploaded.read()


def _too_large(filename: str) -> UploadOutcome:
    limit = settings.CXR["MAX_UPLOAD_BYTES"] // (1024 * 1024)
    return UploadOutcome(
        filename=filename,
        error_code="file_too_large",
        error_message=f"The file is larger than the {limit} MiB upload limit.",
    )


def _upload_one(request: HttpRequest, uploaded: UploadedFile, fields: StudyFields) -> UploadOutcome:
    data = _read(uploaded)
    if data is None:
        return _too_large(uploaded.name or "")
    return image_upload(
        data=data,
        filename=uploaded.name or "upload",
        uploaded_by=request_user(request),
        fields=fields,
        audit=audit_context(request),
    )


def outcome_json(outcome: UploadOutcome) -> dict[str, Any]:
    """The per-file result the upload page shows. No patient identifiers besides ids."""
    study_id = outcome.image.study_id if outcome.image else None
    return {
        "ok": outcome.ok,
        "filename": outcome.filename,
        "duplicate": outcome.duplicate,
        "error_code": outcome.error_code,
        "error_message": outcome.error_message,
        "warnings": outcome.warnings,
        "study_id": study_id,
        "image_id": outcome.image.pk if outcome.image else None,
        "prediction_id": outcome.prediction.pk if outcome.prediction else None,
        "study_url": reverse("study_detail", args=[study_id]) if study_id else None,
    }


@action_required("upload")
@require_http_methods(["GET", "POST"])
def upload(request: HttpRequest) -> HttpResponse:
    """The upload page. A plain multipart POST (no JavaScript) uploads every file here."""
    form = StudyFieldsForm(request.POST or None)
    outcomes: list[UploadOutcome] = []
    if request.method == "POST":
        files = request.FILES.getlist("files")
        if not files:
            form.add_error(None, "Choose at least one file.")
        elif form.is_valid():
            outcomes = [_upload_one(request, uploaded, form.to_fields()) for uploaded in files]
    status = 400 if request.method == "POST" and (form.errors or not any(o.ok for o in outcomes)) else 200
    return render(
        request,
        "classifier/upload.html",
        {
            "form": form,
            "outcomes": [outcome_json(o) for o in outcomes],
            "max_mb": settings.CXR["MAX_UPLOAD_BYTES"] // (1024 * 1024),
        },
        status=status,
    )


@action_required("upload")
@require_POST
def upload_file(request: HttpRequest) -> JsonResponse:
    """One file per request (the page sends them in turn with progress bars).

    Always answers JSON: 200 with the outcome when the file was stored (or was a
    duplicate), 400 with ``error_message`` when it was refused.
    """
    uploaded = request.FILES.get("file")
    if uploaded is None:
        return JsonResponse(
            {"ok": False, "filename": "", "error_code": "no_file", "error_message": "No file was received."}, status=400
        )
    sent = len(request.FILES.getlist("file"))
    if sent > 1:  # Django keeps the last one; silently dropping the others loses images
        message = f"Send one file per request in 'file' ({sent} were sent)."
        return JsonResponse(
            {"ok": False, "filename": "", "error_code": "too_many_files", "error_message": message}, status=400
        )
    form = StudyFieldsForm(request.POST)
    if not form.is_valid():
        message = "; ".join(
            f"{form.fields[name].label if name in form.fields else ''}: {' '.join(str(e) for e in errors)}"
            for name, errors in form.errors.items()
        )
        return JsonResponse(
            {
                "ok": False,
                "filename": uploaded.name,
                "error_code": "invalid_form",
                "error_message": message,
                "field_errors": form.errors,
            },
            status=400,
        )
    outcome = _upload_one(request, uploaded, form.to_fields())
    return JsonResponse(outcome_json(outcome), status=200 if outcome.ok else 400)


@action_required("upload")
@require_POST
def upload_probe(request: HttpRequest) -> JsonResponse:
    """Header metadata of one file, to prefill the form. Headers only, no pixel decoding."""
    uploaded = request.FILES.get("file")
    if uploaded is None:
        return JsonResponse({"ok": False, "error_message": "No file was received."}, status=400)
    data = _read(uploaded)
    if data is None:
        return JsonResponse({"ok": False, "error_message": _too_large(uploaded.name or "").error_message}, status=400)
    try:
        header = probe_bytes(data, limits=upload_limits())
    except ImagingError as exc:
        return JsonResponse({"ok": False, "error_code": exc.code, "error_message": exc.message}, status=400)
    fields = fields_from_header(header.metadata, StudyFields())
    # The answer echoes the file's patient identifiers: reading them is audited.
    audit_record(
        actor=request.user,
        action="upload_probe",
        audit=audit_context(request),
        detail={"filename": (uploaded.name or "")[:255], "format": header.format, "mrn": fields.mrn},
    )
    header_fields = {
        "mrn": fields.mrn,
        "patient_name": fields.patient_name,
        "birth_date": fields.birth_date.isoformat() if fields.birth_date else "",
        "sex": fields.sex,
        "accession_number": fields.accession_number,
        "study_instance_uid": fields.study_instance_uid,
        "view_position": fields.view_position,
    }
    # The page shows these per file: a DICOM is filed under the patient and study of its
    # own header, so they are never copied into the form (two patients in one drop).
    return JsonResponse(
        {
            "ok": True,
            "format": header.format,
            "width": header.width,
            "height": header.height,
            "header": header_fields,
            "identified": bool(fields.mrn and fields.accession_number),
        }
    )
