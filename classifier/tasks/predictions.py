"""Prediction tasks: ids in, classifier.services.predictions does the work.

Task names are explicit and stable: the beat schedule (a database row) and messages
already in the broker refer to them by name.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import OperationalError

log = logging.getLogger(__name__)


@shared_task(
    name="classifier.tasks.prediction_run_task",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OSError, OperationalError),
    retry_backoff=2,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=settings.CXR["INFERENCE_MAX_RETRIES"],
    soft_time_limit=settings.CXR["INFERENCE_SOFT_TIME_LIMIT"],
    time_limit=settings.CXR["INFERENCE_HARD_TIME_LIMIT"],
)
def prediction_run_task(self, prediction_id: int) -> list[int]:
    """Run one prediction (and any batch-mates). A transient error releases and retries."""
    from classifier.services.predictions import prediction_release, prediction_run

    try:
        return prediction_run(prediction_id=prediction_id)
    except (OSError, OperationalError):
        prediction_release(prediction_id=prediction_id)
        raise


@shared_task(name="classifier.tasks.prediction_sweep_task", acks_late=True, soft_time_limit=120, time_limit=180)
def prediction_sweep_task() -> dict[str, int]:
    """Periodic: re-send lost work, reclaim work of dead workers, refresh priorities."""
    from classifier.services.predictions import prediction_sweep

    return prediction_sweep()


@shared_task(name="classifier.tasks.media_cleanup_task", acks_late=True, soft_time_limit=1800, time_limit=1900)
def media_cleanup_task() -> dict[str, int]:
    """Periodic (hourly): remove media files no row references, after the grace period."""
    from classifier.services.media_cleanup import media_orphans_sweep

    return media_orphans_sweep()
