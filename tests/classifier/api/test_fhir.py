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
