"""DICOMweb (PS3.18): STOW-RS store, QIDO-RS study search, WADO-RS instance retrieve.

STOW-RS answers with the standard Store Instances Response Module in DICOM JSON:
ReferencedSOPSequence (0008,1199) for stored instances, FailedSOPSequence (0008,1198)
with a FailureReason (0008,1197) and an ErrorComment (0000,0902) for refused ones, RetrieveURL (0008,1190); status 200
when all were stored, 202 when some failed, 409 when none could be stored, 400 for a
malformed request, 415 for a payload other than application/dicom.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from typing import Any

from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, parsers, renderers
from rest_framework.request import Request
from rest_framework.response import Response

from classifier.api.base import Api, BinaryRenderer, upload_limit_bytes
from classifier.api.idempotency import idempotent
from classifier.http import audit_context, request_user
from classifier.imaging import ImagingError, sniff_format
from classifier.models import Image
from classifier.services.uploads import image_upload

MAX_INSTANCES = 4
# PS3.4 Annex GG / PS3.18 failure reasons.
PROCESSING_FAILURE, SOP_CLASS_NOT_SUPPORTED = 0x0110, 0x0122
OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0xA700, 0xC000
FAILURE_BY_CODE = {
    "file_too_large": OUT_OF_RESOURCES,
    "image_too_large": OUT_OF_RESOURCES,
    "limit_exceeded": OUT_OF_RESOURCES,
    "not_chest_radiograph": SOP_CLASS_NOT_SUPPORTED,
    "multi_frame": SOP_CLASS_NOT_SUPPORTED,
    "no_pixel_data": SOP_CLASS_NOT_SUPPORTED,
    "unsupported_image": SOP_CLASS_NOT_SUPPORTED,
    "corrupt_image": CANNOT_UNDERSTAND,
    "unsupported_format": CANNOT_UNDERSTAND,
    "empty_file": CANNOT_UNDERSTAND,
    "invalid_header_value": CANNOT_UNDERSTAND,
}


def _params(content_type: str) -> dict[str, str]:
    found = {}
    for key, value in re.findall(r';\s*([\w-]+)\s*=\s*("[^"]*"|[^;]*)', content_type):
        found[key.lower()] = value.strip().strip('"')
    return found


class MultipartRelatedParser(parsers.BaseParser):
    """multipart/related; type="application/dicom" -> {"parts": [(content_type, bytes), ...]}."""

    media_type = "multipart/related"

    def parse(
        self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> dict:
        params = _params(media_type or "")
        if params.get("type", "application/dicom").lower() != "application/dicom":
            raise exceptions.UnsupportedMediaType(media_type or "", detail="Only application/dicom parts are accepted.")
        boundary = params.get("boundary")
        if not boundary:
            raise exceptions.ParseError("The multipart/related request has no boundary.")
        body = stream.read() if stream is not None else b""
        return {"parts": split_parts(body, boundary.encode("latin-1"))}


def split_parts(body: bytes, boundary: bytes) -> list[tuple[str, bytes]]:
    """The parts of a multipart body as (content type, content); ParseError when malformed."""
    delimiter = b"--" + boundary
    segments = body.split(delimiter)
    if len(segments) < 2:
        raise exceptions.ParseError("The multipart body has no parts.")
    parts = []
    for segment in segments[1:]:
        if segment.startswith(b"--"):
            break  # the close delimiter
        segment = segment[2:] if segment.startswith(b"\r\n") else segment
        if segment.startswith(b"\r\n"):
            head, content = b"", segment[2:]
        else:
            head, sep, content = segment.partition(b"\r\n\r\n")
            if not sep:
                raise exceptions.ParseError("A multipart part has no header/body separator.")
        content = content[:-2] if content.endswith(b"\r\n") else content
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        parts.append((headers.get("content-type", "application/dicom"), content))
    return parts


class DicomJsonRenderer(renderers.JSONRenderer):
    media_type = "application/dicom+json"


class MultipartDicomRenderer(BinaryRenderer):
    """WADO-RS payloads are built by the view; error bodies fall back to JSON."""

    media_type = "multipart/related"
    format = "multipart"


def _ident(data: bytes) -> dict[str, str]:
    """SOP Class/Instance, Study/Series UIDs read leniently, for the response sequences."""
    try:
        import pydicom

        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
        return {
            key: str(ds.get(key, "") or "")
            for key in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
        }
    except Exception:
        return {"SOPClassUID": "", "SOPInstanceUID": "", "StudyInstanceUID": "", "SeriesInstanceUID": ""}


def _is_dicom(data: bytes) -> bool:
    try:
        return sniff_format(data) == "DICOM"
    except ImagingError:
        return False


def _ui(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


def _lo(value: str) -> dict[str, Any]:
    return {"vr": "LO", "Value": [value]} if value else {"vr": "LO"}


def _base(request: Request) -> str:
    return request.build_absolute_uri("/dicomweb")


def instance_url(request: Request, study_uid: str, series_uid: str, sop_uid: str) -> str:
    return f"{_base(request)}/studies/{study_uid}/series/{series_uid or '0'}/instances/{sop_uid}"


class StowRsApi(Api):
    """POST /dicomweb/studies: store DICOM instances; patient and study come from the headers."""

    role_actions = {"POST": "upload", "GET": "view_studies"}
    parser_classes = [MultipartRelatedParser]
    renderer_classes = [DicomJsonRenderer, renderers.JSONRenderer]
    max_body_bytes = upload_limit_bytes(MAX_INSTANCES)

    @extend_schema(
        operation_id="dicomweb_stow",
        request={"multipart/related": OpenApiTypes.BINARY},
        responses={
            (200, "application/dicom+json"): OpenApiTypes.OBJECT,
            (202, "application/dicom+json"): OpenApiResponse(OpenApiTypes.OBJECT, "Some instances failed."),
            (409, "application/dicom+json"): OpenApiResponse(OpenApiTypes.OBJECT, "No instance was stored."),
        },
    )
    @idempotent
    def post(self, request: Request) -> Response:
        parts = request.data.get("parts") if isinstance(request.data, dict) else None
        if not parts:
            raise exceptions.ParseError("The request contains no DICOM instance.")
        if len(parts) > MAX_INSTANCES:
            raise exceptions.ParseError(f"At most {MAX_INSTANCES} instances per request.")
        referenced, failed, study_uids = [], [], []
        for index, (content_type, data) in enumerate(parts):
            ident = _ident(data)
            reason, comment = None, "The part is not an application/dicom instance."
            if content_type.split(";")[0].strip().lower() != "application/dicom" or not _is_dicom(data):
                reason = CANNOT_UNDERSTAND
            else:
                outcome = image_upload(
                    data=data,
                    filename=f"stow-{index}.dcm",
                    uploaded_by=request_user(request),
                    audit=audit_context(request),
                )
                reason = None if outcome.ok else FAILURE_BY_CODE.get(outcome.error_code, PROCESSING_FAILURE)
                comment = outcome.error_message
            item = {"00081150": _ui(ident["SOPClassUID"]), "00081155": _ui(ident["SOPInstanceUID"])}
            if reason is not None:  # ErrorComment (0000,0902) says why, in words
                failed.append({**item, "00081197": {"vr": "US", "Value": [reason]}, "00000902": _lo(comment)})
                continue
            study_uids.append(ident["StudyInstanceUID"])
            url = instance_url(request, ident["StudyInstanceUID"], ident["SeriesInstanceUID"], ident["SOPInstanceUID"])
            referenced.append({**item, "00081190": {"vr": "UR", "Value": [url]}})
        body: dict[str, Any] = {}
        if len(set(study_uids)) == 1 and study_uids[0]:
            body["00081190"] = {"vr": "UR", "Value": [f"{_base(request)}/studies/{study_uids[0]}"]}
        if failed:
            body["00081198"] = {"vr": "SQ", "Value": failed}
        if referenced:
            body["00081199"] = {"vr": "SQ", "Value": referenced}
        code = 200 if not failed else (202 if referenced else 409)
        return Response(body, status=code, content_type="application/dicom+json")

    @extend_schema(
        operation_id="dicomweb_qido_studies",
        parameters=[
            OpenApiParameter("PatientID", str),
            OpenApiParameter("AccessionNumber", str),
            OpenApiParameter("StudyInstanceUID", str),
            OpenApiParameter("StudyDate", str, description="YYYYMMDD or YYYYMMDD-YYYYMMDD"),
            OpenApiParameter("limit", int),
            OpenApiParameter("offset", int),
        ],
        responses={(200, "application/dicom+json"): OpenApiTypes.OBJECT, 204: None},
    )
    def get(self, request: Request) -> Response:
        """QIDO-RS: search studies. 204 when nothing matches."""
        from classifier.api.dicomweb.qido import study_search

        results, studies = study_search(request)
        self.audit("dicomweb_search", None, model="classifier.study", ids=[s.pk for s in studies][:200])
        if not results:
            return Response(status=204)
        return Response(results, content_type="application/dicom+json")


class WadoInstanceApi(Api):
    """GET one stored instance as multipart/related; type="application/dicom"."""

    role_actions = {"GET": "view_studies"}
    renderer_classes = [MultipartDicomRenderer, DicomJsonRenderer, renderers.JSONRenderer]

    @extend_schema(
        operation_id="dicomweb_wado_instance", responses={(200, "multipart/related"): OpenApiTypes.BINARY, 404: None}
    )
    def get(self, request: Request, study_uid: str, series_uid: str, sop_uid: str) -> HttpResponse:
        image = get_object_or_404(
            Image.objects.select_related("study"), sop_instance_uid=sop_uid, format=Image.Format.DICOM
        )
        if image.study.study_instance_uid and image.study.study_instance_uid != study_uid:
            raise Http404("The instance is not in that study.")
        with image.file.open("rb") as handle:
            data = handle.read()
        self.audit("dicomweb_retrieve", image)
        boundary = "cxr-wado-boundary-0a1b2c3d"
        body = (
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return HttpResponse(body, content_type=f'multipart/related; type="application/dicom"; boundary={boundary}')
