"""Models and training (admins): versions with metrics, promote, roll back, this hospital's
threshold for a version (adopt from its reviews, retire), training runs."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from classifier.api.base import Api, ListApi, RetrieveApi
from classifier.api.errors import ApiError
from classifier.api.idempotency import idempotent
from classifier.http import audit_context, request_user
from classifier.selectors.agreement import flag_performance
from training import registry
from training.models import Dataset, ModelVersion, SiteThreshold, TrainingRun
from training.services.promotion import PromotionRefused, promotion_summary, version_promote
from training.services.runs import TrainingDataMissing, training_run_start
from training.services.site_thresholds import site_threshold_adopt, site_threshold_retire


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "name",
            "version",
            "status",
            "architecture",
            "input_size",
            "labels",
            "metrics",
            "thresholds",
            "artifact_sha256",
            "parent",
            "reviewed_images_used",
            "created_at",
            "activated_at",
        ]
        read_only_fields = fields


class SiteThresholdSerializer(serializers.ModelSerializer):
    adopted_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(slug_field="username", read_only=True)
    retired_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(slug_field="username", read_only=True)
    in_force = serializers.BooleanField(read_only=True)

    class Meta:
        model = SiteThreshold
        fields = [
            "id",
            "version",
            "threshold",
            "artifact_threshold",
            "target_sensitivity",
            "evidence",
            "reason",
            "adopted_by",
            "adopted_at",
            "in_force",
            "retired_at",
            "retired_by",
            "retire_reason",
        ]
        read_only_fields = fields


class ModelVersionDetailSerializer(ModelVersionSerializer):
    site_threshold = serializers.SerializerMethodField(
        help_text="This hospital's threshold in force for the version (predictions are flagged at it), or null: "
        "the version's own thresholds.abnormal applies."
    )

    class Meta(ModelVersionSerializer.Meta):
        fields = [
            *ModelVersionSerializer.Meta.fields,
            "site_threshold",
            "preprocess_config",
            "hyperparameters",
            "model_card",
        ]
        read_only_fields = fields

    @extend_schema_field(SiteThresholdSerializer(allow_null=True))
    def get_site_threshold(self, obj: ModelVersion) -> dict[str, Any] | None:
        site = registry.site_threshold_in_force(obj)
        return SiteThresholdSerializer(site).data if site is not None else None


class TrainingRunSerializer(serializers.ModelSerializer):
    datasets: serializers.PrimaryKeyRelatedField[Dataset] = serializers.PrimaryKeyRelatedField(
        many=True, read_only=True
    )

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "status",
            "trigger",
            "name",
            "spec",
            "datasets",
            "include_reviews",
            "progress",
            "history",
            "model_version",
            "promotion",
            "error_message",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class TrainingRunInput(serializers.Serializer):
    spec = serializers.DictField(required=False, help_text="Partial run spec; completed from the default recipe.")
    datasets = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.all(), many=True, required=False)
    include_reviews = serializers.BooleanField(default=True)


class RollbackInput(serializers.Serializer):
    name = serializers.CharField(max_length=64, default=registry.DEFAULT_NAME)


class ModelVersionListApi(ListApi):
    role_actions = {"GET": "manage_models"}
    serializer_class = ModelVersionSerializer
    queryset = ModelVersion.objects.all()
    filterset_fields = ["name", "status"]
    ordering_fields = ["version", "created_at", "activated_at"]
    audit_action = "api_list_models"


class ModelVersionDetailApi(RetrieveApi):
    role_actions = {"GET": "manage_models"}
    serializer_class = ModelVersionDetailSerializer
    queryset = ModelVersion.objects.all()
    audit_action = "api_read_model"


class PromoteInput(serializers.Serializer):
    override_reason = serializers.CharField(
        max_length=2000,
        required=False,
        allow_blank=True,
        default="",
        help_text="Required when the version fails the promotion gate: why it goes live anyway (audited).",
    )


class PromotionCheckSerializer(serializers.Serializer):
    candidate = ModelVersionSerializer()
    active = ModelVersionSerializer(allow_null=True)
    gate = serializers.DictField(
        help_text="The gate's verdict: promote (bool), reasons, candidate and champion version numbers, source."
    )


class RollbackCheckSerializer(serializers.Serializer):
    active = ModelVersionSerializer(allow_null=True)
    target = ModelVersionSerializer(allow_null=True)


class ModelVersionActivateApi(Api):
    """GET: what promoting would do (the candidate beside the active version, the gate's
    verdict and reasons). POST: promote; a version that fails the gate needs
    ``override_reason`` (409 ``gate_failed`` without it)."""

    role_actions = {"GET": "manage_models", "POST": "manage_models"}

    @extend_schema(responses={200: PromotionCheckSerializer})
    def get(self, request: Request, pk: int) -> Response:
        summary = promotion_summary(get_object_or_404(ModelVersion, pk=pk))
        return Response(PromotionCheckSerializer(summary).data)

    @extend_schema(
        request=PromoteInput,
        responses={
            200: ModelVersionSerializer,
            409: OpenApiResponse(description="Failed the gate without an override reason, or a failed artifact."),
        },
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        version = get_object_or_404(ModelVersion, pk=pk)
        form = PromoteInput(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            version = version_promote(
                version=version,
                actor=request.user,
                audit=audit_context(request),
                reason="api",
                override_reason=form.validated_data["override_reason"],
            )
        except PromotionRefused as exc:
            raise ApiError(exc.code, str(exc), status.HTTP_409_CONFLICT) from None
        return Response(ModelVersionSerializer(version).data)


class ModelVersionRollbackApi(Api):
    """GET: the version a rollback would re-activate. POST: undo the active version's
    latest promotion (re-activate the version it replaced; repeated calls walk back)."""

    role_actions = {"GET": "manage_models", "POST": "manage_models"}

    @extend_schema(responses={200: RollbackCheckSerializer})
    def get(self, request: Request) -> Response:
        name = request.query_params.get("name") or registry.DEFAULT_NAME
        data = {"active": registry.active_version(name), "target": registry.rollback_target(name)}
        return Response(RollbackCheckSerializer(data).data)

    @extend_schema(
        request=RollbackInput,
        responses={200: ModelVersionSerializer, 409: OpenApiResponse(description="Nothing to roll back to.")},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        form = RollbackInput(data=request.data)
        form.is_valid(raise_exception=True)
        version = registry.version_rollback(
            name=form.validated_data["name"], actor=request.user, audit=audit_context(request)
        )
        return Response(ModelVersionSerializer(version).data)


class SiteThresholdInput(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, help_text="Why this hospital's threshold changes (kept, audited).")


class SiteThresholdStateSerializer(serializers.Serializer):
    in_force = SiteThresholdSerializer(allow_null=True)
    local = serializers.DictField(
        allow_null=True,
        help_text="The flag on this hospital's reviewed studies of the version now (n, n_abnormal, target, the "
        "served and the local threshold's sensitivity and specificity with Wilson CIs): what adopting would "
        "store. null without reviewed predictions.",
    )
    history = SiteThresholdSerializer(many=True)


class ModelVersionSiteThresholdApi(Api):
    """GET: the version's site threshold in force, its history and what adopting now would
    rest on. POST ``{"reason"}``: adopt the threshold recomputed from this hospital's reviews
    (409 ``too_few_reviews`` below the minimum of reviewed abnormal studies). New
    predictions of the version are flagged at it; earlier ones keep theirs."""

    role_actions = {"GET": "manage_models", "POST": "manage_models"}

    @extend_schema(responses={200: SiteThresholdStateSerializer})
    def get(self, request: Request, pk: int) -> Response:
        version = get_object_or_404(ModelVersion, pk=pk)
        history = list(version.site_thresholds.select_related("adopted_by", "retired_by"))
        rows = flag_performance(version_id=version.pk)
        self.audit("api_read_site_threshold", version)
        data = {
            "in_force": next((site for site in history if site.in_force), None),
            "local": rows[0].evidence() if rows else None,
            "history": history,
        }
        return Response(SiteThresholdStateSerializer(data).data)

    @extend_schema(
        request=SiteThresholdInput,
        responses={
            201: SiteThresholdSerializer,
            409: OpenApiResponse(description="Too few reviewed abnormal studies of the version."),
        },
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        version = get_object_or_404(ModelVersion, pk=pk)
        form = SiteThresholdInput(data=request.data)
        form.is_valid(raise_exception=True)
        site = site_threshold_adopt(
            version=version,
            actor=request_user(request),
            reason=form.validated_data["reason"],
            audit=audit_context(request),
        )
        return Response(SiteThresholdSerializer(site).data, status=status.HTTP_201_CREATED)


class ModelVersionSiteThresholdRetireApi(Api):
    """POST ``{"reason"}``: return the version to its own threshold (404 ``no_site_threshold``
    when none is in force)."""

    role_actions = {"POST": "manage_models"}

    @extend_schema(
        request=SiteThresholdInput,
        responses={200: SiteThresholdSerializer, 404: OpenApiResponse(description="No site threshold in force.")},
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        version = get_object_or_404(ModelVersion, pk=pk)
        form = SiteThresholdInput(data=request.data)
        form.is_valid(raise_exception=True)
        site = site_threshold_retire(
            version=version,
            actor=request_user(request),
            reason=form.validated_data["reason"],
            audit=audit_context(request),
        )
        return Response(SiteThresholdSerializer(site).data)


class TrainingRunListCreateApi(ListApi):
    role_actions = {"GET": "start_training", "POST": "start_training"}
    serializer_class = TrainingRunSerializer
    queryset = TrainingRun.objects.prefetch_related("datasets")
    filterset_fields = ["status", "trigger"]
    ordering_fields = ["created_at"]
    audit_action = "api_list_training"

    @extend_schema(
        request=TrainingRunInput,
        responses={
            201: TrainingRunSerializer,
            409: OpenApiResponse(description="no_training_data: what is missing and how to add data."),
        },
    )
    @idempotent
    def post(self, request: Request) -> Response:
        form = TrainingRunInput(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            run = training_run_start(
                spec=form.validated_data.get("spec") or {},
                datasets=form.validated_data.get("datasets") or [],
                include_reviews=form.validated_data["include_reviews"],
                created_by=request_user(request),
                audit=audit_context(request),
            )
        except TrainingDataMissing as exc:
            raise ApiError("no_training_data", str(exc), status.HTTP_409_CONFLICT) from None
        except (ValueError, TypeError, KeyError) as exc:
            raise ApiError("invalid_spec", f"The training spec is invalid: {exc}", 400) from None
        return Response(
            TrainingRunSerializer(run).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": f"/api/v1/training-runs/{run.pk}/"},
        )


class TrainingRunDetailApi(RetrieveApi):
    """A run with its progress (epoch, loss, metrics, ETA) and the promotion gate's decision."""

    role_actions = {"GET": "start_training"}
    serializer_class = TrainingRunSerializer
    queryset = TrainingRun.objects.prefetch_related("datasets")
    audit_action = "api_read_training"
