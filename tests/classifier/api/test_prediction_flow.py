"""End to end with a real worker: API upload -> finished prediction -> heatmap, review, FHIR, re-run."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from classifier.models import Prediction
from tests.classifier.api.test_fhir import check_report
from tests.conftest import synthetic_png, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow]


def test_upload_to_reviewed_report(celery_worker_proc, active_tiny_model, client_for) -> None:
    worker = celery_worker_proc()
    clinician, radiologist = client_for("Clinician"), client_for("Radiologist")
    created = clinician.post(
        "/api/v1/studies/",
        {
            "mrn": "E2E-1",
            "accession_number": "E2E-A1",
            "images": [SimpleUploadedFile("chest.png", synthetic_png(128, seed=11))],
        },
        format="multipart",
    )
    assert created.status_code == 201, created.content
    pk = created.json()["study"]["images"][0]["latest_prediction"]["id"]
    wait_for(lambda: Prediction.objects.get(pk=pk).status in ("done", "failed"), 120, message=worker.output)

    result = clinician.get(f"/api/v1/predictions/{pk}/").json()
    assert result["status"] == "done", result
    assert abs(sum(result["probabilities"].values()) - 1) < 1e-4
    assert result["flag"] == (result["p_abnormal"] >= result["threshold"])
    assert result["model"] == {
        "id": active_tiny_model.pk,
        "name": active_tiny_model.name,
        "version": active_tiny_model.version,
        "architecture": active_tiny_model.architecture,
        "artifact_sha256": active_tiny_model.artifact_sha256["model.tflite"],
    }
    assert result["notice"] == "decision support, not a diagnosis" and "total" in result["timings_ms"]
    assert isinstance(result["priority"], float)
    heatmap = clinician.get(result["heatmap_url"])
    assert heatmap.status_code == 200 and heatmap["Content-Type"] == "image/png"
    assert b"".join(heatmap.streaming_content).startswith(b"\x89PNG\r\n\x1a\n")
    study_predictions = clinician.get(f"/api/v1/studies/{created.json()['study']['id']}/predictions/").json()
    assert [p["id"] for p in study_predictions["results"]] == [pk]

    check_report(clinician, pk, "preliminary")
    assert (
        clinician.post(f"/api/v1/predictions/{pk}/reviews/", {"decision": "confirm"}, format="json").status_code == 403
    )
    review = radiologist.post(
        f"/api/v1/predictions/{pk}/reviews/", {"decision": "confirm", "comment": "agree"}, format="json"
    )
    assert review.status_code == 201 and review.json()["label"] == result["label"]
    assert clinician.get(f"/api/v1/predictions/{pk}/").json()["latest_review"]["decision"] == "confirm"
    check_report(clinician, pk, "final")

    rerun = clinician.post(f"/api/v1/predictions/{pk}/rerun/")
    assert rerun.status_code == 202 and rerun.json()["id"] != pk
    new = rerun.json()["id"]
    wait_for(lambda: Prediction.objects.get(pk=new).status in ("done", "failed"), 120, message=worker.output)
    assert Prediction.objects.get(pk=new).model_version_id == active_tiny_model.pk
