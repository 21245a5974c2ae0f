"""Serializers of the clinical rows. Output only, except the small input forms at the end.

Every prediction carries the identity of the model that produced it (name, version,
sha256 of model.tflite) and the decision-support notice.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.reverse import reverse

from classifier.findings import NOTICE
from classifier.models import SEX_CHOICES, Image, Label, Patient, Prediction, Review, Study
from classifier.selectors.predictions import prediction_finding_of
from classifier.selectors.studies import prediction_latest
from training.models import ModelVersion

SUMMARY_ARTIFACT = "model.tflite"


class PatientSerializer(serializers.ModelSerializer):
    class Meta:
        model = Patient
        fields = ["id", "mrn", "name", "birth_date", "sex", "created_at"]
        read_only_fields = ["id", "created_at"]


class ModelIdentitySerializer(serializers.ModelSerializer):
    artifact_sha256 = serializers.SerializerMethodField(help_text="sha256 of model.tflite.")

    class Meta:
        model = ModelVersion
        fields = ["id", "name", "version", "architecture", "artifact_sha256"]

    def get_artifact_sha256(self, obj: ModelVersion) -> str:
        return (obj.artifact_sha256 or {}).get(SUMMARY_ARTIFACT, "")


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class ReviewSerializer(serializers.ModelSerializer):
    radiologist = serializers.CharField(source="radiologist.username", read_only=True)

    class Meta:
        model = Review
        fields = ["id", "prediction", "image", "radiologist", "decision", "label", "comment", "created_at"]
        read_only_fields = fields


class FindingSerializer(serializers.Serializer):
    """Documentation shape of ``classifier.findings.Finding``."""

    headline = serializers.CharField()
    flagged = serializers.BooleanField(allow_null=True)
    p_abnormal = serializers.FloatField(allow_null=True)
    suggested_cause = serializers.CharField(allow_null=True)
    suggested_cause_name = serializers.CharField(allow_null=True)
    cause_status = serializers.ChoiceField(choices=["validated", "unvalidated"], allow_null=True)
    patient_group = serializers.ChoiceField(choices=["pediatric", "adult", "unknown"])
    cause_note = serializers.CharField()


class PredictionSerializer(serializers.ModelSerializer):
    study = serializers.IntegerField(source="image.study_id", read_only=True)
    priority = serializers.FloatField(
        source="image.study.priority", read_only=True, help_text="The study's triage score; higher is read first."
    )
    model = ModelIdentitySerializer(source="model_version", read_only=True, allow_null=True)
    heatmap_url = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    latest_review = serializers.SerializerMethodField()
    notice = serializers.SerializerMethodField()
    finding = serializers.SerializerMethodField(
        help_text="The primary finding in words (headline) and the suggested cause with its validation status "
        "for the patient's age group; the cause is never the headline where it is not validated."
    )

    threshold_source = serializers.ChoiceField(
        choices=["model", "site"],
        read_only=True,
        help_text='Whose threshold "flag" compared p_abnormal against: "model" (the version\'s own, in '
        '"thresholds") or "site" (this hospital\'s, adopted from its radiologists\' reviews).',
    )

    class Meta:
        model = Prediction
        fields = [
            "id",
            "image",
            "study",
            "status",
            "probabilities",
            "label",
            "p_abnormal",
            "flag",
            "finding",
            "priority",
            "threshold",
            "threshold_source",
            "thresholds",
            "model",
            "runtime",
            "timings_ms",
            "heatmap_url",
            "error",
            "latest_review",
            "notice",
            "attempts",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_heatmap_url(self, obj: Prediction) -> str | None:
        if not obj.heatmap:
            return None
        return reverse("api:prediction-heatmap", kwargs={"pk": obj.pk}, request=self.context.get("request"))

    @extend_schema_field(ErrorSerializer(allow_null=True))
    def get_error(self, obj: Prediction) -> dict[str, str] | None:
        return {"code": obj.error_code, "message": obj.error_message} if obj.error_code else None

    @extend_schema_field(ReviewSerializer(allow_null=True))
    def get_latest_review(self, obj: Prediction) -> dict[str, Any] | None:
        review = obj.reviews.order_by("-created_at", "-id").select_related("radiologist").first()
        return ReviewSerializer(review).data if review else None

    def get_notice(self, obj: Prediction) -> str:
        return NOTICE

    @extend_schema_field(FindingSerializer)
    def get_finding(self, obj: Prediction) -> dict[str, Any]:
        return prediction_finding_of(obj).as_dict()


class ImageSerializer(serializers.ModelSerializer):
    latest_prediction = serializers.SerializerMethodField()

    class Meta:
        model = Image
        fields = [
            "id",
            "study",
            "format",
            "width",
            "height",
            "size_bytes",
            "sha256",
            "sop_instance_uid",
            "original_filename",
            "created_at",
            "latest_prediction",
        ]
        read_only_fields = fields

    @extend_schema_field(PredictionSerializer(allow_null=True))
    def get_latest_prediction(self, obj: Image) -> dict[str, Any] | None:
        prediction = prediction_latest(obj)
        return PredictionSerializer(prediction, context=self.context).data if prediction else None


class StudySerializer(serializers.ModelSerializer):
    patient = PatientSerializer(read_only=True)
    image_count = serializers.SerializerMethodField()

    class Meta:
        model = Study
        fields = [
            "id",
            "patient",
            "accession_number",
            "study_instance_uid",
            "modality",
            "view_position",
            "study_date",
            "clinical_notes",
            "status",
            "priority",
            "image_count",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_image_count(self, obj: Study) -> int:
        """The annotation of a list (``selectors.studies.study_annotate_image_count``: one
        query per page, not one per row), else a count."""
        annotated = getattr(obj, "n_images", None)
        return int(annotated) if annotated is not None else obj.images.count()


class StudyDetailSerializer(StudySerializer):
    images = ImageSerializer(many=True, read_only=True)

    class Meta(StudySerializer.Meta):
        fields = [*StudySerializer.Meta.fields, "images"]
        read_only_fields = fields


class UploadResultSerializer(serializers.Serializer):
    """What happened to one uploaded file."""

    filename = serializers.CharField()
    duplicate = serializers.BooleanField()
    image = ImageSerializer(allow_null=True)
    error = ErrorSerializer(allow_null=True)
    warnings = serializers.ListField(child=serializers.CharField())


# --- input --------------------------------------------------------------------------


class StudyFieldsInput(serializers.Serializer):
    """Patient and study fields; for DICOM uploads blank fields are filled from the header."""

    mrn = serializers.CharField(max_length=64, required=False, allow_blank=True)
    patient_name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    birth_date = serializers.DateField(required=False, allow_null=True)
    sex = serializers.ChoiceField(choices=SEX_CHOICES, required=False, allow_blank=True)
    accession_number = serializers.CharField(max_length=64, required=False, allow_blank=True)
    study_instance_uid = serializers.CharField(max_length=64, required=False, allow_blank=True)
    view_position = serializers.ChoiceField(choices=Study.View.choices, required=False, allow_blank=True)
    study_date = serializers.DateField(required=False, allow_null=True)
    modality = serializers.CharField(max_length=16, required=False, allow_blank=True)
    clinical_notes = serializers.CharField(max_length=4000, required=False, allow_blank=True)
    patient_confirmed = serializers.BooleanField(
        required=False,
        default=False,
        help_text="The MRN is known and its stored name or birth date differs from the one given: "
        "true files the images under the stored patient (details kept); without it the request is 409.",
    )


class StudyCreateInput(StudyFieldsInput):
    mrn = serializers.CharField(max_length=64)
    accession_number = serializers.CharField(max_length=64)
    images = serializers.ListField(
        child=serializers.FileField(),
        required=False,
        max_length=16,
        help_text="Image files (DICOM, PNG, JPEG) of the study.",
    )


class ImageUploadInput(StudyFieldsInput):
    file = serializers.FileField(help_text="One DICOM, PNG or JPEG file.")
    study = serializers.IntegerField(required=False, help_text="Attach to this existing study.")


class PatientInput(serializers.ModelSerializer):
    class Meta:
        model = Patient
        fields = ["mrn", "name", "birth_date", "sex"]
        extra_kwargs: dict[str, dict[str, Any]] = {"mrn": {"validators": []}}  # an existing MRN returns that patient


class ReviewInput(serializers.Serializer):
    decision = serializers.ChoiceField(choices=Review.Decision.choices)
    label = serializers.ChoiceField(  # type: ignore[assignment]  # the field, not Field.label
        choices=Label.choices,
        required=False,
        allow_blank=True,
        help_text="Required when correcting; ignored when confirming.",
    )
    comment = serializers.CharField(max_length=4000, required=False, allow_blank=True)
