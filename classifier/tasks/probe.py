"""The queue probe task of ``check_queue``: one claimed, exactly-once execution."""

from __future__ import annotations

import time

from celery import shared_task
from django.db import transaction
from django.utils import timezone


@shared_task(
    name="classifier.tasks.queue_probe_task",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=600,
    time_limit=660,
)
def queue_probe_task(self, probe_id: int) -> str:
    """Hold for the probe's hold_seconds, then record one execution, exactly once."""
    from classifier import claims
    from classifier.models import QueueProbe

    token = claims.claim(
        QueueProbe, probe_id, pending=QueueProbe.Status.PENDING, running=QueueProbe.Status.RUNNING, lease_seconds=660
    )
    if token is None:
        return "skipped"
    hold = QueueProbe.objects.values_list("hold_seconds", flat=True).get(pk=probe_id)
    time.sleep(hold)
    with transaction.atomic():
        from django.db.models import F

        claims.complete(
            QueueProbe,
            probe_id,
            token,
            running=QueueProbe.Status.RUNNING,
            status=QueueProbe.Status.DONE,
            executions=F("executions") + 1,
            finished_at=timezone.now(),
        )
    return "done"
