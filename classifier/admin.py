"""Admin: read-mostly views of the clinical rows; the audit log is append-only."""
from django.contrib import admin

from classifier.models import AuditEvent, Image, Patient, Prediction, Review, Study


@admin.register(Patient)
class PatientAdmin(admin.ModelAdmin):
    list_display = ("id", "mrn", "sex", "birth_date", "created_at")
    search_fields = ("mrn",)


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ("id", "accession_number", "status", "priority", "view_position", "created_at")
    list_filter = ("status", "view_position")
    search_fields = ("accession_number", "study_instance_uid")


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ("id", "study", "format", "width", "height", "sha256", "created_at")
    readonly_fields = ("sha256", "file", "metadata")


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ("id", "image", "status", "label", "p_abnormal", "flag", "model_version", "created_at")
    list_filter = ("status", "flag", "model_version")
    readonly_fields = [f.name for f in Prediction._meta.fields]


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    list_display = ("id", "image", "radiologist", "decision", "label", "created_at")
    readonly_fields = [f.name for f in Review._meta.fields]


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "actor_username", "action", "object_type", "object_id", "ip_address")
    list_filter = ("action",)
    search_fields = ("actor_username", "object_id")

    def has_add_permission(self, request):  # noqa: ANN001, ANN201
        return False

    def has_change_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False

    def has_delete_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False


from classifier.api import admin as _integrations_admin  # noqa: E402,F401 - API tokens and webhooks
