"""Datasets, training runs and the model registry."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from classifier.findings import cause_validation
from classifier.models import Label


class Dataset(models.Model):
    """A labelled collection registered with ``import_dataset``."""

    class Layout(models.TextChoices):
        FOLDERS = "folders", "DIR/<split>/<LABEL>/files or DIR/<LABEL>/files"
        KERMANY = "kermany", "Kermany pediatric layout"
        COVID_METADATA = "covid-metadata", "COVID metadata CSV"

    name = models.CharField(max_length=128, unique=True)
    layout = models.CharField(max_length=16, choices=Layout.choices)
    source_dir = models.CharField(max_length=500)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class DatasetImport(models.Model):
    """An import of a server-side folder of labelled images, run on the training queue."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    directory = models.CharField(max_length=500)
    layout = models.CharField(max_length=16, choices=Dataset.Layout.choices)
    name = models.CharField(max_length=128, help_text="Dataset the images go to (created when new).")
    default_split = models.CharField(max_length=5, blank=True, default="")
    progress = models.JSONField(default=dict, blank=True, help_text="done, total, added, duplicate, rejected")
    dataset = models.ForeignKey(Dataset, null=True, blank=True, on_delete=models.SET_NULL, related_name="imports")
    error_message = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    claimed_by = models.CharField(max_length=128, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Dataset import #{self.pk} of {self.directory} ({self.status})"


class DatasetImage(models.Model):
    """One labelled image of a dataset, stored under a generated name after validation."""

    class Split(models.TextChoices):
        TRAIN = "train", "Train"
        VAL = "val", "Validation"
        TEST = "test", "Test"
        UNASSIGNED = "", "Unassigned"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="images")
    file = models.FileField(upload_to="datasets/", max_length=255)
    sha256 = models.CharField(max_length=64, db_index=True)
    original_path = models.CharField(max_length=500)
    label = models.CharField(max_length=24, choices=Label.choices)
    patient_key = models.CharField(max_length=128, help_text="Keeps splits patient-disjoint.")
    source = models.CharField(max_length=64, blank=True, help_text="Hospital or collection, for per-source metrics.")
    split = models.CharField(max_length=5, choices=Split.choices, blank=True, default="")
    view_position = models.CharField(max_length=8, blank=True, default="unknown")
    format = models.CharField(max_length=8)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "sha256"], name="dataset_image_unique_content")]

    def __str__(self) -> str:
        return f"Dataset image #{self.pk} ({self.label})"


class ModelVersion(models.Model):
    """An immutable, fully described trained model. One version per name is active."""

    class Status(models.TextChoices):
        CANDIDATE = "candidate", "Candidate"
        ACTIVE = "active", "Active"
        ARCHIVED = "archived", "Archived"
        FAILED = "failed", "Failed"

    name = models.CharField(max_length=64, default="cxr-triage")
    version = models.PositiveIntegerField()
    architecture = models.CharField(max_length=64)
    input_size = models.PositiveIntegerField()
    labels = models.JSONField(help_text="Ordered output classes.")
    preprocess_config = models.JSONField()
    hyperparameters = models.JSONField(default=dict, blank=True)
    data_snapshot = models.JSONField(default=dict, blank=True, help_text="Image ids per split and their hash.")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    metrics = models.JSONField(default=dict, blank=True)
    thresholds = models.JSONField(default=dict, blank=True)
    artifact_dir = models.CharField(max_length=500)
    artifact_key = models.CharField(
        max_length=500,
        blank=True,
        default="",
        help_text="Folder of the artifact's copy in the shared model storage (CXR_STORAGE=s3); "
        "empty: only the local artifact_dir.",
    )
    artifact_sha256 = models.JSONField(default=dict, blank=True, help_text="sha256 of every artifact file.")
    model_card = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.CANDIDATE, db_index=True)
    reviewed_images_used = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="model_version_unique"),
            models.UniqueConstraint(fields=["name"], condition=Q(status="active"), name="one_active_version_per_name"),
        ]
        permissions = [("manage_models", "Can promote, roll back and inspect model versions")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    def cause_validation(self) -> dict[str, dict[str, Any]]:
        """Per patient group, whether the suggested cause is validated (model card rule).

        Recorded in the metrics of versions trained since the rule existed; for older ones
        it follows from their data snapshot and source groups, by the same rule.
        """
        recorded = (self.metrics or {}).get("cause_validation")
        if recorded is not None:
            return dict(recorded)
        groups = ((self.hyperparameters or {}).get("run_spec") or {}).get("balance_groups") or {}
        return cause_validation((self.data_snapshot or {}).get("counts") or {}, groups)


class ModelActivation(models.Model):
    """One change of the active version of a name: the history a rollback walks back along.

    A promotion records the version it replaced; rolling back undoes the latest promotion
    of the active version (``undone_at``) and re-activates the version it replaced, so
    repeated rollbacks walk further back and never forward. A promotion over a failed
    gate carries the gate's result and the written reason for the override.
    """

    class Kind(models.TextChoices):
        PROMOTE = "promote", "Promotion"
        ROLLBACK = "rollback", "Rollback"

    name = models.CharField(max_length=64, db_index=True)
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="activations")
    previous = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.PROMOTE)
    reason = models.TextField(blank=True)
    gate = models.JSONField(default=dict, blank=True, help_text="The gate's result at promotion: promote, reasons.")
    override_reason = models.TextField(blank=True, help_text="Why a version that failed the gate was promoted.")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    undone_at = models.DateTimeField(null=True, blank=True, help_text="When a rollback walked back over it.")

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.version} ({self.created_at:%Y-%m-%d %H:%M})"


class SiteThreshold(models.Model):
    """This deployment's operating threshold for one model version, adopted from its own
    reviewed studies.

    A version's threshold (thresholds.json) was chosen on other hospitals' images, and a
    model's score scale moves between hospitals. An admin may adopt the threshold that met
    the version's target sensitivity on this hospital's reviews (the agreement page's
    evidence, recomputed and stored in ``evidence`` at adoption); from then on the worker
    flags that version's predictions at it and each prediction records which row it used.
    Rows are never edited: adopting again retires the row in force, and returning to the
    artifact's threshold retires it without a successor, so the history stays whole.
    """

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="site_thresholds")
    threshold = models.FloatField(help_text="p(abnormal) at or above this is flagged.")
    artifact_threshold = models.FloatField(help_text="The version's own threshold it replaces.")
    target_sensitivity = models.FloatField()
    evidence = models.JSONField(
        help_text="The reviewed studies it was chosen on: n, n_abnormal, sensitivity and specificity with "
        "Wilson CIs at this threshold and at the artifact's, the latest review counted."
    )
    reason = models.TextField()
    adopted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    adopted_at = models.DateTimeField(default=timezone.now)
    retired_at = models.DateTimeField(null=True, blank=True)
    retired_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    retire_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-adopted_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["version"], condition=Q(retired_at__isnull=True), name="one_site_threshold_per_version"
            ),
            models.CheckConstraint(
                condition=Q(threshold__gte=0, threshold__lte=1), name="site_threshold_is_probability"
            ),
        ]

    def __str__(self) -> str:
        return f"Site threshold {self.threshold:.4f} for {self.version}"

    @property
    def in_force(self) -> bool:
        return self.retired_at is None


class TrainingRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    class Trigger(models.TextChoices):
        MANUAL = "manual", "Manual"
        SCHEDULE = "schedule", "Schedule"
        COMMAND = "command", "Command line"

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.MANUAL)
    name = models.CharField(max_length=64, default="cxr-triage", help_text="Model name the run produces.")
    spec = models.JSONField(default=dict, help_text="Training hyperparameters and preprocessing.")
    datasets = models.ManyToManyField(Dataset, blank=True)
    include_reviews = models.BooleanField(default=True)
    progress = models.JSONField(default=dict, blank=True, help_text="epoch, epochs, loss, metrics, eta_seconds")
    history = models.JSONField(default=dict, blank=True)
    model_version = models.OneToOneField(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="training_run"
    )
    promotion = models.JSONField(default=dict, blank=True, help_text="The gate's decision and reasons.")
    error_message = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    claimed_by = models.CharField(max_length=128, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("start_training", "Can start training runs")]

    def __str__(self) -> str:
        return f"Training run #{self.pk} ({self.status})"


class Evaluation(models.Model):
    """One ``evaluate_model`` run of a version on a folder of labelled images."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="evaluations")
    directory = models.CharField(max_length=500)
    report = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Evaluation #{self.pk} of {self.model_version_id}"
