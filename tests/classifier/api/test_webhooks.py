"""Webhooks: signed deliveries to a local receiver, retries with backoff, delivery records."""

from __future__ import annotations

import json

import pytest

from classifier.integrations import WebhookDelivery
from classifier.services.webhooks import prediction_finished
from tests.classifier.api.helpers import finished_prediction, registered_version

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def local_receiver_allowed(settings) -> None:
    """The receiver of these tests is plain http on 127.0.0.1; test_webhook_targets.py
    tests the production defaults that refuse it."""
    settings.CXR = {**settings.CXR, "WEBHOOK_ALLOW_HTTP": True, "WEBHOOK_ALLOW_PRIVATE_TARGETS": True}


@pytest.fixture
def eager_celery(monkeypatch):
    """Run tasks inline (retries included) with no backoff delay."""
    from classifier.services import webhooks
    from cxrsite.celery import app

    monkeypatch.setattr(webhooks, "BACKOFF_SECONDS", 0.0)
    monkeypatch.setattr(webhooks, "MAX_ATTEMPTS", 3)
    app.conf.task_always_eager = True
    yield app
    app.conf.task_always_eager = False


def _register(client, url: str, events: list[str] | None = None) -> dict:
    response = client.post("/api/v1/webhooks/", {"url": url, "events": events or []}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_prediction_done_is_delivered_signed(
    client_for, role_users, webhook_receiver, eager_celery, tmp_path, django_capture_on_commit_callbacks
) -> None:
    hook = _register(client_for("Admin"), webhook_receiver.url, ["prediction.done"])
    assert "secret" in hook and "secret" not in client_for("Admin").get(f"/api/v1/webhooks/{hook['id']}/").json()
    prediction = finished_prediction(role_users["Clinician"], registered_version(tmp_path))
    with django_capture_on_commit_callbacks(execute=True):
        prediction_finished(prediction.pk)
    assert len(webhook_receiver.requests) == 1
    request = webhook_receiver.requests[0]
    assert webhook_receiver.verify(request, hook["secret"])
    assert not webhook_receiver.verify(request, "wrong-secret")
    assert request["headers"]["X-CXR-Event"] == "prediction.done"
    assert request["headers"]["X-CXR-Timestamp"].isdigit()
    event = json.loads(request["body"])
    assert event["event"] == "prediction.done" and request["headers"]["X-CXR-Delivery"] == event["id"]
    data = event["data"]["prediction"]
    assert data["id"] == prediction.pk and data["notice"] == "decision support, not a diagnosis"
    assert (
        data["finding"]["headline"] == "Abnormal, likely pneumonia" and data["finding"]["cause_status"] == "unvalidated"
    )
    assert data["model"]["artifact_sha256"] == prediction.model_version.artifact_sha256["model.tflite"]
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "succeeded" and delivery.attempts == 1 and delivery.last_status_code == 200
    listed = client_for("Admin").get(f"/api/v1/webhooks/{hook['id']}/deliveries/").json()
    assert listed["results"][0]["status"] == "succeeded"


def test_failed_deliveries_are_retried_then_given_up(
    client_for, role_users, webhook_receiver, eager_celery, tmp_path, django_capture_on_commit_callbacks
) -> None:
    _register(client_for("Admin"), webhook_receiver.url)
    webhook_receiver.statuses = [500, 503]  # then 200
    version = registered_version(tmp_path)
    with django_capture_on_commit_callbacks(execute=True):
        prediction_finished(finished_prediction(role_users["Clinician"], version, accession="R-1").pk)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "succeeded" and delivery.attempts == 3
    assert len({r["body"] for r in webhook_receiver.requests}) == 1  # the same signed body each time
    webhook_receiver.statuses = [500] * 10
    with django_capture_on_commit_callbacks(execute=True):
        prediction_finished(finished_prediction(role_users["Clinician"], version, accession="R-2").pk)
    failed = WebhookDelivery.objects.exclude(pk=delivery.pk).get()
    assert failed.status == "failed" and failed.attempts == 3 and failed.last_error == "HTTP 500"


def test_review_lands_as_an_event(
    client_for, role_users, webhook_receiver, eager_celery, tmp_path, django_capture_on_commit_callbacks
) -> None:
    hook = _register(client_for("Admin"), webhook_receiver.url, ["review.created"])
    prediction = finished_prediction(role_users["Clinician"], registered_version(tmp_path))
    with django_capture_on_commit_callbacks(execute=True):
        prediction_finished(prediction.pk)  # not subscribed: nothing sent
        response = client_for("Radiologist").post(
            f"/api/v1/predictions/{prediction.pk}/reviews/",
            {"decision": "correct", "label": "NORMAL", "comment": "clear"},
            format="json",
        )
    assert response.status_code == 201
    assert [e["event"] for e in webhook_receiver.events()] == ["review.created"]
    assert webhook_receiver.verify(webhook_receiver.requests[0], hook["secret"])
    assert webhook_receiver.events()[0]["data"]["review"]["label"] == "NORMAL"


def test_webhook_validation_and_visibility(client_for) -> None:
    admin = client_for("Admin")
    assert admin.post("/api/v1/webhooks/", {"url": "ftp://x/y"}, format="json").status_code == 400
    assert (
        admin.post("/api/v1/webhooks/", {"url": "http://127.0.0.1/h", "events": ["nope"]}, format="json").status_code
        == 400
    )
    hook = _register(admin, "http://127.0.0.1:9/h")
    assert client_for("Radiologist").get(f"/api/v1/webhooks/{hook['id']}/").status_code == 404  # not theirs
    assert admin.delete(f"/api/v1/webhooks/{hook['id']}/").status_code == 204
    assert admin.get(f"/api/v1/webhooks/{hook['id']}/").json()["is_active"] is False


def _delivery(
    hook_id: int,
    *,
    age_seconds: float = 0,
    attempts: int = 0,
    last_attempt_age: float | None = None,
    status: str = "pending",
) -> WebhookDelivery:
    import uuid
    from datetime import timedelta

    from django.utils import timezone

    delivery = WebhookDelivery.objects.create(
        webhook_id=hook_id,
        event="prediction.done",
        event_id=uuid.uuid4(),
        body='{"id": "x"}',
        attempts=attempts,
        status=status,
    )
    now = timezone.now()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        created_at=now - timedelta(seconds=age_seconds),
        last_attempt_at=None if last_attempt_age is None else now - timedelta(seconds=last_attempt_age),
    )
    return delivery


def test_sweep_resends_only_deliveries_whose_next_attempt_is_overdue(client_for, settings, monkeypatch) -> None:
    from classifier.services import webhooks as webhook_services
    from classifier.tasks import webhooks as webhook_tasks

    settings.CXR = {**settings.CXR, "SWEEP_INTERVAL_SECONDS": 60}
    monkeypatch.setattr(webhook_services, "BACKOFF_SECONDS", 10.0)
    hook = _register(client_for("Admin"), "https://93.184.216.34/hook")
    lost = _delivery(hook["id"], age_seconds=600)  # never attempted
    fresh = _delivery(hook["id"], age_seconds=5)  # task still on its way
    waiting = _delivery(hook["id"], age_seconds=900, attempts=3, last_attempt_age=30)  # next retry due in 10 s
    dropped = _delivery(hook["id"], age_seconds=900, attempts=3, last_attempt_age=200)  # its retry was due 160 s ago
    _delivery(hook["id"], age_seconds=900, attempts=1, last_attempt_age=800, status="succeeded")
    sent: list[int] = []
    monkeypatch.setattr(webhook_tasks.webhook_deliver_task, "delay", sent.append)
    assert webhook_services.webhook_sweep() == 2
    assert sorted(sent) == sorted([lost.pk, dropped.pk])
    assert fresh.pk not in sent and waiting.pk not in sent


def test_a_resent_delivery_continues_its_attempt_count(client_for, webhook_receiver, eager_celery) -> None:
    from classifier.tasks.webhooks import webhook_deliver_task

    hook = _register(client_for("Admin"), webhook_receiver.url)
    delivery = _delivery(hook["id"], age_seconds=600, attempts=2, last_attempt_age=500)
    webhook_receiver.statuses = [500] * 10
    webhook_deliver_task.delay(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.attempts == 3  # MAX_ATTEMPTS, not 2 + 3
    assert len(webhook_receiver.requests) == 1


def test_a_finished_prediction_and_its_delivery_commit_together(
    client_for, role_users, active_tiny_model, django_capture_on_commit_callbacks
) -> None:
    from classifier.services.predictions import prediction_run
    from classifier.services.studies import StudyFields
    from classifier.services.uploads import image_upload
    from tests.conftest import synthetic_png

    _register(client_for("Admin"), "https://93.184.216.34/hook", ["prediction.done"])
    outcome = image_upload(
        data=synthetic_png(96),
        filename="a.png",
        uploaded_by=role_users["Clinician"],
        fields=StudyFields(mrn="W1", accession_number="W1"),
    )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert prediction_run(prediction_id=outcome.prediction.pk) == [outcome.prediction.pk]
    delivery = WebhookDelivery.objects.get(event="prediction.done")
    assert (
        delivery.status == "pending" and json.loads(delivery.body)["data"]["prediction"]["id"] == outcome.prediction.pk
    )
    assert callbacks  # the delivery task is sent once the outcome's transaction commits


def test_review_event_commits_in_the_review_transaction(
    client_for, role_users, tmp_path, django_capture_on_commit_callbacks
) -> None:
    """The review.created delivery row exists before commit (an outbox), so a crash between
    commit and the on-commit callbacks cannot lose the event."""
    from classifier.services.reviews import review_submit

    _register(client_for("Admin"), "https://93.184.216.34/hook", ["review.created"])
    prediction = finished_prediction(role_users["Clinician"], registered_version(tmp_path))
    with django_capture_on_commit_callbacks(execute=False):
        review = review_submit(prediction=prediction, radiologist=role_users["Radiologist"], decision="confirm")
        delivery = WebhookDelivery.objects.get(event="review.created")
    assert json.loads(delivery.body)["data"]["review"]["id"] == review.pk


def test_deliveries_are_routed_to_the_webhooks_queue() -> None:
    from cxrsite.celery import app

    def queue(name: str) -> str:
        return app.amqp.router.route({}, name)["queue"].name

    assert queue("classifier.tasks.webhook_deliver_task") == "webhooks"
    assert queue("classifier.tasks.prediction_run_task") == "inference"
    assert queue("training.tasks.training_run_task") == "training"
