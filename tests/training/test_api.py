"""Model versions (list with metrics, promote, roll back) and training runs, for admins."""

from __future__ import annotations

import pytest

from tests.classifier.api.helpers import registered_version
from tests.factories import labelled_rows
from training.models import ModelVersion, TrainingRun

pytestmark = pytest.mark.django_db


def test_list_promote_and_roll_back(client_for, tmp_path) -> None:
    ModelVersion.objects.update(status=ModelVersion.Status.ARCHIVED, activated_at=None)  # the shipped model
    first, second = registered_version(tmp_path, 0), registered_version(tmp_path, 1)
    admin = client_for("Admin")
    listed = admin.get(f"/api/v1/models/?name={first.name}").json()["results"]
    assert {v["id"] for v in listed} >= {first.pk, second.pk}
    row = next(v for v in listed if v["id"] == second.pk)
    assert row["metrics"] == {"auc": 0.91} and row["artifact_sha256"]["model.tflite"]
    assert admin.post(f"/api/v1/models/{first.pk}/activate/").json()["status"] == "active"
    # neither has a validation evaluation the gate could compare: promoting over it needs a reason
    assert admin.post(f"/api/v1/models/{second.pk}/activate/").status_code == 409
    promoted = admin.post(f"/api/v1/models/{second.pk}/activate/", {"override_reason": "test"}, format="json")
    assert promoted.json()["status"] == "active"
    assert ModelVersion.objects.get(pk=first.pk).status == "archived"
    rolled = admin.post("/api/v1/models/rollback/", {"name": first.name}, format="json")
    assert rolled.status_code == 200 and rolled.json()["id"] == first.pk
    detail = admin.get(f"/api/v1/models/{first.pk}/").json()
    assert detail["status"] == "active" and "model_card" in detail


def test_registry_refusals_are_409(client_for, tmp_path) -> None:
    broken = ModelVersion.objects.create(
        name="broken",
        version=1,
        architecture="x",
        input_size=32,
        labels=[],
        preprocess_config={},
        artifact_dir=str(tmp_path / "missing"),
    )
    admin = client_for("Admin")
    response = admin.post(f"/api/v1/models/{broken.pk}/activate/")
    assert response.status_code == 409 and response.json()["error"]["code"] == "registry_conflict"
    assert admin.post("/api/v1/models/rollback/", {"name": "broken"}, format="json").status_code == 409


def test_start_a_training_run_and_read_its_progress(
    client_for, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    labelled_rows()  # something to train on
    sent = []
    monkeypatch.setattr("training.tasks.training_run_task.delay", sent.append)
    admin = client_for("Admin")
    with django_capture_on_commit_callbacks(execute=True):
        created = admin.post(
            "/api/v1/training-runs/", {"spec": {"val_fraction": 0.2}, "include_reviews": False}, format="json"
        )
    assert created.status_code == 201, created.content
    run = created.json()
    assert run["status"] == "queued" and run["spec"]["val_fraction"] == 0.2 and sent == [run["id"]]
    TrainingRun.objects.filter(pk=run["id"]).update(status="running", progress={"epoch": 2, "epochs": 5})
    progress = admin.get(f"/api/v1/training-runs/{run['id']}/").json()
    assert progress["status"] == "running" and progress["progress"]["epoch"] == 2
    bad = admin.post("/api/v1/training-runs/", {"spec": {"unknown_key": 1}}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_spec"
