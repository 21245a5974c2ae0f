"""Reads for the Prometheus exporter: what the database and the broker say right now.

Counts come from the rows themselves, so every web process reports the same values and
nothing is lost when a worker restarts: predictions by status, failures by stage,
finished predictions' latency (end to end, and per stage from their recorded timings)
as cumulative histograms, the webhook and DICOM delivery backlogs, and the broker's
queue depths.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, F, FloatField, Min, Q, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.utils import timezone

from classifier.imaging import ImagingError
from classifier.integrations import DicomDelivery, WebhookDelivery
from classifier.models import Prediction

# Seconds; a prediction's stages take milliseconds, end to end includes the queue wait.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
STAGES = ("decode", "preprocess", "model", "heatmap", "encode", "store")
# Which stage a failure code belongs to; the imaging codes are all the decode stage.
FAILURE_STAGE = {
    "file_missing": "storage",
    "no_active_model": "model",
    "model_error": "model",
    "model_integrity": "model",
    "internal_error": "worker",
    "worker_lost": "worker",
}


def _imaging_codes(cls: type[ImagingError] = ImagingError) -> set[str]:
    codes = {cls.code}
    for sub in cls.__subclasses__():
        codes |= _imaging_codes(sub)
    return codes


def failure_stage(code: str) -> str:
    if code in FAILURE_STAGE:
        return FAILURE_STAGE[code]
    return "decode" if code in _imaging_codes() else "other"


@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts (``le`` -> count), the sum and the count of observations."""

    buckets: list[tuple[float, int]]
    total: float
    count: int


def prediction_status_counts() -> dict[str, int]:
    counts = dict.fromkeys(Prediction.Status.values, 0)
    for row in Prediction.objects.values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts


def prediction_failures_by_stage() -> dict[tuple[str, str], int]:
    """(stage, code) -> failed predictions."""
    rows = Prediction.objects.filter(status=Prediction.Status.FAILED).values("error_code").annotate(n=Count("id"))
    return {(failure_stage(row["error_code"]), row["error_code"] or "unknown"): row["n"] for row in rows}


def _histogram(queryset: object, expression: object, scale: float) -> Histogram:
    """One aggregate query: a count per bucket bound, the sum and the count."""
    aggregates = {f"b{i}": Count("id", filter=Q(value__lte=bound * scale)) for i, bound in enumerate(BUCKETS)}
    row = (
        queryset.annotate(value=expression)  # type: ignore[attr-defined]
        .filter(value__isnull=False)
        .aggregate(**aggregates, total=Sum("value"), count=Count("id"))
    )
    return Histogram(
        buckets=[(bound, row[f"b{i}"]) for i, bound in enumerate(BUCKETS)],
        total=float(row["total"] or 0.0) / scale,
        count=row["count"],
    )


def prediction_stage_latency() -> dict[str, Histogram]:
    """Per stage of finished predictions, from ``timings_ms`` (milliseconds)."""
    done = Prediction.objects.filter(status=Prediction.Status.DONE)
    return {
        stage: _histogram(done, Cast(KeyTextTransform(stage, "timings_ms"), FloatField()), 1000.0) for stage in STAGES
    }


def prediction_end_to_end_latency() -> Histogram:
    """Upload to result (queue wait included), over predictions that finished."""
    done = Prediction.objects.filter(status=Prediction.Status.DONE, finished_at__isnull=False)
    rows = done.annotate(seconds=F("finished_at") - F("created_at")).values_list("seconds", flat=True)
    values = [delta.total_seconds() for delta in rows if delta is not None]
    return Histogram(
        buckets=[(bound, sum(1 for v in values if v <= bound)) for bound in BUCKETS],
        total=sum(values),
        count=len(values),
    )


def webhook_backlog() -> tuple[int, float]:
    """Pending deliveries and the age in seconds of the oldest one (0 when none)."""
    pending = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING)
    row = pending.aggregate(n=Count("id"), oldest=Min("created_at"))
    age = (timezone.now() - row["oldest"]).total_seconds() if row["oldest"] else 0.0
    return row["n"], age


def dicom_delivery_backlog() -> int:
    """SR and Secondary Capture objects not yet stored by their PACS."""
    return DicomDelivery.objects.filter(status=DicomDelivery.Status.PENDING).count()


def broker_queue_depths(queues: list[str], timeout: float = 2.0) -> dict[str, int] | None:
    """Messages waiting per queue, None when the broker cannot be reached."""
    from cxrsite.celery import app

    try:
        with app.connection_for_read(connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
            channel = connection.default_channel
            return {name: _depth(channel, name) for name in queues}
    except Exception:  # unreachable broker
        return None


def _depth(channel: object, name: str) -> int:
    from kombu.exceptions import ChannelError

    try:
        return int(channel.queue_declare(queue=name, passive=True).message_count)  # type: ignore[attr-defined]
    except ChannelError:  # never declared (Redis keeps no empty list): nothing waits
        return 0
