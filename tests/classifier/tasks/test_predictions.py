"""Upload -> real broker -> real worker -> stored prediction with heatmap, and its failure modes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.conf import settings

from classifier.claims import claimant_is_dead
from classifier.models import Prediction, Study
from classifier.services.predictions import prediction_sweep
from classifier.services.studies import StudyFields
from classifier.services.uploads import image_upload
from tests.conftest import synthetic_png, wait_for
from training import registry

pytestmark = [pytest.mark.worker, pytest.mark.slow]


def _upload(user, data: bytes, accession: str = "ACC1", name: str = "chest.png"):
    return image_upload(
        data=data, filename=name, uploaded_by=user, fields=StudyFields(mrn="MRN1", accession_number=accession)
    )


def _done(pk: int) -> bool:
    return Prediction.objects.get(pk=pk).status in {"done", "failed"}


def test_upload_becomes_a_done_prediction_with_heatmap(celery_worker_proc, active_tiny_model, role_users) -> None:
    worker = celery_worker_proc()
    outcome = _upload(role_users["Clinician"], synthetic_png(128))
    assert outcome.ok, outcome.error_message
    wait_for(lambda: _done(outcome.prediction.pk), 120, message=worker.output)
    prediction = Prediction.objects.get(pk=outcome.prediction.pk)
    assert prediction.status == "done", prediction.error_message
    assert prediction.model_version_id == active_tiny_model.pk
    assert abs(sum(prediction.probabilities.values()) - 1) < 1e-4
    assert prediction.flag == (prediction.p_abnormal >= prediction.threshold)
    assert set(prediction.timings_ms) >= {"decode", "preprocess", "model", "heatmap", "total"}
    with prediction.heatmap.open("rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    with prediction.heatmap_raw.open("rb") as handle:
        raw = np.load(io.BytesIO(handle.read()))
    assert raw.ndim == 2 and raw.min() >= 0 and raw.max() <= 1
    assert Study.objects.get(pk=prediction.image.study_id).status == "done"


def test_corrupt_file_ends_failed_with_a_readable_reason(celery_worker_proc, active_tiny_model, role_users) -> None:
    worker = celery_worker_proc()
    good = synthetic_png(128, seed=3)
    # A valid PNG header and IHDR with the image data cut off: passes upload checks, fails to decode.
    outcome = _upload(role_users["Clinician"], good[:60], name="cut.png")
    assert outcome.ok, outcome.error_message
    wait_for(lambda: _done(outcome.prediction.pk), 120, message=worker.output)
    prediction = Prediction.objects.get(pk=outcome.prediction.pk)
    assert prediction.status == "failed"
    assert prediction.error_code and prediction.error_message.endswith(".")


def test_promotion_between_two_tasks_is_picked_up_without_restart(
    celery_worker_proc, tiny_artifacts, active_tiny_model, role_users
) -> None:
    worker = celery_worker_proc()
    first = _upload(role_users["Clinician"], synthetic_png(128, seed=4), accession="A1")
    wait_for(lambda: _done(first.prediction.pk), 120, message=worker.output)
    newer = registry.version_activate(version=registry.version_register(source_dir=tiny_artifacts[1]))
    second = _upload(role_users["Clinician"], synthetic_png(128, seed=5), accession="A2")
    wait_for(lambda: _done(second.prediction.pk), 120, message=worker.output)
    assert Prediction.objects.get(pk=first.prediction.pk).model_version_id == active_tiny_model.pk
    assert Prediction.objects.get(pk=second.prediction.pk).model_version_id == newer.pk


def test_worker_killed_mid_prediction_completes_exactly_once(celery_worker_proc, active_tiny_model, role_users) -> None:
    """SIGKILL the whole worker while a prediction runs; a new worker plus the sweeper finish it once."""
    worker = celery_worker_proc()
    big = synthetic_png(4000, seed=6)  # a 16-megapixel image: a decode long enough to be caught running
    outcome = _upload(role_users["Clinician"], big)
    pk = outcome.prediction.pk
    wait_for(lambda: Prediction.objects.get(pk=pk).status != "pending", 120, interval=0.002, message=worker.output)
    worker.kill()
    running = Prediction.objects.get(pk=pk)
    assert running.status == "running", "the prediction finished before the kill"
    # SIGKILL is delivered at once but the pool process takes a moment to disappear.
    wait_for(lambda: claimant_is_dead(running.claimed_by), 10, message=lambda: f"{running.claimed_by} still alive")
    # The message stays unacknowledged in Redis until the visibility timeout (hours); the
    # sweeper sees that the claiming process is dead and puts the row back in the queue.
    assert prediction_sweep()["reclaimed"] == 1
    fresh = celery_worker_proc()
    wait_for(lambda: _done(pk), 120, message=fresh.output)
    prediction = Prediction.objects.get(pk=pk)
    assert prediction.status == "done"
    assert prediction.attempts == 2
    assert Prediction.objects.filter(image=prediction.image).count() == 1


@pytest.fixture
def redis_broker_outage():
    """Stop the test Redis for the duration of a block, then start it again."""
    import contextlib
    import os
    import subprocess
    import time

    if (
        not settings.CELERY_BROKER_URL.startswith("redis://127.0.0.1:6379")
        or os.environ.get("CXR_TEST_FLUSH_BROKER") != "1"
    ):
        pytest.skip("needs the test script's own local Redis")

    @contextlib.contextmanager
    def outage():
        subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], capture_output=True, timeout=20)
        try:
            yield
        finally:
            subprocess.run(
                [
                    "redis-server",
                    "--daemonize",
                    "yes",
                    "--bind",
                    "127.0.0.1",
                    "-::1",
                    "--port",
                    "6379",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    "/var/lib/redis",
                    "--logfile",
                    "/var/log/redis/ci.log",
                ],
                check=True,
                timeout=20,
            )
            for _ in range(100):
                if (
                    subprocess.run(["redis-cli", "-p", "6379", "ping"], capture_output=True, text=True).stdout.strip()
                    == "PONG"
                ):
                    break
                time.sleep(0.1)

    return outage


def test_upload_with_broker_down_is_stored_and_completes_after_sweep(
    active_tiny_model, role_users, celery_worker_proc, redis_broker_outage
) -> None:
    """Redis is stopped while uploading: the file and rows are kept; the sweeper sends the work later."""
    with redis_broker_outage():
        outcome = _upload(role_users["Clinician"], synthetic_png(128, seed=7))
        assert outcome.ok and outcome.image.file.storage.exists(outcome.image.file.name)
        assert Prediction.objects.get(pk=outcome.prediction.pk).status == "pending"
    worker = celery_worker_proc()
    Prediction.objects.filter(pk=outcome.prediction.pk).update(
        created_at=outcome.prediction.created_at.replace(year=2020)
    )
    assert prediction_sweep()["resent"] >= 1
    wait_for(lambda: _done(outcome.prediction.pk), 120, message=worker.output)
    assert Prediction.objects.get(pk=outcome.prediction.pk).status == "done"


def test_inference_worker_warms_up_the_active_model_before_work(
    celery_worker_proc, active_tiny_model, role_users
) -> None:
    worker = celery_worker_proc(CXR_WORKER_WARM_UP="true")
    wait_for(lambda: "warmed up cxr-triage" in worker.output(), 120, interval=0.2, message=worker.output)
    outcome = _upload(role_users["Clinician"], synthetic_png(128, seed=9))
    wait_for(lambda: _done(outcome.prediction.pk), 120, message=worker.output)
    prediction = Prediction.objects.get(pk=outcome.prediction.pk)
    assert prediction.status == "done" and prediction.heatmap


def test_worker_flags_at_the_site_threshold_in_force(celery_worker_proc, active_tiny_model, role_users) -> None:
    """After an admin adopts this hospital's threshold for the active version, the worker
    flags new predictions at it and records it; after retiring, the version's own again."""
    from classifier.services.predictions import prediction_rerun
    from tests.training.test_site_thresholds import reviewed
    from training.services.site_thresholds import site_threshold_adopt, site_threshold_retire

    worker = celery_worker_proc()
    outcome = _upload(role_users["Clinician"], synthetic_png(128, seed=8))
    wait_for(lambda: _done(outcome.prediction.pk), 120, message=worker.output)
    first = Prediction.objects.get(pk=outcome.prediction.pk)
    assert first.threshold == 0.5 and first.site_threshold is None
    # Reviews that put this hospital's threshold on the other side of this film's score,
    # so the flag must change if (and only if) the worker uses it.
    local = first.p_abnormal - 1e-4 if first.p_abnormal < 0.5 else (first.p_abnormal + 1) / 2
    reviewed(active_tiny_model, role_users["Radiologist"], [local] * 20, [0.01])
    site = site_threshold_adopt(version=active_tiny_model, actor=role_users["Admin"], reason="test")
    assert site.threshold == pytest.approx(local)

    again = prediction_rerun(image=first.image, requested_by=role_users["Clinician"])
    wait_for(lambda: _done(again.pk), 120, message=worker.output)
    again.refresh_from_db()
    assert again.status == "done" and again.p_abnormal == pytest.approx(first.p_abnormal, abs=1e-6)
    assert again.site_threshold_id == site.pk and again.threshold == pytest.approx(site.threshold)
    assert again.flag is (not first.flag)
    assert again.thresholds["abnormal"] == 0.5  # the artifact's own stays on record

    site_threshold_retire(version=active_tiny_model, actor=role_users["Admin"], reason="test")
    last = prediction_rerun(image=first.image, requested_by=role_users["Clinician"])
    wait_for(lambda: _done(last.pk), 120, message=worker.output)
    last.refresh_from_db()
    assert last.site_threshold is None and last.threshold == 0.5 and last.flag is first.flag
