"""An unreachable broker: each upload is kept for the sweeper with one log line; the
traceback is logged once per outage, not once per upload."""

from __future__ import annotations

import logging

import pytest

from classifier.models import Prediction
from classifier.services.studies import StudyFields
from classifier.services.uploads import image_upload
from tests.conftest import synthetic_png

pytestmark = pytest.mark.django_db


@pytest.fixture
def unreachable_broker():
    """The Celery app sends to a closed port (a real connection refusal), then is restored."""
    from classifier.services.broker import broker_send_succeeded
    from cxrsite.celery import app

    broker_send_succeeded()  # no outage left over from an earlier test in this process

    def point_at(url: str, write_url: str | None) -> None:
        # Drop the cached pools (not close them: kombu's registry hands the same producer
        # pool back for the same URL, so the original one must stay usable).
        app._pool = None
        app.amqp._producer_pool = None
        app.conf.broker_url, app.conf.broker_write_url = url, write_url

    saved = app.conf.broker_url, app.conf.broker_write_url
    point_at("redis://127.0.0.1:1/0", "redis://127.0.0.1:1/0")
    yield app
    point_at(*saved)


def test_one_traceback_per_outage_and_one_line_per_upload(
    unreachable_broker, role_users, caplog, django_capture_on_commit_callbacks
) -> None:
    with caplog.at_level(logging.WARNING):
        for n in range(3):
            with django_capture_on_commit_callbacks(execute=True):
                outcome = image_upload(
                    data=synthetic_png(96, seed=n),
                    filename=f"{n}.png",
                    uploaded_by=role_users["Clinician"],
                    fields=StudyFields(mrn=f"B-{n}", accession_number=f"B-{n}"),
                )
            assert outcome.ok, outcome.error_message
    about = [r for r in caplog.records if "broker unavailable" in r.getMessage()]
    assert len(about) == 3
    assert sum(r.exc_info is not None for r in about) == 1
    assert all("\n" not in r.getMessage() for r in about)
    assert Prediction.objects.filter(status="pending").count() == 3  # kept for the sweeper
