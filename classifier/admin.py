"""Admin: read-mostly views of the clinical rows (the audit log is append-only) and the
integrations: create an API token (shown once), revoke it, add, deactivate and
reactivate webhooks, see deliveries, allow-list the DICOM peers and configure the PACS
destinations. Integrations are open to whoever may ``manage_integrations``
(classifier.roles: the Admin role), through the services, audited. Every admin that
shows patient data (clinical rows, deliveries, the audit log) is an ``AuditedAdmin``:
its lists, pages and saves are AuditEvents (classifier.admin_audit)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from classifier.admin_audit import AuditedAdmin
from classifier.http import audit_context, request_user
from classifier.integrations import ApiToken, DicomDelivery, DicomDestination, DicomPeer, Webhook, WebhookDelivery
from classifier.models import AuditEvent, Image, Patient, Prediction, Review, Study
from classifier.roles import user_can
from classifier.services.dicom import dicom_peer_delete, dicom_peer_save
from classifier.services.errors import ServiceError
from classifier.services.studies import study_refresh
from classifier.services.tokens import api_token_create, api_token_revoke
from classifier.services.webhooks import webhook_check, webhook_create, webhook_delete, webhook_reactivate


@admin.register(Patient)
class PatientAdmin(AuditedAdmin):
    audit_values = ("sex",)
    list_display = ("id", "mrn", "sex", "birth_date", "created_at")
    search_fields = ("mrn",)


@admin.register(Study)
class StudyAdmin(AuditedAdmin):
    audit_values = ("status", "priority", "modality", "view_position")
    list_display = ("id", "accession_number", "status", "priority", "view_position", "created_at")
    list_filter = ("status", "view_position")
    search_fields = ("accession_number", "study_instance_uid")


class RefreshesStudyAdmin(AuditedAdmin):
    """Deleting images, predictions or reviews changes what their studies hold: refresh
    the studies (status, priority, has_images, the stored current result) as the
    services do. ``study_path``: the lookup from the model to its study's id."""

    study_path = "image__study_id"

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        study_id = type(obj).objects.filter(pk=obj.pk).values_list(self.study_path, flat=True).first()
        super().delete_model(request, obj)
        if study_id is not None:
            study_refresh(study_id)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        study_ids = set(queryset.values_list(self.study_path, flat=True))
        super().delete_queryset(request, queryset)
        study_refresh(*study_ids)


@admin.register(Image)
class ImageAdmin(RefreshesStudyAdmin):
    study_path = "study_id"
    audit_values = ("format", "width", "height")
    list_display = ("id", "study", "format", "width", "height", "sha256", "created_at")
    readonly_fields = ("sha256", "file", "metadata")


@admin.register(Prediction)
class PredictionAdmin(RefreshesStudyAdmin):
    audit_values = ("status", "label", "flag")
    list_display = ("id", "image", "status", "label", "p_abnormal", "flag", "model_version", "created_at")
    list_filter = ("status", "flag", "model_version")
    readonly_fields = [f.name for f in Prediction._meta.fields]


@admin.register(Review)
class ReviewAdmin(RefreshesStudyAdmin):
    audit_values = ("decision", "label")
    list_display = ("id", "image", "radiologist", "decision", "label", "created_at")
    readonly_fields = [f.name for f in Review._meta.fields]


@admin.register(AuditEvent)
class AuditEventAdmin(AuditedAdmin):
    """Reading the log is audited too: it says whose records were read, and by whom."""

    list_display = ("created_at", "actor_username", "action", "object_type", "object_id", "ip_address")
    list_filter = ("action",)
    search_fields = ("actor_username", "object_id")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class IntegrationAccess:
    """Admin pages of the integrations: allowed by the ``manage_integrations`` action, the
    one rule the API's tokens and webhooks endpoints use too (not Django model permissions)."""

    def _may_manage(self, request: HttpRequest) -> bool:
        return user_can(request.user, "manage_integrations")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_manage(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._may_manage(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_manage(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # deactivate or revoke instead: the audit trail refers to the rows


class ApiTokenCreateForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["name", "role", "rate", "expires_at"]


@admin.register(ApiToken)
class ApiTokenAdmin(IntegrationAccess, admin.ModelAdmin):
    list_display = ("id", "name", "role", "prefix", "created_at", "last_used_at", "revoked_at")
    list_filter = ("role",)
    search_fields = ("name", "prefix")
    actions = ["revoke_tokens"]
    readonly_fields = (
        "name",
        "role",
        "user",
        "prefix",
        "rate",
        "created_by",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    )

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = ApiTokenCreateForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields if obj is not None else ()

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields if obj is not None else ApiTokenCreateForm.Meta.fields

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            return  # tokens are immutable; revoke and create a new one instead
        token, raw = api_token_create(
            name=obj.name,
            role=obj.role,
            rate=obj.rate,
            expires_at=obj.expires_at,
            created_by=request_user(request),
            audit=audit_context(request),
        )
        obj.pk = token.pk
        messages.warning(request, f"Copy the token now, it will not be shown again: {raw}")

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke_tokens(self, request: HttpRequest, queryset: Any) -> None:
        for token in queryset:
            api_token_revoke(token=token, actor=request.user, audit=audit_context(request))
        self.message_user(request, f"Revoked {queryset.count()} token(s).")


class WebhookForm(forms.ModelForm):
    events = forms.MultipleChoiceField(
        choices=Webhook.Event.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked means all events.",
    )

    class Meta:
        model = Webhook
        fields = ["url", "events"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.errors:
            try:
                webhook_check(url=data.get("url") or "", events=list(data.get("events") or []))
            except ServiceError as exc:
                raise forms.ValidationError(exc.message) from None
        return data


@admin.register(Webhook)
class WebhookAdmin(IntegrationAccess, admin.ModelAdmin):
    """Add a webhook (owned by the admin who adds it; its secret is shown once), and
    deactivate or reactivate one. URL and events are fixed once created, as in the API."""

    list_display = ("id", "url", "owner", "events", "is_active", "created_at")
    list_filter = ("is_active",)
    readonly_fields = ("url", "events", "owner", "created_at")

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = WebhookForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields if obj is not None else ()

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [*self.readonly_fields, "is_active"] if obj is not None else WebhookForm.Meta.fields

    def save_model(self, request: HttpRequest, obj: Webhook, form: Any, change: bool) -> None:
        actor, audit = request_user(request), audit_context(request)
        if not change:
            hook = webhook_create(owner=actor, url=obj.url, events=list(form.cleaned_data["events"]), audit=audit)
            obj.pk = hook.pk
            messages.warning(request, f"Copy the signing secret now, it will not be shown again: {hook.secret}")
            return
        if "is_active" in form.changed_data:
            stored = Webhook.objects.select_related("owner").get(pk=obj.pk)
            if obj.is_active:
                webhook_reactivate(webhook=stored, actor=actor, audit=audit)
            else:
                webhook_delete(webhook=stored, actor=actor, audit=audit)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(IntegrationAccess, AuditedAdmin):
    """Payloads name studies (accession numbers): reading them is audited."""

    list_display = ("id", "webhook", "event", "status", "attempts", "last_status_code", "created_at")
    list_filter = ("status", "event")
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # deliveries are written by the events they report

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(DicomPeer)
class DicomPeerAdmin(IntegrationAccess, admin.ModelAdmin):
    """The calling AE titles the DICOM listener accepts; every change is audited."""

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_manage(request)  # a removed peer is audited with its AE title

    list_display = ("ae_title", "name", "is_active", "created_at")
    list_filter = ("is_active",)
    search_fields = ("ae_title", "name")

    def save_model(self, request: HttpRequest, obj: DicomPeer, form: Any, change: bool) -> None:
        dicom_peer_save(peer=obj, actor=request_user(request), audit=audit_context(request))

    def delete_model(self, request: HttpRequest, obj: DicomPeer) -> None:
        dicom_peer_delete(peer=obj, actor=request_user(request), audit=audit_context(request))

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for peer in queryset:
            self.delete_model(request, peer)


@admin.register(DicomDestination)
class DicomDestinationAdmin(IntegrationAccess, admin.ModelAdmin):
    """The PACS the SR and Secondary Capture of each result are sent to."""

    list_display = ("name", "ae_title", "host", "port", "is_active", "created_at")
    list_filter = ("is_active",)


@admin.register(DicomDelivery)
class DicomDeliveryAdmin(IntegrationAccess, AuditedAdmin):
    """Each row names a prediction and a review: reading them is audited."""

    list_display = ("id", "destination", "prediction", "review", "kind", "status", "attempts", "last_status")
    list_filter = ("status", "kind")
    readonly_fields = [f.name for f in DicomDelivery._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # deliveries are written by the results they carry

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
