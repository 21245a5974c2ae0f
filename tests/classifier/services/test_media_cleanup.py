"""Orphan media files are removed after the grace period; referenced and young ones stay."""

from __future__ import annotations

import logging
import os
import time

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from classifier.services.media_cleanup import media_orphans_sweep
from classifier.services.studies import StudyFields
from classifier.services.uploads import image_upload
from tests.conftest import synthetic_png

pytestmark = pytest.mark.django_db


def _age(name: str, hours: float) -> None:
    path = default_storage.path(name)
    old = time.time() - hours * 3600
    os.utime(path, (old, old))


def test_unreferenced_files_past_the_grace_period_are_removed_and_counted(role_users, caplog) -> None:
    outcome = image_upload(
        data=synthetic_png(96),
        filename="kept.png",
        uploaded_by=role_users["Clinician"],
        fields=StudyFields(mrn="M-ORPH", accession_number="A-ORPH"),
    )
    kept = outcome.image.file.name
    _age(kept, 48)  # old, but its row references it
    rolled_back = default_storage.save("images/ab/rolled-back-upload.png", ContentFile(b"x" * 10))
    killed_batch = default_storage.save("heatmaps/cd/killed-batch.npy", ContentFile(b"y" * 20))
    in_flight = default_storage.save("heatmaps/ef/being-written.png", ContentFile(b"z"))
    _age(rolled_back, 25)
    _age(killed_batch, 30)
    _age(in_flight, 0.1)
    with caplog.at_level(logging.INFO, logger="classifier.services.media_cleanup"):
        counts = media_orphans_sweep()
    # Other tests' rolled-back uploads may share the media root; they are all within the grace.
    assert counts["removed"] == 2 and counts["bytes"] == 30 and counts["within_grace"] >= 1
    assert default_storage.exists(kept) and default_storage.exists(in_flight)
    assert not default_storage.exists(rolled_back) and not default_storage.exists(killed_batch)
    assert "removed 2 orphan files" in caplog.text


def test_the_cleanup_is_in_the_beat_schedule_on_the_webhooks_queue() -> None:
    from django_celery_beat.models import PeriodicTask

    from cxrsite.celery import app

    task = PeriodicTask.objects.get(task="classifier.tasks.media_cleanup_task")
    assert task.interval.every == 1 and task.interval.period == "hours"
    assert app.amqp.router.route({}, "classifier.tasks.media_cleanup_task")["queue"].name == "webhooks"
