"""The training run page: progress over every phase, the gate's reasons, no stale status."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.factories import labelled_rows
from training.models import TrainingRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def web_admin(role_users) -> Client:
    client = Client()
    client.force_login(role_users["Admin"])
    return client


@pytest.mark.parametrize(
    ("status", "record", "percent"),
    [
        ("queued", {}, 0),
        ("running", {"stage": "training", "epoch": 1, "epochs": 2, "fit": 1, "fits": 1}, 40),
        ("running", {"stage": "training", "epoch": 2, "epochs": 2, "fit": 1, "fits": 1}, 80),  # last epoch
        ("running", {"stage": "fold 1 of 2 (without a)", "epoch": 4, "epochs": 4, "fit": 1, "fits": 3}, 26),
        ("running", {"stage": "evaluation", "epoch": 2, "epochs": 2}, 80),
        ("running", {"stage": "export", "epoch": 2, "epochs": 2}, 88),
        ("running", {"stage": "gate", "epoch": 2, "epochs": 2}, 95),
        ("succeeded", {"stage": "gate", "epoch": 2, "epochs": 2}, 100),
    ],
)
def test_progress_covers_every_phase_not_only_the_epochs(web_admin, status, record, percent) -> None:
    run = TrainingRun.objects.create(status=status, progress=record)
    data = web_admin.get(f"/training/{run.pk}/progress/").json()
    assert data["percent"] == percent and data["phase"]
    if record.get("stage") == "export":
        assert "Exporting" in data["phase"]


def test_run_page_shows_the_gates_reasons_and_no_stale_queued_message(web_admin) -> None:
    dataset = labelled_rows()
    form = {"architecture": "s0_cnn", "epochs": "2", "batch_size": "8", "input_size": "32", "datasets": [dataset.pk]}
    started = web_admin.post("/training/start/", form)
    assert started.status_code == 302, started.content
    run = TrainingRun.objects.get()
    reason = "Sensitivity 0.5000 at threshold 0.3000 is below the champion's 0.9500 at threshold 0.3000."
    TrainingRun.objects.filter(pk=run.pk).update(
        status="succeeded",
        progress={"stage": "gate", "epoch": 2, "epochs": 2},
        promotion={"promote": False, "reasons": [reason]},
    )
    body = web_admin.get(started["Location"]).content.decode()
    assert "did not pass the gate" in body and "Sensitivity 0.5000 at threshold 0.3000 is below" in body
    assert "queued" not in body.lower()
    assert 'aria-valuenow="100"' in body
    data = web_admin.get(f"/training/{run.pk}/progress/").json()
    assert data["promotion"]["reasons"] == [reason] and data["percent"] == 100


def test_the_model_list_shows_each_runs_phase_not_only_its_epoch(web_admin) -> None:
    TrainingRun.objects.create(status="running", progress={"stage": "export", "epoch": 2, "epochs": 2})
    body = web_admin.get("/models/").content.decode()
    assert "88 % · Exporting the runtime model" in body and "epoch 2/2" not in body


def test_the_version_page_shows_why_the_gate_did_not_promote_it(web_admin, tmp_path) -> None:
    from tests.classifier.api.helpers import registered_version

    version = registered_version(tmp_path)
    reason = "AUC 0.4600 is worse than the floor 0.9500 (the champion's AUC 0.9700 minus its 95% CI half-width)."
    TrainingRun.objects.create(
        status="succeeded", model_version=version, promotion={"promote": False, "reasons": [reason], "champion": 1}
    )
    body = web_admin.get(f"/models/{version.pk}/").content.decode()
    assert "not promoted by the run" in body and "AUC 0.4600 is worse than the floor 0.9500" in body
