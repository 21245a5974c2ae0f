"""Thin Celery tasks: ids in, services do the work (see classifier.predictions)."""
from __future__ import annotations

import logging
import time

from celery import shared_task
from django.conf import settings
from django.db import OperationalError, transaction
from django.utils import timezone

from classifier import worker  # noqa: F401,E402 - connects the pool-process warm-up

log = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True,
             autoretry_for=(OSError, OperationalError), retry_backoff=2, retry_backoff_max=120,
             retry_jitter=True, max_retries=settings.CXR["INFERENCE_MAX_RETRIES"],
             soft_time_limit=settings.CXR["INFERENCE_SOFT_TIME_LIMIT"],
             time_limit=settings.CXR["INFERENCE_HARD_TIME_LIMIT"])
def prediction_run_task(self, prediction_id: int) -> list[int]:  # noqa: ANN001 - celery's bound task
    """Run one prediction (and any batch-mates). A transient error releases and retries."""
    from classifier.predictions import prediction_release, prediction_run

    try:
        return prediction_run(prediction_id=prediction_id)
    except (OSError, OperationalError):
        prediction_release(prediction_id=prediction_id)
        raise


@shared_task(acks_late=True, soft_time_limit=120, time_limit=180)
def prediction_sweep_task() -> dict[str, int]:
    """Periodic: re-send lost work, reclaim work of dead workers, refresh priorities."""
    from classifier.predictions import prediction_sweep

    return prediction_sweep()


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, soft_time_limit=600, time_limit=660)
def queue_probe_task(self, probe_id: int) -> str:  # noqa: ANN001
    """Hold for the probe's hold_seconds, then record one execution, exactly once."""
    from classifier import claims
    from classifier.models import QueueProbe

    token = claims.claim(QueueProbe, probe_id, pending=QueueProbe.Status.PENDING, running=QueueProbe.Status.RUNNING,
                         lease_seconds=660)
    if token is None:
        return "skipped"
    hold = QueueProbe.objects.values_list("hold_seconds", flat=True).get(pk=probe_id)
    time.sleep(hold)
    with transaction.atomic():
        from django.db.models import F

        claims.complete(QueueProbe, probe_id, token, running=QueueProbe.Status.RUNNING,
                        status=QueueProbe.Status.DONE, executions=F("executions") + 1, finished_at=timezone.now())
    return "done"
