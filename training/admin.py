from django.contrib import admin

from classifier.admin_audit import AuditedAdmin
from training.models import Dataset, DatasetImage, ModelVersion, TrainingRun


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "architecture", "status", "created_at", "activated_at")
    list_filter = ("status", "name")
    # Versions are immutable; status changes go through training.registry (audited).
    readonly_fields = [f.name for f in ModelVersion._meta.fields]


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
