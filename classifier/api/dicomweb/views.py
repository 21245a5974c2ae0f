"""DICOMweb (PS3.18): STOW-RS store and QIDO-RS search (WADO-RS retrieve is in ``wado``).

STOW-RS answers with the standard Store Instances Response Module in DICOM JSON:
ReferencedSOPSequence (0008,1199) for stored instances, FailedSOPSequence (0008,1198)
with a FailureReason (0008,1197) and an ErrorComment (0000,0902) for refused ones, RetrieveURL (0008,1190); status 200
when all were stored, 202 when some failed, 409 when none could be stored, 400 for a
malformed request, 415 for a payload other than application/dicom. The body is read
into temporary files (``multipart``), one instance at a time goes through the upload
service, so a request holds at most one instance in memory.
"""

from __future__ import annotations

import io
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, renderers
from rest_framework.request import Request
from rest_framework.response import Response

from classifier.api.base import Api, BinaryRenderer
from classifier.api.dicomweb import qido
from classifier.api.dicomweb.multipart import MultipartRelatedParser, Part, StreamingRequest
from classifier.api.idempotency import idempotent
from classifier.http import audit_context, request_user
from classifier.imaging import ImagingError, sniff_format
from classifier.services.uploads import image_upload

MAX_INSTANCES = 1000
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


def _search_response(request: Request, results: list[dict[str, Any]], query: qido.Query) -> Response:
    """200 with the matches, 204 when nothing matches; a Warning names ignored keys."""
    warning = qido.warning_header(query)
    headers = {"Warning": warning} if warning else None
    if not results:
        return Response(status=204, headers=headers)
    return Response(results, content_type="application/dicom+json", headers=headers)


QIDO_PARAMETERS = [
    OpenApiParameter(key.keyword, str, description=f"{key.vr}; tag {key.tag} also accepted") for key in qido.KEYS
] + [OpenApiParameter("limit", int), OpenApiParameter("offset", int), OpenApiParameter("includefield", str)]
QIDO_RESPONSES = {(200, "application/dicom+json"): OpenApiTypes.OBJECT, 204: None}
STOW_RESPONSES = {
    (200, "application/dicom+json"): OpenApiTypes.OBJECT,
    (202, "application/dicom+json"): OpenApiResponse(OpenApiTypes.OBJECT, "Some instances failed."),
    (409, "application/dicom+json"): OpenApiResponse(OpenApiTypes.OBJECT, "No instance was stored."),
}


class StowRsApi(Api):
    """POST /dicomweb/studies: store DICOM instances; patient and study come from the headers.

    GET is the QIDO-RS study search.
    """

    role_actions = {"POST": "upload", "GET": "view_studies"}
    parser_classes = [MultipartRelatedParser]
    renderer_classes = [DicomJsonRenderer, renderers.JSONRenderer]
    max_parts = MAX_INSTANCES

    @property
    def max_body_bytes(self) -> int:  # type: ignore[override]
        return self.max_total_bytes()

    def max_part_bytes(self) -> int:
        return settings.CXR["MAX_UPLOAD_BYTES"]

    def max_total_bytes(self) -> int:
        return settings.CXR["STOW_MAX_BYTES"]

    def initialize_request(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Request:
        drf_request = super().initialize_request(request, *args, **kwargs)
        drf_request.__class__ = StreamingRequest  # reads chunked bodies (see multipart)
        return drf_request

    @extend_schema(request={"multipart/related": OpenApiTypes.BINARY}, responses=STOW_RESPONSES)
    @idempotent
    def post(self, request: Request, study_uid: str | None = None) -> Response:
        parts = request.data.get("parts") if isinstance(request.data, dict) else None
        if not parts:
            raise exceptions.ParseError("The request contains no DICOM instance.")
        try:
            return self._store(request, parts, study_uid)
        finally:
            for part in parts:
                part.file.close()  # deletes the temporary file

    def _store(self, request: Request, parts: list[Part], target_study: str | None) -> Response:
        referenced, failed, study_uids = [], [], []
        for index, part in enumerate(parts):
            data = b"" if part.too_large else part.file.read()
            ident = _ident(data)
            reason, comment = self._refusal(request, part, data, ident, target_study, index)
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

    def _refusal(
        self, request: Request, part: Part, data: bytes, ident: dict[str, str], target_study: str | None, index: int
    ) -> tuple[int | None, str]:
        """The failure reason for one part and why in words; (None, "") once it is stored (or was already)."""
        if part.too_large:
            return OUT_OF_RESOURCES, "The instance is larger than the upload limit."
        if part.content_type.split(";")[0].strip().lower() != "application/dicom" or not _is_dicom(data):
            return CANNOT_UNDERSTAND, "The part is not an application/dicom instance."
        if target_study is not None and ident["StudyInstanceUID"] != target_study:
            # stored to /studies/{uid}, but the instance names another study
            return PROCESSING_FAILURE, "The instance belongs to another study than the request's URL names."
        outcome = image_upload(
            data=data, filename=f"stow-{index}.dcm", uploaded_by=request_user(request), audit=audit_context(request)
        )
        if outcome.ok:
            return None, ""
        return FAILURE_BY_CODE.get(outcome.error_code, PROCESSING_FAILURE), outcome.error_message

    @extend_schema(operation_id="dicomweb_qido_studies", parameters=QIDO_PARAMETERS, responses=QIDO_RESPONSES)
    def get(self, request: Request) -> Response:
        """QIDO-RS: search studies. 204 when nothing matches."""
        results, studies, query = qido.study_search(request)
        self.audit("dicomweb_search", None, model="classifier.study", ids=qido.ids(studies))
        return _search_response(request, results, query)


class QidoSeriesApi(Api):
    """GET /dicomweb/series and /dicomweb/studies/{uid}/series: QIDO-RS series search."""

    role_actions = {"GET": "view_studies"}
    renderer_classes = [DicomJsonRenderer, renderers.JSONRenderer]

    @extend_schema(parameters=QIDO_PARAMETERS, responses=QIDO_RESPONSES)
    def get(self, request: Request, study_uid: str | None = None) -> Response:
        results, images, query = qido.series_search(request, study_uid)
        self.audit("dicomweb_search", None, model="classifier.image", ids=qido.ids(images))
        return _search_response(request, results, query)


class QidoInstancesApi(Api):
    """GET /dicomweb/instances, /studies/{uid}/instances, /studies/{uid}/series/{uid}/instances."""

    role_actions = {"GET": "view_studies"}
    renderer_classes = [DicomJsonRenderer, renderers.JSONRenderer]

    @extend_schema(parameters=QIDO_PARAMETERS, responses=QIDO_RESPONSES)
    def get(self, request: Request, study_uid: str | None = None, series_uid: str | None = None) -> Response:
        results, images, query = qido.instance_search(request, study_uid, series_uid)
        self.audit("dicomweb_search", None, model="classifier.image", ids=qido.ids(images))
        return _search_response(request, results, query)
