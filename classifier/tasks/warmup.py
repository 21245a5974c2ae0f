"""Worker process set-up: inference pool processes warm up the active model before work.

Without it the first image after a (re)start waits seconds for TensorFlow to load and
Grad-CAM to be traced. Warm-up runs after fork, in the pool process (TF state does not
survive fork), and only in workers consuming the ``inference`` queue.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import celeryd_after_setup, worker_process_init
from django.conf import settings

log = logging.getLogger(__name__)
_CONSUMES_INFERENCE = {"value": False}


@celeryd_after_setup.connect
def _note_queues(sender: Any, instance: Any, **kwargs: Any) -> None:
    queues = instance.app.amqp.queues.consume_from or instance.app.amqp.queues
    _CONSUMES_INFERENCE["value"] = "inference" in queues


@worker_process_init.connect
def _warm_up(**kwargs: Any) -> None:
    if not (_CONSUMES_INFERENCE["value"] and settings.CXR["WORKER_WARM_UP"]):
        return
    from django.db import connections

    from classifier.artifact_store import artifact_local_dir
    from classifier.inference.pipeline import get_pipeline
    from training.registry import active_version

    try:
        version = active_version()
        if version is not None:
            get_pipeline(
                artifact_local_dir(version),
                runtime=settings.CXR["INFERENCE_RUNTIME"],
                threads=settings.CXR["INFERENCE_THREADS"],
            ).warm_up()
            log.info("warmed up %s for inference", version)
    except Exception:  # a failed warm-up only costs latency; the task path reports real errors
        log.exception("model warm-up failed")
    finally:
        connections.close_all()
