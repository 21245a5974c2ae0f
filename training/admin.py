from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from classifier.admin_audit import AuditedAdmin
from training.models import Dataset, DatasetImage, ModelVersion, SiteThreshold, TrainingRun


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "architecture", "status", "created_at", "activated_at")
    list_filter = ("status", "name")
    # Versions are immutable; status changes go through training.registry (audited).
    readonly_fields = [f.name for f in ModelVersion._meta.fields]


@admin.register(SiteThreshold)
class SiteThresholdAdmin(admin.ModelAdmin):
    """Read-only: adopting and retiring go through training.services.site_thresholds
    (evidence recomputed, audited), from the model page or the agreement page."""

    list_display = ("version", "threshold", "artifact_threshold", "adopted_by", "adopted_at", "retired_at")
    list_filter = ("version",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: SiteThreshold | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: SiteThreshold | None = None) -> bool:
        return False


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "trigger", "model_version", "created_at", "finished_at")
    list_filter = ("status", "trigger")
    readonly_fields = ("progress", "history", "promotion", "error_message")


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "layout", "created_at")


@admin.register(DatasetImage)
class DatasetImageAdmin(AuditedAdmin):
    """Labelled images with their source's patient key: reading them is audited."""

    audit_values = ("label", "split", "view_position")
    list_display = ("id", "dataset", "label", "split", "source", "view_position")
    list_filter = ("dataset", "label", "split", "source")
