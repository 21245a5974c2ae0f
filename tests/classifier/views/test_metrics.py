"""GET /metrics: the Prometheus exposition, parsed with prometheus-client's own parser."""

from __future__ import annotations

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from classifier.models import Prediction
from classifier.services.studies import StudyFields
from classifier.services.uploads import image_upload
from cxrsite.celery import app
from tests.classifier.api.helpers import finished_prediction, registered_version
from tests.conftest import synthetic_png

pytestmark = pytest.mark.django_db(transaction=True)


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _purge_inference() -> None:
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge("inference")


def test_metrics_report_predictions_failures_latency_and_queue_depth(client, role_users, tmp_path) -> None:
    _purge_inference()
    done = finished_prediction(role_users["Clinician"], registered_version(tmp_path), accession="M-1")
    Prediction.objects.filter(pk=done.pk).update(
        timings_ms={"decode": 30.0, "preprocess": 8.0, "model": 2.0, "heatmap": 0.5, "encode": 5.0, "store": 1.5},
        created_at=timezone.now() - timezone.timedelta(seconds=3),
    )
    failed = image_upload(
        data=synthetic_png(96, seed=3),
        filename="f.png",
        uploaded_by=role_users["Clinician"],
        fields=StudyFields(mrn="M-2", accession_number="M-2"),
    ).prediction
    Prediction.objects.filter(pk=failed.pk).update(status="failed", error_code="corrupt_image")
    samples = scrape(client)
    assert samples[("cxr_predictions", (("status", "done"),))] == 1
    assert samples[("cxr_predictions", (("status", "failed"),))] == 1
    assert samples[("cxr_prediction_failures_total", (("code", "corrupt_image"), ("stage", "decode")))] == 1
    decode = (("stage", "decode"),)
    assert samples[("cxr_prediction_stage_seconds_count", decode)] == 1
    assert samples[("cxr_prediction_stage_seconds_sum", decode)] == pytest.approx(0.03)
    assert samples[("cxr_prediction_stage_seconds_bucket", (("le", "0.025"), ("stage", "decode")))] == 0
    assert samples[("cxr_prediction_stage_seconds_bucket", (("le", "0.05"), ("stage", "decode")))] == 1
    end_to_end = (("le", "5.0"), ("path", "end_to_end"))
    assert samples[("cxr_prediction_latency_seconds_bucket", end_to_end)] == 1
    assert samples[("cxr_broker_up", ())] == 1
    # The two uploads each sent a task that no worker takes: both wait in the queue.
    assert samples[("cxr_queue_depth", (("queue", "inference"),))] == 2
    assert samples[("cxr_webhook_deliveries_pending", ())] == 0
    assert samples[("cxr_dicom_deliveries_pending", ())] == 0
    _purge_inference()


def test_metrics_count_requests_by_route(client) -> None:
    key = ("cxr_http_requests_total", (("method", "GET"), ("route", "healthz"), ("status", "200")))
    before = scrape(client).get(key, 0)
    client.get("/healthz")
    client.get("/healthz")
    assert scrape(client)[key] == before + 2


def test_metrics_report_a_broker_that_is_down(client, monkeypatch) -> None:
    from kombu import Connection

    # A real connection, to a port where no broker listens.
    monkeypatch.setattr(app, "connection_for_read", lambda **kwargs: Connection("redis://127.0.0.1:1/0", **kwargs))
    samples = scrape(client)
    assert samples[("cxr_broker_up", ())] == 0
    assert not any(name == "cxr_queue_depth" for name, _ in samples)


def test_metrics_token_is_required_when_configured(client, settings) -> None:
    settings.CXR = {**settings.CXR, "METRICS_TOKEN": "scrape-secret"}
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert scrape(client, HTTP_AUTHORIZATION="Bearer scrape-secret")
