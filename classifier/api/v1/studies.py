"""Studies: the worklist, one study with its images, and study + images in one request.

A study POST is idempotent by its natural key: an existing accession number returns
that study (200) and only adds images it does not have yet (services dedupe by SOP
Instance UID and content hash). Every file is validated from its header before
anything is written, so a bad file refuses the whole request with 400/413/415. With
files, the study is created by the first file actually stored (none stored, none
created: a request of duplicates answers with the study that holds them); without
files it is an order, kept off the worklist until an image arrives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import django_filters
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from classifier.api.base import ListApi, RetrieveApi, upload_limit_bytes
from classifier.api.errors import ApiError, outcome_status
from classifier.api.filters import IsoDateTimeFilter
from classifier.api.idempotency import idempotent
from classifier.api.parsers import JsonParser
from classifier.api.serializers import (
    ImageSerializer,
    PredictionSerializer,
    StudyCreateInput,
    StudyDetailSerializer,
    StudySerializer,
    UploadResultSerializer,
)
from classifier.http import audit_context, request_user
from classifier.imaging.probe import probe_bytes
from classifier.models import Prediction, Study
from classifier.selectors.studies import study_annotate_image_count, study_filter_flagged, worklist
from classifier.services.studies import StudyFields, study_get_or_create
from classifier.services.uploads import UploadOutcome, image_upload, upload_limits

MAX_FILES_PER_REQUEST = 4

STUDY_FIELD_NAMES = (
    "mrn",
    "patient_name",
    "birth_date",
    "sex",
    "accession_number",
    "study_instance_uid",
    "view_position",
    "study_date",
    "modality",
    "clinical_notes",
)


def study_fields(data: dict[str, Any]) -> StudyFields:
    """StudyFields from validated input: absent strings become '' and absent dates None."""
    values = {name: data.get(name) for name in STUDY_FIELD_NAMES}
    return StudyFields(
        **{name: (value if value is not None or name.endswith("date") else "") for name, value in values.items()},  # type: ignore[arg-type]
        patient_confirmed=bool(data.get("patient_confirmed")),
    )


def outcome_data(outcome: UploadOutcome, context: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "filename": outcome.filename,
        "duplicate": outcome.duplicate,
        "warnings": outcome.warnings,
        "image": ImageSerializer(outcome.image, context=context).data if outcome.image else None,
        "error": {"code": outcome.error_code, "message": outcome.error_message} if outcome.error_code else None,
    }


class StudyFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Study.Status.choices)
    patient = django_filters.NumberFilter(field_name="patient_id")
    mrn = django_filters.CharFilter(field_name="patient__mrn")
    accession_number = django_filters.CharFilter()
    study_instance_uid = django_filters.CharFilter()
    view_position = django_filters.ChoiceFilter(choices=Study.View.choices)
    modality = django_filters.CharFilter()
    flagged = django_filters.BooleanFilter(
        method="filter_flagged",
        help_text="Any image's current result is flagged abnormal (false: results and none flagged).",
    )
    created_after = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = IsoDateTimeFilter(field_name="created_at", lookup_expr="lte")

    class Meta:
        model = Study
        fields = ["status", "accession_number"]

    def filter_flagged(self, queryset: Any, name: str, value: bool | None) -> Any:
        return queryset if value is None else study_filter_flagged(queryset, value)


StudyCreateResponse = inline_serializer(
    "StudyCreateResponse", fields={"study": StudyDetailSerializer(), "uploads": UploadResultSerializer(many=True)}
)


class StudyListCreateApi(ListApi):
    """GET: the worklist (priority first) with filters; POST: a study with its images."""

    role_actions = {"GET": "view_studies", "POST": "upload"}
    serializer_class = StudySerializer
    filterset_class = StudyFilter
    parser_classes = [MultiPartParser, FormParser, JsonParser]
    ordering_fields = ["priority", "created_at", "study_date", "accession_number"]
    max_body_bytes = upload_limit_bytes(MAX_FILES_PER_REQUEST)

    def get_queryset(self):
        return study_annotate_image_count(worklist())

    @extend_schema(
        request={"multipart/form-data": StudyCreateInput, "application/json": StudyCreateInput},
        responses={
            201: StudyCreateResponse,
            200: OpenApiResponse(StudyCreateResponse, "The accession number exists."),
            413: OpenApiResponse(description="A file is too large."),
            415: OpenApiResponse(description="A file is not DICOM, PNG or JPEG."),
        },
    )
    @idempotent
    def post(self, request: Request) -> Response:
        form = StudyCreateInput(data=request.data)
        form.is_valid(raise_exception=True)
        files = form.validated_data.get("images") or []
        payloads = [(upload.name or "upload", upload.read()) for upload in files]
        for _, data in payloads:
            probe_bytes(data, limits=upload_limits())  # refuse the whole request before any write
        fields = study_fields(form.validated_data)
        outcomes: list[UploadOutcome] = []
        if not payloads:
            study, created = study_get_or_create(fields=fields, requested_by=request_user(request))
        else:
            before = set(Study.objects.filter(accession_number=fields.accession_number).values_list("pk", flat=True))
            outcomes = [
                image_upload(
                    data=data,
                    filename=name,
                    uploaded_by=request_user(request),
                    fields=fields,
                    audit=audit_context(request),
                )
                for name, data in payloads
            ]
            held = [o.image.study for o in outcomes if o.image is not None]
            if not held:
                first = next(o for o in outcomes if not o.ok)
                raise ApiError(first.error_code, first.error_message, outcome_status(first))
            stored = [o.image.study for o in outcomes if o.image is not None and not o.duplicate]
            study = (stored or held)[0]
            created = bool(stored) and study.pk not in before
        self.audit("study_create" if created else "api_read", study)
        context = self.get_serializer_context()
        study.refresh_from_db()
        body = {
            "study": StudyDetailSerializer(study, context=context).data,
            "uploads": [outcome_data(outcome, context) for outcome in outcomes],
        }
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class StudyDetailApi(RetrieveApi):
    """One study with its images and each image's latest prediction."""

    role_actions = {"GET": "view_studies"}
    serializer_class = StudyDetailSerializer
    queryset = Study.objects.select_related("patient")


class StudyPredictionListApi(ListApi):
    """Every prediction of a study's images, newest first (re-runs included)."""

    role_actions = {"GET": "view_studies"}
    serializer_class = PredictionSerializer
    ordering_fields = ["created_at", "p_abnormal"]
    ordering = ["-created_at"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request data
            return Prediction.objects.none()
        study = get_object_or_404(Study, pk=self.kwargs["pk"])
        return Prediction.objects.filter(image__study=study).select_related("model_version", "image__study")
