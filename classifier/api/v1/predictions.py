"""Predictions: list, retrieve, heatmap PNG (role-checked stream), re-run on the active model."""

from __future__ import annotations

from typing import Any

import django_filters
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import renderers, status
from rest_framework.request import Request
from rest_framework.response import Response

from classifier.api.base import Api, BinaryRenderer, ListApi, RetrieveApi
from classifier.api.errors import ApiError
from classifier.api.filters import IsoDateTimeFilter
from classifier.api.idempotency import idempotent
from classifier.api.serializers import PredictionSerializer
from classifier.http import audit_context, request_user
from classifier.models import Label, Prediction
from classifier.services.predictions import prediction_rerun


class PngRenderer(BinaryRenderer):
    """Lets clients ask for ``image/png``; error bodies still go out as JSON."""

    media_type = "image/png"
    format = "png"


class PredictionFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Prediction.Status.choices)
    label = django_filters.ChoiceFilter(choices=Label.choices)
    flag = django_filters.BooleanFilter()
    image = django_filters.NumberFilter(field_name="image_id")
    study = django_filters.NumberFilter(field_name="image__study_id")
    model_version = django_filters.NumberFilter(field_name="model_version_id")
    created_after = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = Prediction
        fields = ["status", "flag"]


def prediction_queryset() -> Any:
    return Prediction.objects.select_related("model_version", "image__study")


class PredictionListApi(ListApi):
    role_actions = {"GET": "view_studies"}
    serializer_class = PredictionSerializer
    filterset_class = PredictionFilter
    ordering_fields = ["created_at", "p_abnormal", "finished_at"]
    ordering = ["-created_at"]

    def get_queryset(self):
        return prediction_queryset()


class PredictionDetailApi(RetrieveApi):
    """One prediction with probabilities, flag, threshold, model identity, timings, heatmap URL."""

    role_actions = {"GET": "view_studies"}
    serializer_class = PredictionSerializer

    def get_queryset(self):
        return prediction_queryset()


class PredictionHeatmapApi(Api):
    """The Grad-CAM overlay as PNG, streamed after the role check (media is never served directly)."""

    role_actions = {"GET": "view_studies"}
    renderer_classes = [renderers.JSONRenderer, PngRenderer]

    @extend_schema(
        responses={
            (200, "image/png"): OpenApiTypes.BINARY,
            404: OpenApiResponse(description="No such prediction or no heatmap yet."),
        }
    )
    def get(self, request: Request, pk: int) -> FileResponse:
        prediction = get_object_or_404(Prediction, pk=pk)
        if not prediction.heatmap:
            raise ApiError("no_heatmap", "This prediction has no heatmap (not finished or failed).", 404)
        try:
            handle = prediction.heatmap.open("rb")
        except FileNotFoundError:
            raise ApiError("heatmap_missing", "The heatmap file could not be found.", 404) from None
        self.audit("api_read_heatmap", prediction)
        response = FileResponse(handle, content_type="image/png")
        response["Cache-Control"] = "private, no-store"
        return response


class PredictionRerunApi(Api):
    """Queue a new prediction of the same image with the model active when it runs."""

    role_actions = {"POST": "upload"}

    @extend_schema(request=None, responses={202: PredictionSerializer})
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        previous = get_object_or_404(Prediction.objects.select_related("image"), pk=pk)
        prediction = prediction_rerun(
            image=previous.image, requested_by=request_user(request), audit=audit_context(request)
        )
        prediction = prediction_queryset().get(pk=prediction.pk)
        return Response(
            PredictionSerializer(prediction, context={"request": request}).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": f"/api/v1/predictions/{prediction.pk}/"},
        )
