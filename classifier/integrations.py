"""Rows of the hospital-system integrations: API tokens, idempotency records, webhooks,
the DICOM peers allowed to send to the listener.

Imported by name into ``classifier.models`` so that migrations and the admin see them as part
of the ``classifier`` app. Writes go through ``classifier.services.tokens`` and
``classifier.services.webhooks``; nothing here has behaviour beyond small properties.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

__all__ = [
    "ApiToken",
    "DicomDelivery",
    "DicomDestination",
    "DicomPeer",
    "IdempotencyRecord",
    "Webhook",
    "WebhookDelivery",
]


class ApiToken(models.Model):
    """A credential for one integration (PACS, RIS, EHR), acting as its own service user.

    Only the sha256 of the token is stored: the token is high-entropy random text, so a
    fast hash is enough and lets authentication find the row with one indexed lookup.
    The service user is a member of exactly one role group, so roles.user_can and the
    audit trail treat an integration like a person of that role.
    """

    class Role(models.TextChoices):
        CLINICIAN = "Clinician", "Clinician"
        RADIOLOGIST = "Radiologist", "Radiologist"
        ADMIN = "Admin", "Admin"

    name = models.CharField(max_length=100, help_text="Which system uses this token, e.g. 'PACS router'.")
    role = models.CharField(max_length=16, choices=Role.choices)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="api_token",
        help_text="The dedicated service user the token acts as.",
    )
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=16, editable=False, help_text="First characters, to recognise a token.")
    rate = models.CharField(
        max_length=32, blank=True, help_text="Throttle rate such as '600/min'; blank for the default."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"
        permissions = [("manage_integrations", "Can create and revoke API tokens and see all webhooks")]

    def __str__(self) -> str:
        return f"API token #{self.pk} ({self.name})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class IdempotencyRecord(models.Model):
    """The first response to a POST carrying an ``Idempotency-Key``, replayed on retries.

    The row is inserted in the same transaction as the work it guards, so the unique
    (user, key) constraint makes a concurrent retry wait for the first attempt and then
    replay its committed response; a failed attempt leaves no row behind.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="sha256 of method, path and request content.")
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=255)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique_per_user")]

    def __str__(self) -> str:
        return f"Idempotency record #{self.pk}"


class Webhook(models.Model):
    """A callback URL an integration registered for events; signed with ``secret``."""

    class Event(models.TextChoices):
        PREDICTION_DONE = "prediction.done", "Prediction finished"
        PREDICTION_FAILED = "prediction.failed", "Prediction failed"
        REVIEW_CREATED = "review.created", "Review submitted"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500)
    events = models.JSONField(default=list, help_text="Event names; empty means all events.")
    # Kept in clear: the sender needs it to sign. Shown to the client only at creation.
    secret = models.CharField(max_length=128, editable=False)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Webhook #{self.pk}"

    def wants(self, event: str) -> bool:
        return not self.events or event in self.events


class WebhookDelivery(models.Model):
    """One event for one webhook: the exact body sent and every attempt's outcome."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=32)
    event_id = models.UUIDField(help_text="Stable across retries: receivers deduplicate on it.")
    body = models.TextField(help_text="The raw JSON body, signed as-is on every attempt.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["webhook", "event_id"], name="webhook_delivery_once_per_event")]

    def __str__(self) -> str:
        return f"Webhook delivery #{self.pk} ({self.event}, {self.status})"


class DicomPeer(models.Model):
    """A calling AE title the DICOM listener accepts associations from (a PACS, modality
    or router). Associations from any other title are rejected; changes are audited
    (``classifier.services.dicom``)."""

    ae_title = models.CharField(
        "AE title", max_length=16, unique=True, help_text="The peer's calling AE title (1-16 characters)."
    )
    name = models.CharField(max_length=100, help_text="Which system this is, e.g. 'Radiology PACS'.")
    is_active = models.BooleanField(default=True, help_text="Untick to refuse this peer without deleting it.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["ae_title"]
        verbose_name = "DICOM peer"

    def __str__(self) -> str:
        return f"{self.ae_title} ({self.name})"


class DicomDestination(models.Model):
    """A PACS (C-STORE SCP) the AI results are sent back to, as SR and Secondary Capture."""

    name = models.CharField(max_length=100, help_text="e.g. 'Radiology PACS'.")
    ae_title = models.CharField("AE title", max_length=16, help_text="The PACS's (called) AE title.")
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField()
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "DICOM destination"

    def __str__(self) -> str:
        return f"{self.name} ({self.ae_title}@{self.host}:{self.port})"


class DicomDelivery(models.Model):
    """One result object (SR or Secondary Capture) for one destination: an outbox row.

    Created in the transaction of the outcome it reports (a finished prediction, or a
    review); its UIDs are fixed at creation and shared by every destination, so every
    attempt sends the same object, each PACS stores it once, and WADO-RS serves it.
    """

    class Kind(models.TextChoices):
        SR = "sr", "Structured Report"
        SC = "sc", "Secondary Capture"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    destination = models.ForeignKey(DicomDestination, on_delete=models.CASCADE, related_name="deliveries")
    prediction = models.ForeignKey("classifier.Prediction", on_delete=models.CASCADE, related_name="dicom_deliveries")
    review = models.ForeignKey(
        "classifier.Review", null=True, blank=True, on_delete=models.CASCADE, related_name="dicom_deliveries"
    )
    kind = models.CharField(max_length=2, choices=Kind.choices)
    series_instance_uid = models.CharField(max_length=64)
    sop_instance_uid = models.CharField(max_length=64, help_text="The same object (UID) for every destination.")
    series_number = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_status = models.CharField(max_length=16, blank=True, help_text="The last C-STORE status (hex).")
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "DICOM deliveries"
        constraints = [
            models.UniqueConstraint(fields=["destination", "sop_instance_uid"], name="dicom_delivery_once_per_object")
        ]

    def __str__(self) -> str:
        return f"DICOM delivery #{self.pk} ({self.kind}, {self.status})"
