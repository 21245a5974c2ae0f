"""Row builders for API tests that need a finished prediction or registered versions without TensorFlow."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from django.utils import timezone

from classifier.models import Prediction
from classifier.services.studies import StudyFields
from classifier.services.uploads import image_upload
from tests.conftest import synthetic_png

LABELS = ["NORMAL", "PNEUMONIA_BACTERIAL", "PNEUMONIA_VIRAL", "COVID19"]


def fake_artifact(directory: Path, *, seed: int = 0) -> Path:
    """An artifact directory that passes registry.artifact_verify (no real model inside)."""
    directory.mkdir(parents=True)
    files = {
        "model.keras": f"keras {seed}".encode(),
        "model.tflite": f"tflite {seed}".encode(),
        "preprocess.json": json.dumps({"input_size": 32}).encode(),
        "labels.json": json.dumps(LABELS).encode(),
        "thresholds.json": json.dumps({"abnormal": 0.5}).encode(),
        "metrics.json": json.dumps({"auc": 0.9 + seed / 100}).encode(),
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
    manifest = {"files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def registered_version(tmp_path: Path, seed: int = 0) -> Any:
    from training import registry

    return registry.version_register(source_dir=fake_artifact(tmp_path / f"artifact-{seed}", seed=seed))


def finished_prediction(user: Any, version: Any, *, accession: str = "FIN-1", p_abnormal: float = 0.8) -> Prediction:
    """A prediction as the worker leaves it (DONE, model recorded), written directly."""
    outcome = image_upload(
        data=synthetic_png(96, seed=hash(accession) % 100),
        filename="f.png",
        uploaded_by=user,
        fields=StudyFields(mrn=f"MRN-{accession}", accession_number=accession),
    )
    probabilities = {
        "NORMAL": 1 - p_abnormal,
        "PNEUMONIA_BACTERIAL": p_abnormal - 0.1,
        "PNEUMONIA_VIRAL": 0.05,
        "COVID19": 0.05,
    }
    Prediction.objects.filter(pk=outcome.prediction.pk).update(
        status=Prediction.Status.DONE,
        model_version=version,
        probabilities=probabilities,
        label="PNEUMONIA_BACTERIAL",
        p_abnormal=p_abnormal,
        flag=p_abnormal >= 0.5,
        threshold=0.5,
        timings_ms={"total": 12.0},
        finished_at=timezone.now(),
    )
    return Prediction.objects.get(pk=outcome.prediction.pk)
