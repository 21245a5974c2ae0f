"""Migrations apply on both engines, and constraints reject duplicates."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import IntegrityError, transaction

from classifier.models import Image, Patient, Study
from training.models import ModelVersion

ROOT = Path(__file__).resolve().parent.parent


def test_migrations_apply_on_sqlite_from_scratch(tmp_path: Path) -> None:
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.sqlite3'}", CXR_VAR_DIR=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    check = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, "models changed without a migration:\n" + check.stdout


@pytest.mark.django_db
def test_migrations_applied_on_configured_database() -> None:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    assert executor.migration_plan(executor.loader.graph.leaf_nodes()) == []


def _study(accession: str = "A1", uid: str = "", mrn: str = "M1") -> Study:
    patient, _ = Patient.objects.get_or_create(mrn=mrn)
    return Study.objects.create(patient=patient, accession_number=accession, study_instance_uid=uid)


@pytest.mark.django_db
def test_duplicate_mrn_is_rejected() -> None:
    Patient.objects.create(mrn="M1")
    with pytest.raises(IntegrityError), transaction.atomic():
        Patient.objects.create(mrn="M1")


@pytest.mark.django_db
def test_duplicate_accession_and_uid_rejected_but_blank_uids_allowed() -> None:
    _study("A1", uid="1.2.3")
    _study("A2")
    _study("A3")  # several studies without a StudyInstanceUID are fine
    with pytest.raises(IntegrityError), transaction.atomic():
        _study("A1")
    with pytest.raises(IntegrityError), transaction.atomic():
        _study("A4", uid="1.2.3")


@pytest.mark.django_db
def test_same_content_twice_in_a_study_and_duplicate_sop_uid_rejected() -> None:
    study = _study()
    fields = {"file": "images/x.png", "size_bytes": 1, "format": "PNG", "width": 1, "height": 1}
    Image.objects.create(study=study, sha256="a" * 64, sop_instance_uid="9.9", **fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        Image.objects.create(study=study, sha256="a" * 64, **fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        Image.objects.create(study=_study("A2"), sha256="b" * 64, sop_instance_uid="9.9", **fields)


@pytest.mark.django_db
def test_only_one_active_version_per_model_name() -> None:
    fields = {"architecture": "x", "input_size": 8, "labels": [], "preprocess_config": {}, "artifact_dir": "/nowhere"}
    ModelVersion.objects.filter(name="m").delete()
    ModelVersion.objects.create(name="m", version=1, status="active", **fields)
    ModelVersion.objects.create(name="m", version=2, status="archived", **fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.create(name="m", version=3, status="active", **fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.create(name="m", version=2, **fields)


@pytest.mark.django_db(transaction=True)
def test_a_populated_database_upgrades_from_0009_with_the_stored_results_backfilled() -> None:
    """A hospital's database at classifier 0009 (studies, images, predictions) migrates to
    today's schema, and 0012's backfill stores each study's current result as the services
    would. The backfill runs today's service code while later columns (0013's
    ``Prediction.site_threshold``) do not exist yet, which only a populated run exercises."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    start = [("classifier", "0009_prediction_image_latest_index"), ("training", "0007_artifact_key")]
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(start)
        old = MigrationExecutor(connection).loader.project_state(start).apps
        version = old.get_model("training", "ModelVersion").objects.create(
            name="legacy",
            version=1,
            architecture="s0_cnn",
            input_size=32,
            labels=["NORMAL", "COVID19"],
            preprocess_config={},
            thresholds={"abnormal": 0.5},
            artifact_dir="/nonexistent",
        )
        patient = old.get_model("classifier", "Patient").objects.create(mrn="MIG-1")
        OldStudy, OldImage, OldPrediction = (old.get_model("classifier", n) for n in ("Study", "Image", "Prediction"))
        flagged = OldStudy.objects.create(patient=patient, accession_number="MIG-A")
        cleared = OldStudy.objects.create(patient=patient, accession_number="MIG-B")
        OldStudy.objects.create(patient=patient, accession_number="MIG-C")  # no images
        for study, p_abnormal, n in ((flagged, 0.9, 1), (cleared, 0.1, 2)):
            image = OldImage.objects.create(
                study=study,
                file=f"images/m/{n}.png",
                sha256=f"{n:064x}",
                size_bytes=1,
                format="PNG",
                width=8,
                height=8,
            )
            OldPrediction.objects.create(
                image=image,
                model_version=version,
                status="done",
                label="NORMAL",
                p_abnormal=p_abnormal,
                threshold=0.5,
                flag=p_abnormal >= 0.5,
            )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    stored = {s.accession_number: s for s in Study.objects.filter(accession_number__startswith="MIG-")}
    assert (stored["MIG-A"].has_images, stored["MIG-A"].current_flag) == (True, True)
    assert stored["MIG-A"].current_p_abnormal == pytest.approx(0.9)
    assert (stored["MIG-B"].has_images, stored["MIG-B"].current_flag) == (True, False)
    assert (stored["MIG-C"].has_images, stored["MIG-C"].current_flag) == (False, None)
    assert stored["MIG-A"].triage_base is not None and stored["MIG-A"].triage_base > stored["MIG-B"].triage_base
