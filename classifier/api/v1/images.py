"""Images: one file per request; a DICOM alone is enough (its header names patient and study).

Natural keys make retries safe without an Idempotency-Key: a file whose SOP Instance
UID (or content, within the study) is already stored returns that image with 200.
"""

from __future__ import annotations

import django_filters
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from classifier.api.base import ListApi, RetrieveApi, upload_limit_bytes
from classifier.api.errors import ApiError, outcome_status
from classifier.api.idempotency import idempotent
from classifier.api.serializers import ImageSerializer, ImageUploadInput, UploadResultSerializer
from classifier.api.v1.studies import outcome_data, study_fields
from classifier.http import audit_context, request_user
from classifier.models import Image, Study
from classifier.services.uploads import image_upload


class ImageFilter(django_filters.FilterSet):
    study = django_filters.NumberFilter(field_name="study_id")
    format = django_filters.ChoiceFilter(choices=Image.Format.choices)
    sop_instance_uid = django_filters.CharFilter()
    sha256 = django_filters.CharFilter()

    class Meta:
        model = Image
        fields = ["study", "format"]


class ImageListUploadApi(ListApi):
    """GET: images; POST: upload one file (multipart field ``file``) with optional study fields."""

    role_actions = {"GET": "view_studies", "POST": "upload"}
    serializer_class = ImageSerializer
    filterset_class = ImageFilter
    parser_classes = [MultiPartParser]
    ordering_fields = ["created_at", "id"]
    ordering = ["-created_at"]
    max_body_bytes = upload_limit_bytes(1)

    def get_queryset(self):
        return Image.objects.all()

    @extend_schema(
        request={"multipart/form-data": ImageUploadInput},
        responses={
            201: UploadResultSerializer,
            200: OpenApiResponse(UploadResultSerializer, "Already stored (duplicate)."),
            400: OpenApiResponse(description="Invalid or unreadable file, or missing fields."),
            409: OpenApiResponse(description="Accession number of another patient."),
            413: OpenApiResponse(description="File or image too large."),
            415: OpenApiResponse(description="Not a DICOM, PNG or JPEG file."),
        },
    )
    @idempotent
    def post(self, request: Request) -> Response:
        sent = len(request.FILES.getlist("file"))
        if sent > 1:  # the parser keeps the last one; silently dropping the others loses images
            raise ApiError("too_many_files", f"Send one file per request in 'file' ({sent} were sent).")
        form = ImageUploadInput(data=request.data)
        form.is_valid(raise_exception=True)
        upload = form.validated_data["file"]
        study = None
        if form.validated_data.get("study") is not None:
            study = get_object_or_404(Study, pk=form.validated_data["study"])
        outcome = image_upload(
            data=upload.read(),
            filename=upload.name or "upload",
            uploaded_by=request_user(request),
            fields=study_fields(form.validated_data),
            study=study,
            audit=audit_context(request),
        )
        if not outcome.ok:
            raise ApiError(outcome.error_code, outcome.error_message, outcome_status(outcome))
        return Response(
            outcome_data(outcome, self.get_serializer_context()),
            status=status.HTTP_200_OK if outcome.duplicate else status.HTTP_201_CREATED,
        )


class ImageDetailApi(RetrieveApi):
    role_actions = {"GET": "view_studies"}
    serializer_class = ImageSerializer
    queryset = Image.objects.select_related("study")
