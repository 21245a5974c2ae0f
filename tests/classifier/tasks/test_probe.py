"""A real worker subprocess, the configured broker and database, and exactly-once completion."""

from __future__ import annotations

import pytest

from classifier.models import QueueProbe
from classifier.tasks.probe import queue_probe_task
from tests.conftest import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow]


def test_worker_runs_task_that_writes_to_the_database(celery_worker_proc) -> None:
    worker = celery_worker_proc()
    probe = QueueProbe.objects.create()
    queue_probe_task.delay(probe.pk)
    wait_for(lambda: QueueProbe.objects.get(pk=probe.pk).status == "done", 60, message=worker.output)
    assert QueueProbe.objects.get(pk=probe.pk).executions == 1


def test_killed_worker_mid_task_still_completes_exactly_once(celery_worker_proc) -> None:
    worker = celery_worker_proc()
    probe = QueueProbe.objects.create(hold_seconds=4)
    queue_probe_task.delay(probe.pk)
    wait_for(lambda: QueueProbe.objects.get(pk=probe.pk).status == "running", 60, message=worker.output)
    first_claim = QueueProbe.objects.get(pk=probe.pk).claimed_by
    worker.kill_children()  # the process running the task dies; the message is requeued (acks_late)
    # the worker replaces its child; the redelivered message reclaims the row of the dead process
    wait_for(lambda: QueueProbe.objects.get(pk=probe.pk).status == "done", 90, message=worker.output)
    probe.refresh_from_db()
    assert probe.executions == 1
    assert probe.attempts == 2
    assert probe.claimed_by != first_claim
    # a late duplicate of the message changes nothing
    queue_probe_task.delay(probe.pk)
    wait_for(lambda: "'skipped'" in worker.output(), 60, interval=0.2, message=worker.output)
    probe.refresh_from_db()
    assert probe.executions == 1
