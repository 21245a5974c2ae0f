"""The clinical domain: patients, studies, images, predictions, reviews, audit events.

Rows identify patients; files live under generated names. Nothing here imports
TensorFlow or the imaging package.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

# The integration rows (tokens, idempotency records, webhooks) are defined in their own
# module and exported here, so the app's models module names every model of the app.
from classifier.integrations import (
    ApiToken,
    DicomDelivery,
    DicomDestination,
    DicomPeer,
    IdempotencyRecord,
    Webhook,
    WebhookDelivery,
)

__all__ = [
    "SEX_CHOICES",
    "ApiToken",
    "AuditEvent",
    "DicomDelivery",
    "DicomDestination",
    "DicomPeer",
    "IdempotencyRecord",
    "Image",
    "Label",
    "Patient",
    "Prediction",
    "QueueProbe",
    "Review",
    "Study",
    "Webhook",
    "WebhookDelivery",
]


class Label(models.TextChoices):
    """Ground-truth vocabulary. PNEUMONIA (cause unknown) is a label, never a model output."""

    NORMAL = "NORMAL", "Normal"
    PNEUMONIA_BACTERIAL = "PNEUMONIA_BACTERIAL", "Bacterial pneumonia"
    PNEUMONIA_VIRAL = "PNEUMONIA_VIRAL", "Viral pneumonia"
    COVID19 = "COVID19", "COVID-19"
    PNEUMONIA = "PNEUMONIA", "Pneumonia (cause unknown)"


SEX_CHOICES = [("F", "Female"), ("M", "Male"), ("O", "Other"), ("U", "Unknown")]


class Patient(models.Model):
    mrn = models.CharField("MRN", max_length=64, unique=True, help_text="Site patient identifier.")
    name = models.CharField(max_length=200, blank=True)
    birth_date = models.DateField(null=True, blank=True)
    sex = models.CharField(max_length=1, blank=True, choices=SEX_CHOICES)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["mrn"]

    def __str__(self) -> str:
        # The primary key, not the MRN or name: str() ends up in logs and admin messages.
        return f"Patient #{self.pk}"


class Study(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "AI result ready"
        FAILED = "failed", "Failed"
        REVIEWED = "reviewed", "Reviewed"

    class View(models.TextChoices):
        PA = "PA", "PA"
        AP = "AP", "AP"
        LL = "LL", "Lateral"
        UNKNOWN = "unknown", "Unknown"

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="studies")
    accession_number = models.CharField(max_length=64, unique=True)
    study_instance_uid = models.CharField(max_length=64, blank=True, default="")
    modality = models.CharField(max_length=16, blank=True, default="CR")
    view_position = models.CharField(max_length=8, choices=View.choices, default=View.UNKNOWN)
    study_date = models.DateField(null=True, blank=True)
    requesting_clinician = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="requested_studies"
    )
    clinical_notes = models.TextField(blank=True, help_text="Symptoms and the clinical question.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    priority = models.FloatField(
        default=0.0, db_index=True, help_text="Triage score; higher is read first (see classifier.triage)."
    )
    # The current result, stored by classifier.services.studies.study_refresh from the
    # images' latest predictions (the rule: classifier.selectors.studies
    # .study_annotate_current_result), so the worklist filters on a column, not on a
    # correlated subquery per study. current_flag: True if any image's latest result is
    # flagged, False if none is but one is unflagged, None while no image has a result.
    current_flag = models.BooleanField(null=True, blank=True, editable=False)
    current_p_abnormal = models.FloatField(null=True, blank=True, editable=False)
    # The priority without its waiting term (classifier.triage.triage_base); NULL: not
    # prioritised (reviewed, or no image), priority 0. The sweeper adds the waiting term.
    triage_base = models.FloatField(null=True, blank=True, editable=False)
    # Whether the study has an image (stored by study_refresh, which every upload runs):
    # the worklist lists only those, and counting them must not join every image.
    has_images = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "studies"
        ordering = ["-priority", "created_at"]
        indexes = [
            # The worklist filtered by flag, in reading order.
            models.Index(fields=["current_flag", "-priority", "created_at", "id"], name="study_flag_reading_order"),
            # The sweeper's check for unreviewed rows never prioritised (see
            # classifier.selectors.studies.study_ids_to_resync): reviewed rows, which
            # accumulate, stay out of it.
            models.Index(
                fields=["id"],
                condition=Q(triage_base__isnull=True) & ~Q(status="reviewed"),
                name="study_unprioritised",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["study_instance_uid"], condition=~Q(study_instance_uid=""), name="study_uid_unique_when_present"
            ),
        ]
        permissions = [("upload_study", "Can upload studies and images")]

    def __str__(self) -> str:
        return f"Study #{self.pk}"

    # The words for a lateral in DICOM ViewPosition and the datasets' metadata.
    LATERAL_CODES = frozenset({"LL", "RL", "L", "LAT", "LATERAL"})

    @classmethod
    def view_code(cls, raw: str | None) -> str:
        """The one mapping from a recorded view (DICOM ViewPosition, a dataset CSV's "AP
        Supine") to a ``View`` value: its first word, laterals as LL, else "unknown"."""
        words = (raw or "").split()
        word = words[0].upper() if words else ""
        if word in cls.LATERAL_CODES:
            return cls.View.LL
        return word if word in (cls.View.PA, cls.View.AP) else cls.View.UNKNOWN


class Image(models.Model):
    class Format(models.TextChoices):
        DICOM = "DICOM", "DICOM"
        PNG = "PNG", "PNG"
        JPEG = "JPEG", "JPEG"

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="images")
    # Stored by classifier.services.uploads under a generated name (classifier.storage);
    # the client's file name is kept only in ``original_filename``.
    file = models.FileField(upload_to="images/", max_length=255)
    sha256 = models.CharField(max_length=64, db_index=True)
    size_bytes = models.PositiveBigIntegerField()
    original_filename = models.CharField(max_length=255, blank=True)
    format = models.CharField(max_length=8, choices=Format.choices)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    sop_instance_uid = models.CharField(max_length=64, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    # The film for the viewer: original values (DICOM modality-LUT output) downscaled to at most
    # 1536 px, zlib uint16, written by the first worker that decodes the image
    # (classifier.imaging.display); film_meta describes it (size, scale, window presets).
    film = models.FileField(upload_to="films/", blank=True, max_length=255)
    film_meta = models.JSONField(default=dict, blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="uploaded_images"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["sop_instance_uid"], condition=~Q(sop_instance_uid=""), name="image_sop_uid_unique_when_present"
            ),
            models.UniqueConstraint(fields=["study", "sha256"], name="image_unique_content_per_study"),
        ]

    def __str__(self) -> str:
        return f"Image #{self.pk}"


class Prediction(models.Model):
    """One run of one model version on one image. Re-runs add rows; rows are never reused."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="predictions")
    # Set when a worker claims the row: the version live at that moment produced the result.
    model_version = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="predictions"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    probabilities = models.JSONField(default=dict, blank=True)
    label = models.CharField(max_length=24, blank=True, choices=Label.choices)
    p_abnormal = models.FloatField(null=True, blank=True)
    flag = models.BooleanField(null=True, blank=True, help_text="p_abnormal >= threshold.")
    threshold = models.FloatField(null=True, blank=True)
    thresholds = models.JSONField(default=dict, blank=True, help_text="All thresholds in force.")
    # Set when this deployment's own threshold for the version (adopted from its reviews)
    # produced ``threshold`` and ``flag`` instead of the artifact's.
    site_threshold = models.ForeignKey(
        "training.SiteThreshold", null=True, blank=True, on_delete=models.PROTECT, related_name="predictions"
    )
    runtime = models.CharField(max_length=16, blank=True)
    heatmap = models.FileField(upload_to="heatmaps/", blank=True, max_length=255)
    display = models.FileField(
        upload_to="heatmaps/",
        blank=True,
        max_length=255,
        help_text="The preprocessed image the model saw, as PNG, for the viewer.",
    )
    heatmap_raw = models.FileField(upload_to="heatmaps/", blank=True, max_length=255)
    heatmap_rgba = models.FileField(
        upload_to="heatmaps/",
        blank=True,
        max_length=255,
        help_text="The heatmap alone (transparent) over the input's content region, to register onto the film.",
    )
    timings_ms = models.JSONField(default=dict, blank=True)
    geometry = models.JSONField(
        default=dict,
        blank=True,
        help_text="Where the model input came from: crop and content boxes (heatmap registration).",
    )
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    claimed_by = models.CharField(max_length=128, blank=True, help_text="host:pid of the worker process.")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "created_at"]),
            # An image's current result (its latest prediction) without a sort: the worklist
            # asks it per image; 100,000 studies: worklist 2.2 s -> see README "Scale".
            models.Index(fields=["image", "-created_at", "-id"], name="prediction_image_latest"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(p_abnormal__isnull=True) | Q(p_abnormal__gte=0, p_abnormal__lte=1),
                name="prediction_p_abnormal_is_probability",
            ),
        ]

    def __str__(self) -> str:
        return f"Prediction #{self.pk} ({self.status})"

    @property
    def threshold_source(self) -> str:
        """Whose threshold ``flag`` compared against: "site" (this hospital's, adopted from
        its reviews) or "model" (the version's own, chosen on other hospitals' images)."""
        return "site" if self.site_threshold_id else "model"


class Review(models.Model):
    """A radiologist's read of a prediction. History is kept; the latest review is the label."""

    class Decision(models.TextChoices):
        CONFIRM = "confirm", "Confirm"
        CORRECT = "correct", "Correct"

    prediction = models.ForeignKey(Prediction, on_delete=models.PROTECT, related_name="reviews")
    image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="reviews")
    radiologist = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews")
    decision = models.CharField(max_length=8, choices=Decision.choices)
    label = models.CharField(
        max_length=24, choices=Label.choices, help_text="The radiologist's label (equal to the AI label on confirm)."
    )
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("review_prediction", "Can confirm or correct predictions")]

    def __str__(self) -> str:
        return f"Review #{self.pk} ({self.decision})"


class AuditEvent(models.Model):
    """Who did what to which object, when and from where. Append-only."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_username = models.CharField(max_length=150, blank=True)  # survives user deletion
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_username or '-'} {self.action}"


class QueueProbe(models.Model):
    """A round trip web -> broker -> worker -> database, used by ``check_queue``.

    Processed with the same claim discipline as predictions, so it also proves that a
    task whose worker dies mid-way completes exactly once.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    hold_seconds = models.FloatField(default=0.0)
    executions = models.PositiveIntegerField(default=0, help_text="Completed executions; must end at 1.")
    attempts = models.PositiveIntegerField(default=0)
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    claimed_by = models.CharField(max_length=128, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Queue probe #{self.pk} ({self.status})"
