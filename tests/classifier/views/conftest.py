"""Fixtures for the page tests: a study with a finished prediction, a registered version with plots."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client

from tests.conftest import synthetic_png

ROLES = ("Clinician", "Radiologist", "Admin", "none", "anonymous")


@pytest.fixture
def clients(role_users) -> dict[str, Client]:
    """A logged-in test client per role, plus an anonymous one."""
    out = {}
    for role in ROLES:
        client = Client()
        if role != "anonymous":
            client.force_login(role_users[role])
        out[role] = client
    return out


@pytest.fixture
def model_version(db, tmp_path: Path):
    """A registered (not necessarily loadable) version with plots and metrics, made active."""
    from training.models import ModelVersion

    plots = tmp_path / "artifact" / "plots"
    plots.mkdir(parents=True)
    for name in ("roc", "confusion_matrix", "training_curves", "reliability"):
        (plots / f"{name}.png").write_bytes(synthetic_png(64, seed=1))
    # migrate registers the shipped model as the active version: take the next number.
    existing = ModelVersion.objects.filter(name="cxr-triage")
    number = max(existing.values_list("version", flat=True), default=0) + 1
    existing.filter(status="active").update(status="archived")
    return ModelVersion.objects.create(
        name="cxr-triage",
        version=number,
        architecture="s0_cnn",
        input_size=32,
        labels=["NORMAL", "PNEUMONIA_BACTERIAL", "PNEUMONIA_VIRAL", "COVID19"],
        preprocess_config={},
        metrics={"val": {"binary": {"sensitivity": 0.95, "specificity": 0.7, "auc": 0.91, "n": 40, "n_pos": 25}}},
        thresholds={"abnormal": 0.4},
        artifact_dir=str(tmp_path / "artifact"),
        model_card="# card",
        data_snapshot={"counts": {"train": {"ds/NORMAL": 10}, "val": {"ds/NORMAL": 4}}},
        status="active",
    )


@pytest.fixture
def done_study(role_users, model_version):
    """A study with one image whose prediction is DONE and has a stored heatmap."""
    from classifier.models import Image, Patient, Prediction, Study

    patient = Patient.objects.create(mrn="MRN-T1", name="Test Patient")
    study = Study.objects.create(
        patient=patient,
        accession_number="ACC-T1",
        status=Study.Status.DONE,
        requesting_clinician=role_users["Clinician"],
        clinical_notes="Cough, fever.",
    )
    png = synthetic_png(64)
    name = default_storage.save("images/t1/t1.png", ContentFile(png))
    image = Image.objects.create(
        study=study,
        file=name,
        sha256="0" * 64,
        size_bytes=len(png),
        format="PNG",
        width=64,
        height=64,
        uploaded_by=role_users["Clinician"],
    )
    heatmap = default_storage.save("heatmaps/t1/h1.png", ContentFile(synthetic_png(32, seed=2)))
    Prediction.objects.create(
        image=image,
        model_version=model_version,
        status=Prediction.Status.DONE,
        probabilities={"NORMAL": 0.2, "PNEUMONIA_BACTERIAL": 0.5, "PNEUMONIA_VIRAL": 0.2, "COVID19": 0.1},
        label="PNEUMONIA_BACTERIAL",
        p_abnormal=0.8,
        flag=True,
        threshold=0.4,
        runtime="tflite",
        heatmap=heatmap,
        timings_ms={"total": 120.0},
    )
    from classifier.services.studies import study_refresh

    study_refresh(study.pk)  # as the worker does when it stores a result
    study.refresh_from_db()
    return study
