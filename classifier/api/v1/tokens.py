"""API tokens (admins): create (the token is shown once), list, retrieve, revoke."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from classifier.api.base import Api, ListApi, RetrieveApi
from classifier.http import audit_context, request_user
from classifier.integrations import ApiToken
from classifier.services.tokens import api_token_create, api_token_revoke


class ApiTokenSerializer(serializers.ModelSerializer):
    service_user = serializers.CharField(source="user.username", read_only=True)
    revoked = serializers.BooleanField(source="is_revoked", read_only=True)

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "role",
            "prefix",
            "service_user",
            "rate",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked",
            "revoked_at",
        ]
        read_only_fields = fields


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="The secret token. Shown only in this response.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


class ApiTokenInput(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    role = serializers.ChoiceField(choices=ApiToken.Role.choices)
    rate = serializers.CharField(
        max_length=32,
        required=False,
        allow_blank=True,
        help_text="Throttle rate, e.g. '120/min'; blank for the default.",
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class ApiTokenListCreateApi(ListApi):
    role_actions = {"GET": "manage_integrations", "POST": "manage_integrations"}
    serializer_class = ApiTokenSerializer
    queryset = ApiToken.objects.select_related("user")
    filterset_fields = ["role"]
    ordering_fields = ["created_at", "name"]
    audit_action = "api_list_tokens"

    @extend_schema(request=ApiTokenInput, responses={201: ApiTokenCreatedSerializer})
    def post(self, request: Request) -> Response:
        # Deliberately not idempotent: a stored replay would keep the secret token in the database.
        form = ApiTokenInput(data=request.data)
        form.is_valid(raise_exception=True)
        token, raw = api_token_create(
            created_by=request_user(request), audit=audit_context(request), **form.validated_data
        )
        data = ApiTokenCreatedSerializer(token).data
        data["token"] = raw
        return Response(data, status=status.HTTP_201_CREATED)


class ApiTokenDetailApi(RetrieveApi):
    role_actions = {"GET": "manage_integrations"}
    serializer_class = ApiTokenSerializer
    queryset = ApiToken.objects.select_related("user")
    audit_action = "api_read_token"


class ApiTokenRevokeApi(Api):
    """Revoke a token; its service user is deactivated and its webhooks stop. Idempotent."""

    role_actions = {"POST": "manage_integrations"}

    @extend_schema(request=None, responses={200: ApiTokenSerializer})
    def post(self, request: Request, pk: int) -> Response:
        token = api_token_revoke(
            token=get_object_or_404(ApiToken, pk=pk), actor=request.user, audit=audit_context(request)
        )
        return Response(ApiTokenSerializer(token).data)
