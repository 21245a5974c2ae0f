"""Webhooks are an admin's integration pointing at public https targets (production
defaults: no http, no private addresses), checked at registration and at every delivery."""

from __future__ import annotations

import uuid

import pytest

from classifier.integrations import Webhook, WebhookDelivery
from classifier.services.webhooks import WebhookDeliveryFailed, prediction_finished, webhook_deliver
from tests.classifier.api.helpers import finished_prediction, registered_version

pytestmark = pytest.mark.django_db

PUBLIC = "https://93.184.216.34/hook"  # a public address literal: no DNS needed


def _post(client, url: str):
    return client.post("/api/v1/webhooks/", {"url": url}, format="json")


@pytest.mark.parametrize("role", ["Clinician", "Radiologist"])
def test_only_admins_register_webhooks(client_for, role: str) -> None:
    assert _post(client_for(role), PUBLIC).status_code == 403
    assert not Webhook.objects.exists()
    assert _post(client_for("Admin"), PUBLIC).status_code == 201


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.216.34/hook",  # not https
        "https://169.254.169.254/latest/meta-data/",
        "https://127.0.0.1/hook",
        "https://localhost:8443/hook",
        "https://10.0.0.5/hook",
        "https://192.168.1.1/hook",
        "https://172.16.0.1/hook",
        "https://100.64.0.1/hook",
        "https://0.0.0.0/hook",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[fd00::1]/hook",
        "https://user:pw@93.184.216.34/hook",
    ],
)
def test_private_loopback_metadata_and_plain_http_targets_are_refused(client_for, url: str) -> None:
    response = _post(client_for("Admin"), url)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_url" and "public" in error["message"]
    assert not Webhook.objects.exists()


def _hook(owner, url: str) -> Webhook:
    """A webhook row as stored earlier (registered while its name resolved elsewhere, or
    before the rules), written directly."""
    return Webhook.objects.create(owner=owner, url=url, events=[], secret="s" * 32)


def _pending(hook: Webhook) -> WebhookDelivery:
    return WebhookDelivery.objects.create(webhook=hook, event="prediction.done", event_id=uuid.uuid4(), body="{}")


def test_each_delivery_checks_the_target_again_and_sends_nothing_to_a_private_address(
    role_users, webhook_receiver, settings
) -> None:
    settings.CXR = {**settings.CXR, "WEBHOOK_ALLOW_HTTP": True}  # http, but private addresses still refused
    delivery = _pending(_hook(role_users["Admin"], webhook_receiver.url))
    with pytest.raises(WebhookDeliveryFailed):
        webhook_deliver(delivery_id=delivery.pk)
    assert webhook_receiver.requests == []
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and "public addresses" in delivery.last_error and delivery.last_status_code is None


def test_delivery_errors_in_the_api_are_generic(client_for, role_users, settings) -> None:
    settings.CXR = {**settings.CXR, "WEBHOOK_ALLOW_HTTP": True, "WEBHOOK_ALLOW_PRIVATE_TARGETS": True}
    hook = _hook(role_users["Admin"], "http://127.0.0.1:9/hook")  # nothing listens on port 9
    delivery = _pending(hook)
    with pytest.raises(WebhookDeliveryFailed):
        webhook_deliver(delivery_id=delivery.pk)
    listed = client_for("Admin").get(f"/api/v1/webhooks/{hook.pk}/deliveries/").json()["results"]
    assert listed[0]["last_error"] == "The receiver could not be reached."


def test_the_connection_goes_to_the_checked_address_with_the_name_in_the_host_header(
    role_users, webhook_receiver, settings
) -> None:
    settings.CXR = {**settings.CXR, "WEBHOOK_ALLOW_HTTP": True, "WEBHOOK_ALLOW_PRIVATE_TARGETS": True}
    url = webhook_receiver.url.replace("127.0.0.1", "localhost")
    delivery = _pending(_hook(role_users["Admin"], url))
    assert webhook_deliver(delivery_id=delivery.pk) == "succeeded"
    port = webhook_receiver.url.split(":")[2].split("/")[0]
    assert webhook_receiver.requests[0]["headers"]["Host"] == f"localhost:{port}"


def test_a_hook_of_a_user_who_may_not_manage_integrations_receives_no_events(
    role_users, tmp_path, django_capture_on_commit_callbacks
) -> None:
    clinicians = _hook(role_users["Clinician"], PUBLIC)  # registered before only admins could
    admins = _hook(role_users["Admin"], PUBLIC)
    prediction = finished_prediction(role_users["Clinician"], registered_version(tmp_path))
    with django_capture_on_commit_callbacks(execute=False):
        prediction_finished(prediction.pk)
    assert list(WebhookDelivery.objects.values_list("webhook_id", flat=True)) == [admins.pk]
    stale = _pending(clinicians)
    assert webhook_deliver(delivery_id=stale.pk) == "failed"
