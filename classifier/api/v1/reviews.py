"""Reviews: radiologists confirm or correct a finished prediction (services.review_submit)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from classifier.api.base import ListApi
from classifier.api.idempotency import idempotent
from classifier.api.serializers import ReviewInput, ReviewSerializer
from classifier.http import audit_context, request_user
from classifier.models import Prediction, Review
from classifier.services.reviews import review_submit


class PredictionReviewListCreateApi(ListApi):
    """GET: the reviews of a prediction, newest first; POST: confirm or correct it."""

    role_actions = {"GET": "view_studies", "POST": "review"}
    serializer_class = ReviewSerializer
    ordering_fields = ["created_at"]
    ordering = ["-created_at"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request data
            return Review.objects.none()
        prediction = get_object_or_404(Prediction, pk=self.kwargs["pk"])
        return Review.objects.filter(prediction=prediction).select_related("radiologist")

    @extend_schema(
        request=ReviewInput,
        responses={201: ReviewSerializer, 409: OpenApiResponse(description="The prediction is not finished.")},
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        prediction = get_object_or_404(Prediction, pk=pk)
        form = ReviewInput(data=request.data)
        form.is_valid(raise_exception=True)
        review = review_submit(
            prediction=prediction,
            radiologist=request_user(request),
            decision=form.validated_data["decision"],
            label=form.validated_data.get("label", ""),
            comment=form.validated_data.get("comment", ""),
            audit=audit_context(request),
        )
        return Response(ReviewSerializer(review).data, status=status.HTTP_201_CREATED)
