"""Upload endpoints and review submission through the pages (no worker needed)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from classifier.models import AuditEvent, Image, Prediction, Review, Study
from tests.conftest import synthetic_dicom, synthetic_png

pytestmark = pytest.mark.django_db

FIELDS = {"mrn": "MRN-U1", "accession_number": "ACC-U1", "patient_name": "Upload Test", "clinical_notes": "fever"}


def _file(data: bytes, name: str):
    handle = io.BytesIO(data)
    handle.name = name
    return handle


def dicom_bytes(*, mrn: str = "MRN-D1", accession: str = "ACC-D1", size: int = 96) -> bytes:
    """The upload pages' DICOM: Jane Doe, studied 2024-03-01."""
    return synthetic_dicom(
        mrn=mrn,
        accession=accession,
        size=size,
        seed=7,
        patient_name="Doe^Jane",
        birth_date="19700102",
        study_date="20240301",
    )


def test_upload_endpoint_creates_image_and_pending_prediction(clients) -> None:
    response = clients["Clinician"].post("/studies/upload/file/", {**FIELDS, "file": _file(synthetic_png(96), "a.png")})
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["ok"] and data["study_url"] == f"/studies/{data['study_id']}/"
    image = Image.objects.get(pk=data["image_id"])
    assert image.format == "PNG" and image.study.accession_number == "ACC-U1"
    assert Prediction.objects.get(pk=data["prediction_id"]).status == Prediction.Status.PENDING
    assert AuditEvent.objects.filter(action="upload", object_id=str(image.pk)).exists()


def test_pdf_named_png_gets_a_clear_per_file_error(clients) -> None:
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n"
    response = clients["Clinician"].post("/studies/upload/file/", {**FIELDS, "file": _file(pdf, "scan.png")})
    assert response.status_code == 400
    data = response.json()
    assert not data["ok"] and data["filename"] == "scan.png" and data["error_message"].endswith(".")
    assert not Image.objects.exists()


def test_missing_identifiers_are_named_in_the_error(clients) -> None:
    data = clients["Clinician"].post("/studies/upload/file/", {"file": _file(synthetic_png(96), "a.png")}).json()
    assert data["error_code"] == "missing_field" and "MRN" in data["error_message"]


def test_plain_form_uploads_several_files_and_reports_each(clients) -> None:
    pdf = b"%PDF-1.4 not an image"
    response = clients["Clinician"].post(
        "/studies/upload/", {**FIELDS, "files": [_file(synthetic_png(96, seed=1), "good.png"), _file(pdf, "bad.png")]}
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "good.png" in body and "bad.png" in body and "open the study" in body
    assert Image.objects.count() == 1


def test_probe_reads_the_dicom_header_for_the_file_row(clients) -> None:
    data = clients["Clinician"].post("/studies/upload/probe/", {"file": _file(dicom_bytes(), "x.dcm")}).json()
    assert data["ok"] and data["format"] == "DICOM"
    assert data["header"]["mrn"] == "MRN-D1" and data["header"]["accession_number"] == "ACC-D1"
    assert data["header"]["sex"] == "F" and data["header"]["view_position"] == "PA"
    assert data["header"]["patient_name"] == "Doe, Jane" and data["identified"] is True


def test_dicom_upload_takes_identifiers_from_the_header(clients) -> None:
    data = clients["Clinician"].post("/studies/upload/file/", {"file": _file(dicom_bytes(), "x.dcm")}).json()
    assert data["ok"], data
    study = Study.objects.get(pk=data["study_id"])
    assert study.patient.mrn == "MRN-D1" and study.view_position == "PA"


def test_upload_is_refused_without_the_role(clients) -> None:
    assert (
        clients["none"].post("/studies/upload/file/", {**FIELDS, "file": _file(synthetic_png(), "a.png")}).status_code
        == 403
    )
    assert clients["anonymous"].post("/studies/upload/file/", {}).status_code == 302


def test_radiologist_can_correct_and_clinician_cannot(clients, done_study) -> None:
    prediction = Prediction.objects.get(image__study=done_study)
    form = {"prediction": prediction.pk, "decision": "correct", "label": "COVID19", "comment": "GGOs"}
    assert clients["Clinician"].post(f"/studies/{done_study.pk}/review/", form).status_code == 403
    assert not Review.objects.exists()
    response = clients["Radiologist"].post(f"/studies/{done_study.pk}/review/", form)
    assert response.status_code == 302
    review = Review.objects.get()
    assert review.label == "COVID19" and review.decision == "correct" and review.radiologist.username == "u-radiologist"
    page = clients["Radiologist"].get(f"/studies/{done_study.pk}/").content.decode()
    assert "COVID-19" in page and "GGOs" in page and "current label" in page


def test_review_confirm_in_queue_moves_on(clients, done_study) -> None:
    prediction = Prediction.objects.get(image__study=done_study)
    response = clients["Radiologist"].post(
        f"/studies/{done_study.pk}/review/", {"prediction": prediction.pk, "decision": "confirm", "queue": "1"}
    )
    assert response.status_code == 302 and response["Location"] == "/review/next/"
    assert Review.objects.get().label == "PNEUMONIA_BACTERIAL"
    # nothing else waits: the queue says so and lands on the worklist
    response = clients["Radiologist"].get("/review/next/", follow=True)
    assert b"No study is waiting for review" in response.content


def test_correct_without_label_is_refused_with_a_message(clients, done_study) -> None:
    prediction = Prediction.objects.get(image__study=done_study)
    response = clients["Radiologist"].post(
        f"/studies/{done_study.pk}/review/", {"prediction": prediction.pk, "decision": "correct"}, follow=True
    )
    assert b"Choose the correct label" in response.content and not Review.objects.exists()


def test_review_next_opens_the_waiting_study(clients, done_study) -> None:
    response = clients["Radiologist"].get("/review/next/")
    assert response["Location"] == f"/studies/{done_study.pk}/?queue=1"


def test_agreement_stats(clients, done_study, role_users, model_version) -> None:
    from classifier.selectors.agreement import cohen_kappa, review_agreement

    prediction = Prediction.objects.get(image__study=done_study)
    Review.objects.create(
        prediction=prediction,
        image=prediction.image,
        radiologist=role_users["Radiologist"],
        decision="confirm",
        label=prediction.label,
    )
    Review.objects.create(
        prediction=prediction,
        image=prediction.image,
        radiologist=role_users["Admin"],
        decision="correct",
        label="NORMAL",
    )
    stats = review_agreement()
    by_person = {row.key: row for row in stats["by_radiologist"]}
    assert by_person["u-radiologist"].confirm_fraction == 1.0 and by_person["u-admin"].confirm_fraction == 0.0
    assert stats["by_version"][0].key == f"cxr-triage v{model_version.version}"
    assert stats["by_version"][0].reviews == 2
    assert cohen_kappa([("A", "A"), ("B", "B")]) == 1.0
    assert cohen_kappa([("A", "B"), ("B", "A")]) == -1.0
    assert b"u-radiologist" in clients["Radiologist"].get("/review/stats/").content


def test_flag_performance_on_reviewed_studies(clients, done_study, role_users, model_version) -> None:
    """Sensitivity/specificity of the flag against each prediction's latest review, with
    Wilson CIs, and the threshold that would have met the target here; a version whose
    flag misses pneumonias here is marked below its target."""
    from classifier.selectors.agreement import flag_performance

    first = Image.objects.get(study=done_study)
    radiologist = role_users["Radiologist"]
    rng = np.random.default_rng(0)
    # 30 abnormal (radiologist's label) and 30 normal films; the model scores abnormal ones
    # higher but its served threshold 0.4 misses the 12 abnormal films scored 0.3-0.4.
    scores = np.r_[rng.uniform(0.45, 0.95, 18), rng.uniform(0.30, 0.39, 12), rng.uniform(0.05, 0.35, 30)]
    for i, score in enumerate(scores):
        image = Image.objects.create(
            study=done_study,
            file=first.file.name,
            sha256=f"{i + 1:064d}",
            size_bytes=1,
            format="PNG",
            width=64,
            height=64,
            uploaded_by=first.uploaded_by,
        )
        prediction = Prediction.objects.create(
            image=image,
            model_version=model_version,
            status=Prediction.Status.DONE,
            label="COVID19",
            p_abnormal=float(score),
            flag=bool(score >= 0.4),
            threshold=0.4,
            thresholds={"abnormal": 0.4, "target_sensitivity": 0.95},
        )
        label = "PNEUMONIA_BACTERIAL" if i < 30 else "NORMAL"
        if i == 0:  # a first read corrected later: only the latest review counts
            Review.objects.create(
                prediction=prediction, image=image, radiologist=radiologist, decision="correct", label="NORMAL"
            )
        Review.objects.create(
            prediction=prediction, image=image, radiologist=radiologist, decision="correct", label=label
        )
    (row,) = flag_performance()  # done_study's own prediction has no review
    assert (row.n, row.n_abnormal) == (60, 30)
    assert row.sensitivity == pytest.approx(18 / 30) and row.specificity == pytest.approx(1.0)
    assert row.sensitivity_ci[1] < 0.95 and row.below_target
    assert row.served_thresholds == [0.4]
    # 95 % of 30 needs 29 flagged: the 29th highest abnormal score.
    assert row.local_threshold == pytest.approx(np.sort(scores[:30])[::-1][28])
    assert row.local_specificity == pytest.approx(np.mean(scores[30:] < row.local_threshold))
    page = clients["Radiologist"].get("/review/stats/").content.decode()
    assert "this hospital&#x27;s reviewed studies" in page or "this hospital's reviewed studies" in page
    assert "below the target 0.95" in page and f"{row.local_threshold:.4f}" in page
    assert page.count("reviewed studies</h2>") == 1 and "<title>Review agreement" in page


def test_rerun_keeps_the_old_prediction(clients, done_study) -> None:
    image = Image.objects.get(study=done_study)
    assert clients["Clinician"].post(f"/images/{image.pk}/rerun/").status_code == 302
    assert image.predictions.count() == 2
    assert image.predictions.filter(status="done").count() == 1
