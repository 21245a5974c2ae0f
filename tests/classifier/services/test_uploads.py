"""Uploads never file an image under the wrong patient, never leave an empty study, never
accept a second image under a used SOPInstanceUID."""

from __future__ import annotations

from pathlib import Path

import pytest

from classifier.models import AuditEvent, Image, Patient, Prediction, Study
from classifier.selectors.studies import worklist
from classifier.services.studies import StudyFields, study_get_or_create, study_refresh
from classifier.services.uploads import image_upload
from tests.conftest import synthetic_dicom, synthetic_png
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _counts() -> tuple[int, int, int, int]:
    return Patient.objects.count(), Study.objects.count(), Image.objects.count(), Prediction.objects.count()


def _files(settings) -> set[Path]:
    stored = Path(settings.MEDIA_ROOT) / "images"
    return {p for p in stored.rglob("*") if p.is_file()} if stored.exists() else set()


def test_a_dicom_sent_again_creates_nothing() -> None:
    dicom = synthetic_dicom(mrn="MRN-R1", accession="ACC-R1")
    first = image_upload(data=dicom, filename="a.dcm", uploaded_by=None)
    before = _counts()
    again = image_upload(data=dicom, filename="a.dcm", uploaded_by=None)
    assert first.ok and again.ok and again.duplicate and again.image == first.image
    assert _counts() == before


def test_a_dicom_resent_without_typed_fields_leaves_no_empty_study() -> None:
    """The reported sequence: filed once with typed values, then sent again as it is (the API)."""
    dicom = synthetic_dicom(mrn="MRN-H", accession="ACC-H")
    image_upload(
        data=dicom, filename="a.dcm", uploaded_by=None, fields=StudyFields(mrn="MRN-T", accession_number="ACC-T")
    )
    image_upload(data=dicom, filename="a.dcm", uploaded_by=None)
    assert not Study.objects.filter(images__isnull=True).exists()
    assert not Patient.objects.filter(studies__isnull=True).exists()
    assert Image.objects.get().study.patient.mrn == "MRN-H"  # its own header's patient


def test_a_failed_upload_leaves_no_patient_or_study(monkeypatch, settings) -> None:
    import classifier.services.uploads as uploads

    def broken(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(uploads, "prediction_request", broken)
    files_before = _files(settings)
    with pytest.raises(RuntimeError):
        image_upload(data=synthetic_dicom(mrn="MRN-F1", accession="ACC-F1"), filename="f.dcm", uploaded_by=None)
    assert _counts() == (0, 0, 0, 0)
    assert _files(settings) == files_before


def test_a_study_without_images_is_never_on_the_worklist_nor_escalated(settings) -> None:
    study, _ = study_get_or_create(fields=StudyFields(mrn="MRN-E1", accession_number="ACC-E1"), requested_by=None)
    Study.objects.filter(pk=study.pk).update(created_at=study.created_at.replace(year=2020))
    study_refresh(study.pk)
    study.refresh_from_db()
    assert study.priority == 0.0
    assert not worklist().filter(pk=study.pk).exists()


def test_another_image_with_a_used_sop_uid_is_a_conflict_and_audited() -> None:
    image_upload(data=synthetic_dicom(sop_uid="1.2.3.4.5.6", seed=1), filename="a.dcm", uploaded_by=None)
    before = _counts()
    other = image_upload(data=synthetic_dicom(sop_uid="1.2.3.4.5.6", seed=2), filename="b.dcm", uploaded_by=None)
    assert not other.ok and other.error_code == "sop_conflict" and other.error_status == 409
    assert "1.2.3.4.5.6" in other.error_message and other.image is None
    assert _counts() == before
    assert AuditEvent.objects.filter(action="upload_conflict").count() == 1


def test_each_dicom_is_filed_under_its_own_headers_patient() -> None:
    a = image_upload(data=synthetic_dicom(mrn="MRN-A", accession="ACC-A", seed=3), filename="a.dcm", uploaded_by=None)
    b = image_upload(data=synthetic_dicom(mrn="MRN-B", accession="ACC-B", seed=4), filename="b.dcm", uploaded_by=None)
    assert a.image.study.patient.mrn == "MRN-A" and b.image.study.patient.mrn == "MRN-B"


def test_a_typed_identity_that_contradicts_the_header_is_a_conflict() -> None:
    typed = StudyFields(mrn="MRN-A", accession_number="ACC-A")
    other = image_upload(
        data=synthetic_dicom(mrn="MRN-B", accession="ACC-B"), filename="b.dcm", uploaded_by=None, fields=typed
    )
    assert other.error_code == "header_conflict" and other.error_status == 409
    assert "MRN-A" in other.error_message and "MRN-B" in other.error_message
    assert _counts() == (0, 0, 0, 0)


def test_an_existing_mrn_with_another_name_needs_confirmation_and_keeps_the_stored_name() -> None:
    user = UserFactory()
    image_upload(
        data=synthetic_png(64, seed=1),
        filename="a.png",
        uploaded_by=user,
        fields=StudyFields(mrn="MRN-N1", patient_name="Doe, Jane", accession_number="ACC-N1"),
    )
    typed = StudyFields(mrn="MRN-N1", patient_name="Roe, Richard", accession_number="ACC-N2")
    refused = image_upload(data=synthetic_png(64, seed=2), filename="b.png", uploaded_by=user, fields=typed)
    assert refused.error_code == "patient_unconfirmed" and "Doe, Jane" in refused.error_message
    assert Study.objects.count() == 1
    typed.patient_confirmed = True
    confirmed = image_upload(data=synthetic_png(64, seed=2), filename="b.png", uploaded_by=user, fields=typed)
    assert confirmed.ok and confirmed.image.study.patient.name == "Doe, Jane"
    # The same name written the DICOM way is the same person.
    same = StudyFields(mrn="MRN-N1", patient_name="JANE DOE", accession_number="ACC-N3")
    assert image_upload(data=synthetic_png(64, seed=3), filename="c.png", uploaded_by=user, fields=same).ok
