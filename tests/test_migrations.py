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
