"""Idempotency-Key: replay of the original response, 409 on reuse, no duplicates under concurrency."""

from __future__ import annotations

import threading

import pytest
import requests

from classifier.integrations import IdempotencyRecord
from classifier.models import Image, Patient, Prediction, Study
from tests.conftest import synthetic_png


@pytest.mark.django_db
def test_retry_returns_the_original_response(client_for) -> None:
    client = client_for("Clinician")
    body = {"mrn": "I-1", "accession_number": "IA-1"}
    first = client.post("/api/v1/studies/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    second = client.post("/api/v1/studies/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == second.status_code == 201  # replayed, although the study now exists
    assert first.json() == second.json() and second["Idempotent-Replayed"] == "true"
    assert Study.objects.count() == 1 and IdempotencyRecord.objects.count() == 1


@pytest.mark.django_db
def test_same_key_with_a_different_body_is_409(client_for) -> None:
    client = client_for("Clinician")
    client.post("/api/v1/patients/", {"mrn": "I-2"}, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    clash = client.post("/api/v1/patients/", {"mrn": "I-3"}, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "idempotency_key_reused"
    other_path = client.post("/api/v1/studies/", {"mrn": "I-2"}, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    assert other_path.status_code == 409
    assert not Patient.objects.filter(mrn="I-3").exists()


@pytest.mark.django_db
def test_keys_are_scoped_per_user_and_refusals_are_replayed_without_side_effects(client_for) -> None:
    body = {"mrn": "I-4", "accession_number": "IA-4"}
    assert (
        client_for("Clinician").post("/api/v1/studies/", body, format="json", HTTP_IDEMPOTENCY_KEY="shared").status_code
        == 201
    )
    # Another integration with the same key is a different request: the natural key answers 200.
    assert (
        client_for("Radiologist")
        .post("/api/v1/studies/", body, format="json", HTTP_IDEMPOTENCY_KEY="shared")
        .status_code
        == 200
    )
    bad = {"mrn": "OTHER", "accession_number": "IA-4"}
    client = client_for("Admin")
    first = client.post("/api/v1/studies/", bad, format="json", HTTP_IDEMPOTENCY_KEY="bad")
    again = client.post("/api/v1/studies/", bad, format="json", HTTP_IDEMPOTENCY_KEY="bad")
    assert first.status_code == again.status_code == 409 and first.json() == again.json()
    assert not Patient.objects.filter(mrn="OTHER").exists()
    too_long = client.post("/api/v1/patients/", {"mrn": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="k" * 300)
    assert too_long.status_code == 400


def test_concurrent_retries_create_one_study_and_answer_identically(live_server, transactional_db, api_tokens) -> None:
    """Eight threads send the same upload with the same key at once (PostgreSQL, real server threads)."""
    png = synthetic_png(96, seed=9)
    barrier = threading.Barrier(8)
    results: list[tuple[int, dict]] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            barrier.wait(timeout=10)
            response = requests.post(
                f"{live_server.url}/api/v1/studies/",
                timeout=60,
                headers={"Authorization": f"Bearer {api_tokens['Clinician']}", "Idempotency-Key": "upload-42"},
                data={"mrn": "C-1", "accession_number": "CA-1"},
                files={"images": ("c.png", png, "image/png")},
            )
            results.append((response.status_code, response.json()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not errors, errors
    assert len(results) == 8
    assert {status for status, _ in results} == {201}, results
    assert all(body == results[0][1] for _, body in results)
    assert Study.objects.count() == 1 and Image.objects.count() == 1 and Prediction.objects.count() == 1
    assert IdempotencyRecord.objects.count() == 1
