"""FHIR R4 (4.0.1) read endpoints: Patient, ImagingStudy, DiagnosticReport, Observation.

A finished prediction is a DiagnosticReport (``preliminary`` until a radiologist reviews
it, then ``final``) whose results are one Observation per class probability, ids
``<prediction>-<class>``. The producing model travels as a contained Device on each
Observation and as an extension on the report. Errors are OperationOutcome resources.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import renderers
from rest_framework.request import Request
from rest_framework.response import Response

from classifier.api.base import Api
from classifier.findings import NOTICE
from classifier.models import Label, Patient, Prediction, Study
from classifier.selectors.predictions import prediction_finding_of
from classifier.selectors.reviews import review_of_prediction
from training.models import ModelVersion

LOINC, DICOM_UID = "http://loinc.org", "urn:dicom:uid"
MRN_SYSTEM = "urn:cxr-triage:mrn"
MODEL_EXTENSION = "urn:cxr-triage:fhir:StructureDefinition:model-version"
# LOINC: 36554-4 "XR Chest Single view", 36643-5 "XR Chest 2 Views" (24627-2 is CT Chest).
SINGLE_VIEW = {"system": LOINC, "code": "36554-4", "display": "XR Chest Single view"}
TWO_VIEWS = {"system": LOINC, "code": "36643-5", "display": "XR Chest 2 Views"}
RADIOLOGY = {"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD", "display": "Radiology"}
ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    429: "throttled",
}


class FhirJsonRenderer(renderers.JSONRenderer):
    media_type = "application/fhir+json"
    format = "fhir"


def _instant(value: Any) -> str | None:
    return value.isoformat() if value else None


def patient_resource(patient: Patient) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": str(patient.pk),
        "identifier": [{"system": MRN_SYSTEM, "value": patient.mrn}],
    }
    if patient.name:
        resource["name"] = [{"text": patient.name}]
    if patient.sex:
        resource["gender"] = {"F": "female", "M": "male", "O": "other"}.get(patient.sex, "unknown")
    if patient.birth_date:
        resource["birthDate"] = patient.birth_date.isoformat()
    return resource


def imaging_study_resource(study: Study) -> dict[str, Any]:
    images = list(study.images.all())
    resource: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "id": str(study.pk),
        "status": "available" if images else "registered",
        "subject": {"reference": f"Patient/{study.patient_id}"},
        "identifier": [
            {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]},
                "value": study.accession_number,
            }
        ],
        "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": study.modality or "CR"}],
        "numberOfInstances": len(images),
    }
    if study.study_instance_uid:
        resource["identifier"].insert(0, {"system": DICOM_UID, "value": f"urn:oid:{study.study_instance_uid}"})
    if study.study_date:
        resource["started"] = study.study_date.isoformat()
    if study.clinical_notes:
        resource["description"] = study.clinical_notes[:1024]
    return resource


def _model_device(prediction: Prediction) -> dict[str, Any]:
    version = _version(prediction)
    return {
        "resourceType": "Device",
        "id": "model",
        "deviceName": [{"name": version.name, "type": "model-name"}],
        "version": [{"value": str(version.version)}],
        "identifier": [
            {
                "system": "urn:cxr-triage:artifact-sha256",
                "value": (version.artifact_sha256 or {}).get("model.tflite", ""),
            }
        ],
    }


def _observation_id(prediction: Prediction, label: str) -> str:
    return f"{prediction.pk}-{label.lower().replace('_', '-')}"


def observation_resource(prediction: Prediction, label: str) -> dict[str, Any]:
    display = Label(label).label if label in Label.values else label
    return {
        "resourceType": "Observation",
        "id": _observation_id(prediction, label),
        "contained": [_model_device(prediction)],
        "status": "final" if review_of_prediction(prediction) else "preliminary",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "imaging",
                        "display": "Imaging",
                    }
                ]
            }
        ],
        "code": {"text": f"AI probability of {display}"},
        "subject": {"reference": f"Patient/{prediction.image.study.patient_id}"},
        "effectiveDateTime": _instant(prediction.finished_at),
        "valueQuantity": {
            "value": round(float(prediction.probabilities[label]), 6),
            "unit": "probability",
            "system": "http://unitsofmeasure.org",
            "code": "1",
        },
        "device": {"reference": "#model"},
        "derivedFrom": [{"reference": f"ImagingStudy/{prediction.image.study_id}"}],
        "note": [{"text": NOTICE}],
    }


def diagnostic_report_resource(prediction: Prediction) -> dict[str, Any]:
    study, version = prediction.image.study, _version(prediction)
    review = review_of_prediction(prediction)
    finding = prediction_finding_of(prediction)
    cause = f" {finding.cause_note}" if finding.cause_note else ""
    where = "this hospital's " if prediction.threshold_source == "site" else ""
    ai = (
        f"AI triage: {finding.headline}, p(abnormal) {prediction.p_abnormal:.3f} "
        f"({'flagged' if prediction.flag else 'not flagged'} at {where}threshold {prediction.threshold:.3f}), "
        f"model {version.name} v{version.version}.{cause}"
    )
    read = f" Radiologist {review.decision}ed: {review.label}." if review else ""
    return {
        "resourceType": "DiagnosticReport",
        "id": str(prediction.pk),
        "extension": [
            {
                "url": MODEL_EXTENSION,
                "valueString": f"{version.name} v{version.version} sha256:"
                f"{(version.artifact_sha256 or {}).get('model.tflite', '')}",
            }
        ],
        "status": "final" if review else "preliminary",
        "category": [{"coding": [RADIOLOGY]}],
        "code": {"coding": [TWO_VIEWS if study.images.count() >= 2 else SINGLE_VIEW], "text": "Chest X-ray"},
        "subject": {"reference": f"Patient/{study.patient_id}"},
        "effectiveDateTime": study.study_date.isoformat() if study.study_date else _instant(study.created_at),
        "issued": _instant(review.created_at if review else prediction.finished_at),
        "imagingStudy": [{"reference": f"ImagingStudy/{study.pk}"}],
        "result": [
            {"reference": f"Observation/{_observation_id(prediction, label)}"}
            for label in sorted(prediction.probabilities)
        ],
        "conclusion": f"{ai}{read} This is {NOTICE}.",
    }


def operation_outcome(status_code: int, message: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": ISSUE_CODES.get(status_code, "processing"), "diagnostics": message}],
    }


class FhirApi(Api):
    role_actions = {"GET": "view_studies"}
    renderer_classes = [FhirJsonRenderer, renderers.JSONRenderer]

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        error = (response.data or {}).get("error", {}) if isinstance(response.data, dict) else {}
        response.data = operation_outcome(response.status_code, error.get("message", "Request failed."))
        return response

    def fhir(self, resource: dict[str, Any], obj: Any) -> Response:
        self.audit("fhir_read", obj, resource=resource["resourceType"])
        return Response(resource, content_type="application/fhir+json")


def _version(prediction: Prediction) -> ModelVersion:
    """The producing model of a finished prediction (``finished_prediction`` guarantees one)."""
    if prediction.model_version is None:
        raise Http404("Only finished predictions are reports.")
    return prediction.model_version


def finished_prediction(pk: int) -> Prediction:
    prediction = get_object_or_404(Prediction.objects.select_related("model_version", "image__study"), pk=pk)
    if prediction.status != Prediction.Status.DONE or prediction.model_version is None:
        raise Http404("Only finished predictions are reports.")
    return prediction


class FhirPatientApi(FhirApi):
    @extend_schema(operation_id="fhir_patient_read", responses={(200, "application/fhir+json"): OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: int) -> Response:
        patient = get_object_or_404(Patient, pk=pk)
        return self.fhir(patient_resource(patient), patient)


class FhirImagingStudyApi(FhirApi):
    @extend_schema(
        operation_id="fhir_imagingstudy_read", responses={(200, "application/fhir+json"): OpenApiTypes.OBJECT}
    )
    def get(self, request: Request, pk: int) -> Response:
        study = get_object_or_404(Study, pk=pk)
        return self.fhir(imaging_study_resource(study), study)


class FhirDiagnosticReportApi(FhirApi):
    @extend_schema(
        operation_id="fhir_diagnosticreport_read", responses={(200, "application/fhir+json"): OpenApiTypes.OBJECT}
    )
    def get(self, request: Request, pk: int) -> Response:
        prediction = finished_prediction(pk)
        return self.fhir(diagnostic_report_resource(prediction), prediction)


class FhirObservationApi(FhirApi):
    @extend_schema(
        operation_id="fhir_observation_read", responses={(200, "application/fhir+json"): OpenApiTypes.OBJECT}
    )
    def get(self, request: Request, observation_id: str) -> Response:
        prediction_id, _, _slug = observation_id.partition("-")
        if not prediction_id.isdigit():
            raise Http404("No such observation.")
        prediction = finished_prediction(int(prediction_id))
        labels = {_observation_id(prediction, label): label for label in prediction.probabilities}
        if observation_id not in labels:
            raise Http404("No such observation.")
        return self.fhir(observation_resource(prediction, labels[observation_id]), prediction)
