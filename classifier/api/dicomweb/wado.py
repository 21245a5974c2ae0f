"""WADO-RS (PS3.18 10.4): study, series and instance retrieve, metadata and rendered.

Instances are returned as stored (the uploaded bytes, in their own transfer syntax) in a
multipart/related response streamed from storage. Metadata is each instance's header in
DICOM JSON without its pixel data. A rendered instance is decoded by the Django-free
imaging package with the upload limits and encoded as JPEG or PNG. The SR and Secondary
Capture objects sent back to the PACS (``services.dicom_results``) are retrievable here
too, under their own UIDs in the source study, rebuilt identically. A UID that names no
stored study, series or instance, or an instance under the wrong study or series, is 404.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pydicom
from django.http import Http404, HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import renderers
from rest_framework.request import Request
from rest_framework.response import Response

from classifier.api.base import Api, BinaryRenderer
from classifier.api.dicomweb.qido import dicom_images, result_deliveries, result_objects
from classifier.api.dicomweb.views import DicomJsonRenderer, MultipartDicomRenderer, StowRsApi
from classifier.imaging import ImagingError, decode_bytes
from classifier.integrations import DicomDelivery
from classifier.models import Image
from classifier.services.dicom_results import dicom_delivery_object
from classifier.services.uploads import upload_limits

BOUNDARY = "cxr-wado-boundary-0a1b2c3d"
READ_SIZE = 256 * 1024
RETRIEVE = {(200, "multipart/related"): OpenApiTypes.BINARY, 404: None}
METADATA = {(200, "application/dicom+json"): OpenApiTypes.OBJECT, 404: None}


class JpegRenderer(BinaryRenderer):
    media_type = "image/jpeg"
    format = "jpeg"


class PngRenderer(BinaryRenderer):
    media_type = "image/png"
    format = "png"


def _missing(series_uid: str | None, sop_uid: str | None) -> Http404:
    what = "instance" if sop_uid else ("series" if series_uid else "study")
    return Http404(f"No stored {what} has that UID here.")


def _images(study_uid: str, series_uid: str | None = None, sop_uid: str | None = None) -> list[Image]:
    images = dicom_images(study_uid=study_uid, series_uid=series_uid)
    if sop_uid is not None:
        images = images.filter(sop_instance_uid=sop_uid)
    found = list(images)
    if not found:
        raise _missing(series_uid, sop_uid)
    return found


def _results(study_uid: str, series_uid: str | None = None, sop_uid: str | None = None) -> list[DicomDelivery]:
    """The SR and SC objects made for the study's images (one per UID, whatever the destinations)."""
    return result_objects(result_deliveries(study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid))


def _objects(study_uid: str, series_uid: str | None = None, sop_uid: str | None = None) -> list[Image | DicomDelivery]:
    """Stored images and the result objects made for them; 404 when there is neither."""
    try:
        found: list[Image | DicomDelivery] = list(_images(study_uid, series_uid, sop_uid))
    except Http404:
        found = []
    found += _results(study_uid, series_uid, sop_uid)
    if not found:
        raise _missing(series_uid, sop_uid)
    return found


def _result_bytes(delivery: DicomDelivery) -> bytes:
    buffer = io.BytesIO()
    dicom_delivery_object(delivery).save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _multipart(objects: list[Image | DicomDelivery]) -> Iterator[bytes]:
    for obj in objects:
        if isinstance(obj, DicomDelivery):
            yield f"--{BOUNDARY}\r\nContent-Type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1\r\n\r\n".encode()
            yield _result_bytes(obj)
            yield b"\r\n"
            continue
        syntax = obj.metadata.get("transfer_syntax") or "*"
        yield f"--{BOUNDARY}\r\nContent-Type: application/dicom; transfer-syntax={syntax}\r\n\r\n".encode()
        with obj.file.open("rb") as handle:
            while chunk := handle.read(READ_SIZE):
                yield chunk
        yield b"\r\n"
    yield f"--{BOUNDARY}--\r\n".encode()


def _header_json(obj: Image | DicomDelivery) -> dict[str, Any]:
    if isinstance(obj, DicomDelivery):
        ds = dicom_delivery_object(obj)
        if "PixelData" in ds:
            del ds.PixelData
    else:
        with obj.file.open("rb") as handle:
            ds = pydicom.dcmread(handle, stop_before_pixels=True, force=True)
    return ds.to_json_dict(bulk_data_threshold=10**6)


class _WadoMixin:
    """Retrieve and metadata for a level; the subclass says which UIDs select the images."""

    def retrieve(self, objects: list[Image | DicomDelivery]) -> StreamingHttpResponse:
        for obj in objects:
            self.audit("dicomweb_retrieve", obj)  # type: ignore[attr-defined]
        return StreamingHttpResponse(
            _multipart(objects), content_type=f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
        )

    def metadata(self, objects: list[Image | DicomDelivery]) -> Response:
        for obj in objects:
            self.audit("dicomweb_metadata", obj)  # type: ignore[attr-defined]
        return Response([_header_json(obj) for obj in objects], content_type="application/dicom+json")


@extend_schema_view(post=extend_schema(operation_id="dicomweb_studies_stow_to_study"))  # one id per route
class WadoStudyApi(_WadoMixin, StowRsApi):
    """GET /dicomweb/studies/{uid}: the study's instances; POST stores into that study."""

    role_actions = {"POST": "upload", "GET": "view_studies"}

    def get_renderers(self) -> list[renderers.BaseRenderer]:
        if self.request.method == "GET":
            return [MultipartDicomRenderer(), DicomJsonRenderer(), renderers.JSONRenderer()]
        return super().get_renderers()

    @extend_schema(operation_id="dicomweb_wado_study", responses=RETRIEVE)
    def get(self, request: Request, study_uid: str) -> StreamingHttpResponse:  # type: ignore[override]
        return self.retrieve(_objects(study_uid))


class WadoSeriesApi(_WadoMixin, Api):
    role_actions = {"GET": "view_studies"}
    renderer_classes = [MultipartDicomRenderer, DicomJsonRenderer, renderers.JSONRenderer]

    @extend_schema(operation_id="dicomweb_wado_series", responses=RETRIEVE)
    def get(self, request: Request, study_uid: str, series_uid: str) -> StreamingHttpResponse:
        return self.retrieve(_objects(study_uid, series_uid))


class WadoInstanceApi(_WadoMixin, Api):
    """GET one stored instance as multipart/related; type="application/dicom"."""

    role_actions = {"GET": "view_studies"}
    renderer_classes = [MultipartDicomRenderer, DicomJsonRenderer, renderers.JSONRenderer]

    @extend_schema(operation_id="dicomweb_wado_instance", responses=RETRIEVE)
    def get(self, request: Request, study_uid: str, series_uid: str, sop_uid: str) -> StreamingHttpResponse:
        return self.retrieve(_objects(study_uid, series_uid, sop_uid))


class WadoMetadataApi(_WadoMixin, Api):
    """GET .../metadata at study, series or instance level."""

    role_actions = {"GET": "view_studies"}
    renderer_classes = [DicomJsonRenderer, renderers.JSONRenderer]

    @extend_schema(responses=METADATA)
    def get(
        self, request: Request, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> Response:
        return self.metadata(_objects(study_uid, series_uid, sop_uid))


class WadoRenderedApi(Api):
    """GET .../instances/{uid}/rendered (and .../frames/1/rendered): JPEG or PNG."""

    role_actions = {"GET": "view_studies"}
    renderer_classes = [JpegRenderer, PngRenderer, renderers.JSONRenderer]

    @extend_schema(
        responses={(200, "image/jpeg"): OpenApiTypes.BINARY, (200, "image/png"): OpenApiTypes.BINARY, 404: None},
    )
    def get(self, request: Request, study_uid: str, series_uid: str, sop_uid: str, frame: str = "1") -> HttpResponse:
        if frame != "1":
            raise Http404("The instance has a single frame.")
        (image,) = _images(study_uid, series_uid, sop_uid)
        with image.file.open("rb") as handle:
            data = handle.read()
        try:
            pixels = decode_bytes(data, limits=upload_limits()).pixels
        except ImagingError as exc:
            raise Http404(f"The instance cannot be rendered: {exc.message}") from None
        from PIL import Image as PILImage

        buffer = io.BytesIO()
        fmt = "PNG" if request.accepted_media_type == "image/png" else "JPEG"
        PILImage.fromarray((pixels * 255).round().astype("uint8")).save(buffer, format=fmt)
        self.audit("dicomweb_rendered", image)
        return HttpResponse(buffer.getvalue(), content_type=f"image/{fmt.lower()}")
