"""Django admin for integrations: the Admin role (the demo admin of scripts/run.sh) manages
API tokens and webhooks there, as the README says; other roles cannot."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from django.test import Client

from classifier.integrations import ApiToken, Webhook
from classifier.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo_clients() -> dict[str, Client]:
    """Logged-in clients for the demo users exactly as scripts/run.sh creates them."""
    from django.contrib.auth import get_user_model

    call_command("setup_roles", "--demo", "--password", "demo-password-1")
    clients = {}
    for username in ("clinician", "radiologist", "admin"):
        client = Client()
        client.force_login(get_user_model().objects.get(username=username))
        clients[username] = client
    return clients


def test_demo_admin_creates_and_revokes_an_api_token_in_the_admin(demo_clients) -> None:
    admin = demo_clients["admin"]
    assert admin.get("/admin/").status_code == 200
    assert admin.get("/admin/classifier/apitoken/").status_code == 200
    assert admin.get("/admin/classifier/apitoken/add/").status_code == 200
    created = admin.post(
        "/admin/classifier/apitoken/add/", {"name": "PACS router", "role": "Clinician", "rate": ""}, follow=True
    )
    assert created.status_code == 200
    token = ApiToken.objects.get(name="PACS router")
    shown = re.search(r"cxr_[A-Za-z0-9_\-]+", created.content.decode())
    assert shown and token.prefix == shown.group(0)[:12]  # the raw token is shown once
    assert admin.get(f"/admin/classifier/apitoken/{token.pk}/change/").status_code == 200
    revoked = admin.post(
        "/admin/classifier/apitoken/",
        {"action": "revoke_tokens", "_selected_action": [token.pk]},
        follow=True,
    )
    assert revoked.status_code == 200
    token.refresh_from_db()
    assert token.is_revoked
    assert AuditEvent.objects.filter(action__in=["api_token_create", "api_token_revoke"]).count() == 2


def test_demo_admin_adds_and_deactivates_a_webhook_in_the_admin(demo_clients) -> None:
    admin = demo_clients["admin"]
    assert admin.get("/admin/classifier/webhook/").status_code == 200
    assert admin.get("/admin/classifier/webhookdelivery/").status_code == 200
    assert admin.get("/admin/classifier/webhook/add/").status_code == 200
    created = admin.post(
        "/admin/classifier/webhook/add/",
        {"url": "https://93.184.216.34/hook", "events": ["prediction.done"]},
        follow=True,
    )
    assert created.status_code == 200, created.content
    hook = Webhook.objects.get(url="https://93.184.216.34/hook")
    assert hook.secret and hook.events == ["prediction.done"] and hook.is_active
    assert hook.secret in created.content.decode()  # shown once, at creation
    assert hook.owner.username == "admin"
    assert AuditEvent.objects.filter(action="webhook_create").count() == 1
    changed = admin.post(
        f"/admin/classifier/webhook/{hook.pk}/change/",
        {},  # is_active unticked
        follow=True,
    )
    assert changed.status_code == 200
    hook.refresh_from_db()
    assert hook.is_active is False
    assert hook.secret not in admin.get(f"/admin/classifier/webhook/{hook.pk}/change/").content.decode()
    refused = admin.post("/admin/classifier/webhook/add/", {"url": "ftp://ris.example.org/hook"})
    assert refused.status_code == 200 and "must be https" in refused.content.decode()
    assert not Webhook.objects.filter(url__startswith="ftp:").exists()


def test_other_roles_cannot_manage_integrations_in_the_admin(demo_clients) -> None:
    for username in ("clinician", "radiologist"):
        client = demo_clients[username]
        for url in ("/admin/classifier/apitoken/", "/admin/classifier/webhook/add/"):
            response = client.get(url)
            assert response.status_code in (302, 403), (username, url, response.status_code)


@pytest.mark.parametrize("bulk", [False, True], ids=["one", "bulk"])
def test_deleting_a_prediction_in_the_admin_refreshes_its_study(admin_client, bulk) -> None:
    """The study's stored flag follows its images' latest predictions after an admin
    delete too (the worklist reads the stored column)."""
    from classifier.models import Study
    from tests.factories import ImageFactory, PredictionFactory

    image = ImageFactory()
    PredictionFactory(image=image, p_abnormal=0.2)
    flagged = PredictionFactory(image=image, p_abnormal=0.9)
    assert Study.objects.get(pk=image.study_id).current_flag is True
    if bulk:
        response = admin_client.post(
            "/admin/classifier/prediction/",
            {"action": "delete_selected", "_selected_action": [flagged.pk], "post": "yes"},
        )
    else:
        response = admin_client.post(f"/admin/classifier/prediction/{flagged.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    study = Study.objects.get(pk=image.study_id)
    assert (study.current_flag, study.current_p_abnormal) == (False, pytest.approx(0.2))


@pytest.mark.django_db
def test_deleting_a_studys_last_image_in_the_admin_takes_it_off_the_worklist(admin_client) -> None:
    """The worklist reads the stored has_images: an admin delete of the only image (one
    without predictions: they protect their image) must refresh it, or the empty study
    stays listed, waiting to escalate."""
    from classifier.models import Study
    from classifier.selectors.worklist import worklist_rows
    from tests.factories import ImageFactory

    image = ImageFactory()
    assert worklist_rows().filter(pk=image.study_id).exists()
    response = admin_client.post(f"/admin/classifier/image/{image.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    study = Study.objects.get(pk=image.study_id)
    assert (study.has_images, study.triage_base, study.priority) == (False, None, 0.0)
    assert not worklist_rows().filter(pk=study.pk).exists()
