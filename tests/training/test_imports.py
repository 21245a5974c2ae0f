"""No usable data: the training form says what is missing; an admin imports a folder from the web."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from classifier.models import AuditEvent
from tests.conftest import wait_for
from tests.factories import labelled_rows
from tests.training.services.test_runs import make_folder_dataset
from training.models import Dataset, DatasetImport, TrainingRun
from training.services.imports import dataset_import_execute

pytestmark = pytest.mark.django_db
FORM = {"architecture": "s0_cnn", "epochs": "2", "batch_size": "8", "input_size": "32"}


@pytest.fixture
def web_admin(role_users) -> Client:
    client = Client()
    client.force_login(role_users["Admin"])
    return client


@pytest.fixture
def import_root(tmp_path, settings):
    root = tmp_path / "import-root"
    root.mkdir()
    settings.CXR = {**settings.CXR, "DATASET_IMPORT_ROOT": root}
    return root


def test_training_without_any_data_is_refused_up_front_saying_how_to_add_data(web_admin, client_for) -> None:
    assert not Dataset.objects.exists()
    page = web_admin.get("/training/start/").content.decode()
    assert 'id="no-training-data"' in page and 'href="/training/datasets/import/"' in page
    response = web_admin.post("/training/start/", FORM)  # reviews included, but none exist
    body = response.content.decode()
    assert response.status_code == 400 and "There is no training data yet" in body
    assert "import_dataset DIR --layout folders" in body and "/training/datasets/import/" in body
    api = client_for("Admin").post("/api/v1/training-runs/", {"include_reviews": False}, format="json")
    assert api.status_code == 409 and api.json()["error"]["code"] == "no_training_data"
    with pytest.raises(CommandError, match="no dataset has been imported"):
        call_command("train_model", "--epochs", "1")
    assert not TrainingRun.objects.exists()


def test_data_that_cannot_fill_a_validation_split_is_refused_with_the_counts(web_admin) -> None:
    dataset = labelled_rows()
    dataset.images.update(split="train")
    response = web_admin.post("/training/start/", {**FORM, "datasets": [dataset.pk]})
    assert response.status_code == 400
    assert "8 train, 0 validation" in response.content.decode() and not TrainingRun.objects.exists()


def test_admin_imports_a_folder_from_the_web_page_with_progress(
    web_admin, import_root, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    make_folder_dataset(import_root / "site-a", per_class=3)
    sent: list[int] = []
    monkeypatch.setattr("training.tasks.dataset_import_task.delay", sent.append)
    with django_capture_on_commit_callbacks(execute=True):
        response = web_admin.post("/training/datasets/import/", {"directory": "site-a", "layout": "folders"})
    job = DatasetImport.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/training/datasets/imports/{job.pk}/"
    assert sent == [job.pk] and job.status == "queued" and job.name == "site-a"
    assert AuditEvent.objects.filter(action="dataset_import_start", object_id=str(job.pk)).exists()
    assert web_admin.get(f"/training/datasets/imports/{job.pk}/progress/").json()["percent"] == 0
    dataset_import_execute(import_id=job.pk)  # what the training worker runs
    assert dataset_import_execute(import_id=job.pk) is None  # a redelivered message does nothing
    progress = web_admin.get(f"/training/datasets/imports/{job.pk}/progress/").json()
    assert progress["status"] == "succeeded" and progress["percent"] == 100 and progress["dataset"] == "site-a"
    assert progress["progress"]["done"] == progress["progress"]["total"] == 12 and progress["progress"]["added"] == 12
    assert Dataset.objects.get(name="site-a").images.count() == 12
    assert AuditEvent.objects.filter(action="dataset_import_done", object_id=str(job.pk)).exists()
    assert "No dataset has been imported" not in web_admin.get("/training/start/").content.decode()


@pytest.mark.parametrize("directory", ["/etc", "../", "site-a/../../", "escape", "missing"])
def test_import_refuses_folders_outside_the_root_or_missing(web_admin, import_root, tmp_path, directory) -> None:
    (tmp_path / "outside").mkdir()
    (import_root / "escape").symlink_to(tmp_path / "outside")
    make_folder_dataset(import_root / "site-a", per_class=1)
    response = web_admin.post("/training/datasets/import/", {"directory": directory, "layout": "folders"})
    body = response.content.decode()
    assert response.status_code == 400 and ("outside the import folder" in body or "is not a folder" in body)
    assert not DatasetImport.objects.exists()


def test_only_admins_import(clients_by_role) -> None:
    assert clients_by_role("Clinician").get("/training/datasets/import/").status_code == 403
    assert clients_by_role("Radiologist").post("/training/datasets/import/", {"directory": "x"}).status_code == 403


@pytest.fixture
def clients_by_role(role_users):
    def make(role: str) -> Client:
        client = Client()
        client.force_login(role_users[role])
        return client

    return make


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
@pytest.mark.slow
def test_the_import_runs_on_the_training_worker(web_admin, import_root, celery_worker_proc) -> None:
    make_folder_dataset(import_root / "site-b", per_class=2)
    worker = celery_worker_proc()
    response = web_admin.post(
        "/training/datasets/import/", {"directory": str(import_root / "site-b"), "layout": "folders"}
    )
    assert response.status_code == 302
    job = DatasetImport.objects.get()
    wait_for(lambda: DatasetImport.objects.get(pk=job.pk).status == "succeeded", 90, message=worker.output)
    assert Dataset.objects.get(name="site-b").images.count() == 8
