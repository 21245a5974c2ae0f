"""Webhooks: an integration registers callback URLs for events and reads its deliveries.

Each caller sees its own webhooks; integration managers (admins) see all. Events carry
any patient's results, so only integration managers register webhooks.
"""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from classifier.api.base import Api, ListApi
from classifier.api.idempotency import idempotent
from classifier.http import audit_context, request_user
from classifier.integrations import Webhook, WebhookDelivery
from classifier.roles import user_can
from classifier.services.webhooks import webhook_create, webhook_delete


class WebhookSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)

    class Meta:
        model = Webhook
        fields = ["id", "url", "events", "is_active", "owner", "created_at"]
        read_only_fields = fields


class WebhookCreatedSerializer(WebhookSerializer):
    secret = serializers.CharField(read_only=True, help_text="HMAC key for X-CXR-Signature. Shown only here.")

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class WebhookInput(serializers.Serializer):
    url = serializers.URLField(max_length=500)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=Webhook.Event.choices),
        required=False,
        help_text="Events to receive; empty or absent means all.",
    )


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event",
            "event_id",
            "status",
            "attempts",
            "last_status_code",
            "last_error",
            "created_at",
            "last_attempt_at",
            "delivered_at",
        ]
        read_only_fields = fields


def visible_webhooks(user: Any) -> Any:
    hooks = Webhook.objects.select_related("owner")
    return hooks if user_can(user, "manage_integrations") else hooks.filter(owner=user)


class WebhookListCreateApi(ListApi):
    role_actions = {"GET": "view_studies", "POST": "manage_integrations"}
    serializer_class = WebhookSerializer
    filterset_fields = ["is_active"]
    ordering_fields = ["created_at"]
    audit_action = "api_list_webhooks"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return Webhook.objects.none()
        return visible_webhooks(self.request.user)

    @extend_schema(request=WebhookInput, responses={201: WebhookCreatedSerializer})
    @idempotent
    def post(self, request: Request) -> Response:
        form = WebhookInput(data=request.data)
        form.is_valid(raise_exception=True)
        hook = webhook_create(
            owner=request_user(request),
            url=form.validated_data["url"],
            events=form.validated_data.get("events") or [],
            audit=audit_context(request),
        )
        data = WebhookCreatedSerializer(hook).data
        return Response(data, status=status.HTTP_201_CREATED)


class WebhookDetailApi(Api):
    """GET: one webhook; DELETE: deactivate it (deliveries are kept)."""

    role_actions = {"GET": "view_studies", "DELETE": "view_studies"}

    @extend_schema(responses={200: WebhookSerializer})
    def get(self, request: Request, pk: int) -> Response:
        return Response(WebhookSerializer(get_object_or_404(visible_webhooks(request.user), pk=pk)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        webhook_delete(
            webhook=get_object_or_404(visible_webhooks(request.user), pk=pk),
            actor=request.user,
            audit=audit_context(request),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookDeliveryListApi(ListApi):
    """The deliveries of one webhook, newest first: attempts, last status, errors."""

    role_actions = {"GET": "view_studies"}
    serializer_class = WebhookDeliverySerializer
    filterset_fields = ["status", "event"]
    ordering_fields = ["created_at"]
    ordering = ["-created_at"]
    audit_action = "api_list_deliveries"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return WebhookDelivery.objects.none()
        hook = get_object_or_404(visible_webhooks(self.request.user), pk=self.kwargs["pk"])
        return WebhookDelivery.objects.filter(webhook=hook)
