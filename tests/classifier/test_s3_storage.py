"""Shared storage for more than one machine: media and model artifacts in an S3 bucket.

Against a real S3-compatible server (moto's server mode, started by the ``s3_server``
fixture): uploads land in the bucket with their sha256 checked on the stored object,
registered artifacts are uploaded and fetched only after every file matches the
registry, a tampered object is refused, and a real worker that shares nothing with the
web but the database, the broker and the bucket completes predictions.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from classifier import artifact_store
from classifier.artifact_store import artifact_local_dir
from classifier.inference.manifest import ArtifactIntegrityError
from classifier.models import Prediction
from classifier.services.media_cleanup import media_orphans_sweep
from classifier.services.predictions import prediction_run
from classifier.services.studies import StudyFields
from classifier.services.uploads import image_upload
from classifier.storage import local_copies_fetch, local_path
from tests.conftest import free_port, synthetic_png, wait_for
from training import registry


def _upload(user, data: bytes, accession: str):
    return image_upload(
        data=data, filename="chest.png", uploaded_by=user, fields=StudyFields(mrn="MRN-S3", accession_number=accession)
    )


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.django_db
def test_an_upload_is_stored_in_the_bucket_with_the_sha256_of_the_stored_object(s3_bucket, role_users) -> None:
    data = synthetic_png(96, seed=11)
    outcome = _upload(role_users["Clinician"], data, "ACC-S3-1")
    assert outcome.ok, outcome.error_message
    image = outcome.image
    stored = s3_bucket.read(s3_bucket.key("media", image.file.name))
    assert _sha(stored) == image.sha256 == _sha(data)
    assert not (Path(settings.MEDIA_ROOT) / image.file.name).exists()  # nothing on the web's disk


@pytest.mark.django_db
def test_an_upload_whose_stored_object_differs_is_refused_and_removed(s3_bucket, role_users, monkeypatch) -> None:
    from storages.backends.s3 import S3Storage

    original = S3Storage._save

    def truncating_save(self, name, content):  # the store keeps fewer bytes than were sent
        return original(self, name, ContentFile(content.read()[:-16]))

    monkeypatch.setattr(S3Storage, "_save", truncating_save)
    with pytest.raises(OSError, match="stored file does not match"):
        _upload(role_users["Clinician"], synthetic_png(96, seed=12), "ACC-S3-2")
    assert not [key for key in s3_bucket.object_keys() if "/media/images/" in key]


@pytest.mark.django_db
def test_orphans_in_the_bucket_are_removed_by_the_cleanup(s3_bucket, role_users) -> None:
    """S3 has no folders: the cleanup lists prefixes instead of asking whether they exist."""
    kept = _upload(role_users["Clinician"], synthetic_png(96, seed=13), "ACC-S3-3")
    orphan = default_storage.save("heatmaps/ab/orphan.png", ContentFile(b"x" * 10))
    counts = media_orphans_sweep(now=timezone.now() + timedelta(days=30))
    assert counts["removed"] == 1 and counts["bytes"] == 10
    keys = s3_bucket.object_keys()
    assert s3_bucket.key("media", orphan) not in keys
    assert s3_bucket.key("media", kept.image.file.name) in keys


@pytest.mark.django_db
def test_stored_media_is_copied_locally_for_code_that_reads_paths(s3_bucket, settings, tmp_path) -> None:
    settings.VAR_DIR = tmp_path
    name = default_storage.save("images/cd/example.png", ContentFile(b"stored bytes"))
    path = local_path(name)
    assert path == tmp_path / "media-cache" / name and not path.exists()
    assert local_copies_fetch([name, name]) == 1
    assert path.read_bytes() == b"stored bytes"
    assert local_copies_fetch([name]) == 0


@pytest.mark.django_db
def test_a_registered_version_is_uploaded_and_fetched_after_every_file_is_checked(s3_bucket, tiny_artifacts) -> None:
    version = registry.version_register(source_dir=tiny_artifacts[0])
    assert version.artifact_key.startswith(f"{version.name}/v{version.version}-")
    stored = {key for key in s3_bucket.object_keys() if key.startswith(s3_bucket.key("models", version.artifact_key))}
    assert len(stored) == len(version.artifact_sha256) + 1  # every manifest file plus the manifest
    local = artifact_local_dir(version)
    assert local == Path(settings.CXR["MODEL_CACHE_DIR"]) / version.artifact_key
    for name, sha in version.artifact_sha256.items():
        assert hashlib.sha256((local / name).read_bytes()).hexdigest() == sha
    assert registry.version_activate(version=version, reason="test").status == "active"


@pytest.mark.django_db
def test_a_tampered_stored_artifact_is_refused_and_never_cached(s3_bucket, tiny_artifacts) -> None:
    version = registry.version_register(source_dir=tiny_artifacts[0])
    model_key = s3_bucket.key("models", f"{version.artifact_key}/model.tflite")
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=model_key, Body=b"not the registered model")
    with pytest.raises(ArtifactIntegrityError, match=r"model\.tflite .* refusing to load a modified artifact"):
        artifact_local_dir(version)
    cache = Path(settings.CXR["MODEL_CACHE_DIR"]) / version.artifact_key
    assert not cache.exists() and not list(cache.parent.iterdir())  # no copy, no half-written folder
    with pytest.raises(registry.RegistryError, match=r"model\.tflite"):
        registry.version_activate(version=version, reason="test")


@pytest.mark.django_db
def test_a_tampered_artifact_with_a_matching_manifest_is_still_refused(s3_bucket, tiny_artifacts) -> None:
    """The manifest travels with the files: the registry's record is what they must match."""
    version = registry.version_register(source_dir=tiny_artifacts[0])
    forged = b"a substituted model"
    manifest = json.loads(s3_bucket.read(s3_bucket.key("models", f"{version.artifact_key}/manifest.json")))
    manifest["files"]["model.tflite"] = _sha(forged)
    for name, body in (("model.tflite", forged), ("manifest.json", json.dumps(manifest).encode())):
        key = s3_bucket.key("models", f"{version.artifact_key}/{name}")
        s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=key, Body=body)
    with pytest.raises(ArtifactIntegrityError, match=r"model\.tflite .* the registry recorded"):
        artifact_local_dir(version)


@pytest.mark.django_db
def test_a_cached_copy_altered_on_disk_is_refused_by_the_next_process(s3_bucket, tiny_artifacts) -> None:
    version = registry.version_register(source_dir=tiny_artifacts[0])
    local = artifact_local_dir(version)
    artifact_store._verified.clear()  # what a new worker process starts with
    (local / "labels.json").chmod(0o644)
    (local / "labels.json").write_text("[]")
    with pytest.raises(ArtifactIntegrityError, match=r"cached artifact file labels\.json .* delete"):
        artifact_local_dir(version)


@pytest.mark.django_db
def test_a_prediction_with_a_tampered_stored_model_fails_saying_so(s3_bucket, tiny_artifacts, role_users) -> None:
    version = registry.version_register(source_dir=tiny_artifacts[0])
    registry.version_activate(version=version, reason="test")
    key = s3_bucket.key("models", f"{version.artifact_key}/model.tflite")
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=key, Body=b"not the registered model")
    outcome = _upload(role_users["Clinician"], synthetic_png(96, seed=14), "ACC-S3-4")
    assert prediction_run(prediction_id=outcome.prediction.pk) == [outcome.prediction.pk]
    prediction = Prediction.objects.get(pk=outcome.prediction.pk)
    assert (prediction.status, prediction.error_code) == ("failed", "model_integrity")
    assert "integrity check" in prediction.error_message


@pytest.mark.django_db
def test_an_unreachable_bucket_is_a_transient_error_the_task_retries(
    s3_bucket, tiny_artifacts, role_users, settings
) -> None:
    """Reading the image from a store that does not answer raises OSError (the task
    releases the claim and retries) instead of failing the prediction for good."""
    version = registry.version_register(source_dir=tiny_artifacts[0])
    registry.version_activate(version=version, reason="test")
    artifact_local_dir(version)  # the model is already on this host
    outcome = _upload(role_users["Clinician"], synthetic_png(96, seed=15), "ACC-S3-5")
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            **settings.STORAGES["default"],
            "OPTIONS": {**settings.STORAGES["default"]["OPTIONS"], "endpoint_url": down},
        },
    }
    with pytest.raises(OSError, match="storage unavailable reading image"):
        prediction_run(prediction_id=outcome.prediction.pk)
    assert Prediction.objects.get(pk=outcome.prediction.pk).status == "running"  # released by the task, not failed


@pytest.mark.django_db
def test_the_model_page_shows_plots_from_the_bucket_without_a_local_copy(s3_bucket, role_users) -> None:
    from django.test import Client

    shipped = Path(settings.CXR["SHIPPED_MODEL_DIR"])
    version = registry.version_register(source_dir=shipped, name="cxr-plots-s3")
    shutil.rmtree(version.artifact_dir)  # registered on another host: this web has only the bucket
    client = Client()
    client.force_login(role_users["Admin"])
    page = client.get(f"/models/{version.pk}/")
    assert page.status_code == 200 and f"/models/{version.pk}/plots/roc.png" in page.content.decode()
    plot = client.get(f"/models/{version.pk}/plots/roc.png")
    assert plot.status_code == 200
    assert b"".join(plot.streaming_content) == (shipped / "plots" / "roc.png").read_bytes()


@pytest.mark.django_db
def test_the_local_default_keeps_artifacts_in_the_model_root_only(tiny_artifacts) -> None:
    assert "models" not in settings.STORAGES and artifact_store.model_storage() is None
    version = registry.version_register(source_dir=tiny_artifacts[0])
    assert version.artifact_key == ""
    assert artifact_local_dir(version) == Path(version.artifact_dir)
    assert Path(version.artifact_dir).parent.parent == Path(settings.CXR["MODEL_ROOT"])


@pytest.mark.worker
@pytest.mark.slow
def test_a_worker_without_the_webs_disk_completes_predictions_from_the_bucket(
    s3_bucket, celery_worker_proc, tiny_artifacts, role_users, client_for, tmp_path
) -> None:
    version = registry.version_register(source_dir=tiny_artifacts[0])
    registry.version_activate(version=version, reason="test")
    shutil.rmtree(version.artifact_dir)  # the web host's copy is gone: the worker must use the bucket's
    own_disk = {name: tmp_path / "worker" / name for name in ("var", "media", "models", "model-cache")}
    for path in own_disk.values():
        path.mkdir(parents=True)
    worker = celery_worker_proc(
        **s3_bucket.env,
        CXR_VAR_DIR=str(own_disk["var"]),
        CXR_MEDIA_ROOT=str(own_disk["media"]),
        CXR_MODEL_ROOT=str(own_disk["models"]),
        CXR_MODEL_CACHE_DIR=str(own_disk["model-cache"]),
    )
    outcomes = [_upload(role_users["Clinician"], synthetic_png(128, seed=20 + i), f"ACC-S3-W{i}") for i in range(2)]
    assert all(outcome.ok for outcome in outcomes)
    ids = [outcome.prediction.pk for outcome in outcomes]
    wait_for(
        lambda: Prediction.objects.filter(pk__in=ids, status__in=["done", "failed"]).count() == 2,
        180,
        message=worker.output,
    )
    keys = set(s3_bucket.object_keys())
    for prediction in Prediction.objects.filter(pk__in=ids):
        assert prediction.status == "done", (prediction.error_message, worker.output()[-3000:])
        assert prediction.model_version_id == version.pk
        heatmap = s3_bucket.key("media", prediction.heatmap.name)
        assert heatmap in keys and s3_bucket.read(heatmap)[:8] == b"\x89PNG\r\n\x1a\n"
        response = client_for("Clinician").get(f"/api/v1/predictions/{prediction.pk}/heatmap/")
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == s3_bucket.read(heatmap)
    # The worker wrote nothing to its media folder and loaded the model from its own verified copy.
    assert not [p for p in own_disk["media"].rglob("*") if p.is_file()]
    fetched = own_disk["model-cache"] / version.artifact_key
    assert _sha((fetched / "model.tflite").read_bytes()) == version.artifact_sha256["model.tflite"]
