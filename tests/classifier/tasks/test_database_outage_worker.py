"""The database goes away under a working inference worker: nothing is lost or done twice.

The worker reaches PostgreSQL through a proxy the test cuts (``tests.faults``), so its
connections die mid-batch and new ones are refused, while uploads go on through the
web's own connection. After the database comes back every upload has exactly one
prediction, done once, with its heatmap, by the worker's retries and the sweeper.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings

from classifier.models import Image, Prediction
from classifier.services.predictions import prediction_sweep
from classifier.services.studies import StudyFields
from classifier.services.uploads import image_upload
from tests.conftest import synthetic_png, wait_for
from tests.faults import TcpProxy

pytestmark = [pytest.mark.worker, pytest.mark.slow]


@pytest.fixture
def database_proxy(worker_env) -> Iterator[TcpProxy]:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        pytest.skip("the fault is injected between the worker and PostgreSQL")
    proxy = TcpProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)))
    yield proxy
    proxy.close()


def _through(url: str, port: int) -> str:
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{credentials}@127.0.0.1:{port}"))


def _upload(user, index: int):
    outcome = image_upload(
        data=synthetic_png(128, seed=100 + index),
        filename=f"chest{index}.png",
        uploaded_by=user,
        fields=StudyFields(mrn=f"OUT-{index}", accession_number=f"OUT-A{index}"),
    )
    assert outcome.ok, outcome.error_message
    return outcome.prediction.pk


def _all_done(pks: list[int]) -> bool:
    prediction_sweep()  # the beat's periodic sweep, run by the test at its own pace
    return Prediction.objects.filter(pk__in=pks, status=Prediction.Status.DONE).count() == len(pks)


def test_a_database_outage_under_a_busy_worker_loses_and_duplicates_nothing(
    celery_worker_proc, worker_env, database_proxy, active_tiny_model, role_users, monkeypatch
) -> None:
    monkeypatch.setitem(settings.CXR, "SWEEP_INTERVAL_SECONDS", 2)  # pending this long = lost message
    worker = celery_worker_proc(DATABASE_URL=_through(worker_env["DATABASE_URL"], database_proxy.port))
    user = role_users["Clinician"]
    warm = _upload(user, 0)
    wait_for(lambda: _all_done([warm]), 120, interval=0.5, message=worker.output)

    before = [_upload(user, i) for i in range(1, 7)]  # in flight when the database goes
    time.sleep(0.3)
    with database_proxy.outage():
        during = [_upload(user, i) for i in range(7, 13)]  # accepted while the worker cannot reach it
        time.sleep(4)
        assert database_proxy.refused > 0, "the worker did not try its database during the outage"
    pks = [warm, *before, *during]
    wait_for(lambda: _all_done(pks), 240, interval=2, message=worker.output)
    assert worker.proc.poll() is None, "the worker died with its database"

    predictions = list(Prediction.objects.filter(image__in=Image.objects.filter(predictions__pk__in=pks)))
    assert len(predictions) == len(pks), "an upload gained a second prediction"  # 0 duplicated
    assert {p.pk for p in predictions} == set(pks)  # 0 lost
    for prediction in predictions:
        assert prediction.status == Prediction.Status.DONE and prediction.finished_at is not None
        assert prediction.heatmap and prediction.heatmap.storage.exists(prediction.heatmap.name)
