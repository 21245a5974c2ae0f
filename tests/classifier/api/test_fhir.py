"""FHIR R4 resources, validated with the fhir.resources R4 (4.0.1) models."""

from __future__ import annotations

import pytest
from fhir.resources import __fhir_version__
from fhir.resources.diagnosticreport import DiagnosticReport
from fhir.resources.imagingstudy import ImagingStudy
from fhir.resources.observation import Observation
from fhir.resources.patient import Patient as FhirPatient

from classifier.services.reviews import review_submit
from tests.classifier.api.helpers import finished_prediction, registered_version

pytestmark = pytest.mark.django_db


def fetch_valid(client, path: str, model):
    response = client.get(path)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/fhir+json")
    return model.parse_obj(response.json())


def check_report(client, prediction_id: int, expected_status: str) -> DiagnosticReport:
    """The report and everything it references, each validated against its R4 model."""
    assert __fhir_version__ == "4.0.1"
    report = fetch_valid(client, f"/fhir/DiagnosticReport/{prediction_id}", DiagnosticReport)
    assert report.status == expected_status
    assert report.code.coding[0].system == "http://loinc.org"
    assert "decision support, not a diagnosis" in report.conclusion
    fetch_valid(client, f"/fhir/{report.subject.reference}", FhirPatient)
    fetch_valid(client, f"/fhir/{report.imagingStudy[0].reference}", ImagingStudy)
    total = 0.0
    for reference in report.result:
        observation = fetch_valid(client, f"/fhir/{reference.reference}", Observation)
        assert observation.device.reference == "#model" and observation.contained[0].resource_type == "Device"
        assert observation.status == ("final" if expected_status == "final" else "preliminary")
        total += float(observation.valueQuantity.value)
    assert abs(total - 1) < 1e-3
    return report


def test_report_is_preliminary_then_final_after_review(client_for, role_users, tmp_path) -> None:
    prediction = finished_prediction(role_users["Clinician"], registered_version(tmp_path))
    client = client_for("Clinician")
    report = check_report(client, prediction.pk, "preliminary")
    assert len(report.result) == 4
    assert prediction.model_version.artifact_sha256["model.tflite"] in report.extension[0].valueString
    review_submit(prediction=prediction, radiologist=role_users["Radiologist"], decision="confirm")
    final = check_report(client, prediction.pk, "final")
    assert "Radiologist confirmed" in final.conclusion


def test_report_leads_with_the_finding_and_labels_an_unvalidated_cause(client_for, role_users, tmp_path) -> None:
    """No age is recorded: the suggested cause is unvalidated, so it never heads the conclusion."""
    prediction = finished_prediction(role_users["Clinician"], registered_version(tmp_path))
    report = check_report(client_for("Clinician"), prediction.pk, "preliminary")
    assert report.conclusion.startswith("AI triage: Abnormal, likely pneumonia, p(abnormal) 0.800")
    assert "Suggested cause: bacterial pneumonia, not validated for a patient of unknown age" in report.conclusion
    api = client_for("Clinician").get(f"/api/v1/predictions/{prediction.pk}/").json()
    assert api["finding"]["headline"] == "Abnormal, likely pneumonia"
    assert (
        api["finding"]["suggested_cause"] == "PNEUMONIA_BACTERIAL" and api["finding"]["cause_status"] == "unvalidated"
    )


def test_unfinished_or_unknown_resources_are_operation_outcomes(client_for, role_users) -> None:
    from classifier.services.studies import StudyFields
    from classifier.services.uploads import image_upload
    from tests.conftest import synthetic_png

    outcome = image_upload(
        data=synthetic_png(96),
        filename="x.png",
        uploaded_by=role_users["Clinician"],
        fields=StudyFields(mrn="F-1", accession_number="FA-1"),
    )
    client = client_for("Clinician")
    for path in (
        f"/fhir/DiagnosticReport/{outcome.prediction.pk}",
        "/fhir/Patient/999999",
        "/fhir/Observation/abc",
        f"/fhir/Observation/{outcome.prediction.pk}-normal",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json()["resourceType"] == "OperationOutcome"
        assert response.json()["issue"][0]["code"] == "not-found"


def test_metadata_is_a_valid_capability_statement_of_what_is_served(client_for) -> None:
    from fhir.resources.capabilitystatement import CapabilityStatement

    statement = fetch_valid(client_for("Clinician"), "/fhir/metadata", CapabilityStatement)
    assert statement.fhirVersion == "4.0.1" and statement.kind == "instance"
    resources = {r.type: r for r in statement.rest[0].resource}
    assert set(resources) == {"Patient", "ImagingStudy", "DiagnosticReport", "Observation"}
    assert {p.name for p in resources["DiagnosticReport"].searchParam} >= {"patient", "status", "date"}
    assert {p.name for p in resources["ImagingStudy"].searchParam} >= {"patient", "status", "started"}
    assert [i.code for i in resources["Patient"].interaction] == ["read"]


def _search(client, path: str):
    from fhir.resources.bundle import Bundle

    bundle = fetch_valid(client, path, Bundle)
    assert bundle.type == "searchset"
    for entry in bundle.entry or []:
        model = DiagnosticReport if entry.resource.resource_type == "DiagnosticReport" else ImagingStudy
        model.parse_obj(entry.resource.dict())
    return bundle


def _ids(bundle) -> set[str]:
    return {entry.resource.id for entry in bundle.entry or []}


def test_diagnostic_report_search_by_patient_status_and_date(client_for, role_users, tmp_path) -> None:
    from classifier.models import Study

    version = registered_version(tmp_path)
    first = finished_prediction(role_users["Clinician"], version, accession="S-1")
    second = finished_prediction(role_users["Clinician"], version, accession="S-2")
    Study.objects.filter(pk=first.image.study_id).update(study_date="2026-01-05")
    Study.objects.filter(pk=second.image.study_id).update(study_date="2026-03-01")
    review_submit(prediction=first, radiologist=role_users["Radiologist"], decision="confirm")
    client = client_for("Clinician")
    patient = first.image.study.patient_id
    both = {str(first.pk), str(second.pk)}
    assert _ids(_search(client, "/fhir/DiagnosticReport")) == both
    found = _search(client, f"/fhir/DiagnosticReport?patient={patient}")
    assert _ids(found) == {str(first.pk)} and found.total == 1
    assert _ids(_search(client, f"/fhir/DiagnosticReport?patient=Patient/{patient}")) == {str(first.pk)}
    assert _ids(_search(client, "/fhir/DiagnosticReport?patient.identifier=urn:cxr-triage:mrn|MRN-S-2")) == {
        str(second.pk)
    }
    assert _ids(_search(client, "/fhir/DiagnosticReport?status=final")) == {str(first.pk)}
    assert _ids(_search(client, "/fhir/DiagnosticReport?status=preliminary")) == {str(second.pk)}
    assert _ids(_search(client, "/fhir/DiagnosticReport?status=preliminary,final")) == both
    assert _ids(_search(client, "/fhir/DiagnosticReport?date=2026-01")) == {str(first.pk)}
    assert _ids(_search(client, "/fhir/DiagnosticReport?date=ge2026-02-01")) == {str(second.pk)}
    assert _ids(_search(client, "/fhir/DiagnosticReport?date=ge2026-01-01&date=lt2026-03-01")) == {str(first.pk)}
    assert _ids(_search(client, "/fhir/DiagnosticReport?date=2025")) == set()
    paged = _search(client, "/fhir/DiagnosticReport?_count=1")
    assert paged.total == 2 and len(paged.entry) == 1 and [link.relation for link in paged.link] == ["self", "next"]
    assert client.get("/fhir/DiagnosticReport?date=yesterday").status_code == 400
    assert client.get("/fhir/DiagnosticReport?status=done").status_code == 400


def test_imaging_study_search_by_patient_status_and_started(client_for, role_users, tmp_path) -> None:
    from classifier.models import Patient, Study

    prediction = finished_prediction(role_users["Clinician"], registered_version(tmp_path), accession="I-1")
    Study.objects.filter(pk=prediction.image.study_id).update(study_date="2026-02-10")
    empty = Study.objects.create(patient=Patient.objects.create(mrn="I-2"), accession_number="I-2")
    client = client_for("Clinician")
    study = str(prediction.image.study_id)
    assert _ids(_search(client, "/fhir/ImagingStudy")) == {study, str(empty.pk)}
    assert _ids(_search(client, f"/fhir/ImagingStudy?patient={empty.patient_id}")) == {str(empty.pk)}
    assert _ids(_search(client, "/fhir/ImagingStudy?status=available")) == {study}
    assert _ids(_search(client, "/fhir/ImagingStudy?status=registered")) == {str(empty.pk)}
    assert _ids(_search(client, "/fhir/ImagingStudy?started=2026-02")) == {study}
    assert _ids(_search(client, "/fhir/ImagingStudy?started=lt2026-02-10")) == set()


def test_a_new_analysis_of_a_reviewed_image_is_preliminary_until_it_is_reviewed(
    client_for, role_users, tmp_path
) -> None:
    """The radiologist read the first analysis; a later one (another model version) has
    not been read, so its report is not "final" and does not claim the read as its own."""
    from django.utils import timezone

    from classifier.models import Prediction

    version = registered_version(tmp_path)
    first = finished_prediction(role_users["Clinician"], version, accession="RE-1")
    review_submit(prediction=first, radiologist=role_users["Radiologist"], decision="confirm")
    again = Prediction.objects.create(
        image=first.image,
        status=Prediction.Status.DONE,
        model_version=version,
        probabilities=first.probabilities,
        label=first.label,
        p_abnormal=first.p_abnormal,
        flag=first.flag,
        threshold=first.threshold,
        timings_ms={"total": 10.0},
        finished_at=timezone.now(),
    )
    client = client_for("Clinician")
    assert "Radiologist confirmed" in check_report(client, first.pk, "final").conclusion
    assert "Radiologist" not in check_report(client, again.pk, "preliminary").conclusion
    assert _ids(_search(client, "/fhir/DiagnosticReport?status=final")) == {str(first.pk)}
    assert _ids(_search(client, "/fhir/DiagnosticReport?status=preliminary")) == {str(again.pk)}
