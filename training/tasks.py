"""Thin Celery tasks for the training queue (run with concurrency 1: one run at a time)."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.CXR["TRAINING_SOFT_TIME_LIMIT"],
    time_limit=settings.CXR["TRAINING_HARD_TIME_LIMIT"],
)
def training_run_task(run_id: int) -> str:
    """Execute a queued training run; a redelivered message for a claimed run does nothing."""
    from training.services.runs import training_run_execute

    run = training_run_execute(run_id=run_id)
    return "skipped" if run is None else run.status


@shared_task(acks_late=True, soft_time_limit=60, time_limit=90)
def retrain_check_task() -> int | None:
    """Periodic: start a run when enough reviewed images have arrived (see retrain_check)."""
    from training.services.runs import retrain_check

    run = retrain_check()
    return run.pk if run else None


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.CXR["TRAINING_SOFT_TIME_LIMIT"],
    time_limit=settings.CXR["TRAINING_HARD_TIME_LIMIT"],
)
def dataset_import_task(import_id: int) -> str:
    """Import a folder of labelled images (training queue); a redelivered message does nothing."""
    from training.services.imports import dataset_import_execute

    job = dataset_import_execute(import_id=import_id)
    return "skipped" if job is None else job.status
