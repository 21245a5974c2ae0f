"""FHIR R4 search and the server's CapabilityStatement (``/fhir/metadata``).

``GET /fhir/DiagnosticReport?patient=&status=&date=`` and
``GET /fhir/ImagingStudy?patient=&status=&started=`` answer a ``searchset`` Bundle.
``patient`` takes a logical id or ``Patient/<id>``; ``patient.identifier`` takes an MRN
(optionally ``system|value``); ``status`` a comma-separated list; dates take the R4
prefixes eq, ne, lt, le, gt, ge with the precision of the value (``2026``, ``2026-01``,
``2026-01-05``). Parameters the server does not support are ignored and left out of the
``self`` link, as R4 (3.1.1.5.5) describes for lenient handling. The CapabilityStatement
lists exactly what the routes serve.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from django.db.models import Count, DateField, Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce, TruncDate
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response

from classifier.api.fhir import MRN_SYSTEM, FhirApi, diagnostic_report_resource, imaging_study_resource
from classifier.models import Prediction, Review, Study

MAX_COUNT = 100
PREFIXES = ("eq", "ne", "lt", "le", "gt", "ge")
SEARCH_PARAMS = {
    "DiagnosticReport": [
        ("patient", "reference", "The subject: Patient/<id> or <id>."),
        ("patient.identifier", "token", "The subject's MRN, optionally system|value."),
        ("status", "token", "preliminary (AI only) or final (reviewed by a radiologist)."),
        ("date", "date", "The clinically relevant time: the study date, else when it was received."),
    ],
    "ImagingStudy": [
        ("patient", "reference", "The subject: Patient/<id> or <id>."),
        ("patient.identifier", "token", "The subject's MRN, optionally system|value."),
        ("status", "token", "registered (no image yet) or available."),
        ("started", "date", "The study date."),
    ],
}


def _date_range(value: str, name: str) -> tuple[str, date, date]:
    """(prefix, first day, day after the last) of a date search value at its precision."""
    prefix = value[:2] if value[:2] in PREFIXES else "eq"
    text = value[2:] if value[:2] in PREFIXES else value
    match = re.fullmatch(r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T[0-9:.+\-Z]*)?)?)?", text)
    if not match:
        raise exceptions.ValidationError({name: "Use YYYY, YYYY-MM or YYYY-MM-DD, optionally prefixed (ge2026-01-01)."})
    year, month, day = int(match[1]), int(match[2] or 0), int(match[3] or 0)
    try:
        if day:
            start = date(year, month, day)
            return prefix, start, start + timedelta(days=1)
        if month:
            start = date(year, month, 1)
            return prefix, start, date(year + month // 12, month % 12 + 1, 1)
        return prefix, date(year, 1, 1), date(year + 1, 1, 1)
    except ValueError:
        raise exceptions.ValidationError({name: "Not a valid date."}) from None


def match_date(queryset: QuerySet, field: str, value: str, name: str) -> QuerySet:
    prefix, start, end = _date_range(value, name)
    lookups = {
        "eq": Q(**{f"{field}__gte": start, f"{field}__lt": end}),
        "ne": ~Q(**{f"{field}__gte": start, f"{field}__lt": end}),
        "lt": Q(**{f"{field}__lt": start}),
        "le": Q(**{f"{field}__lt": end}),
        "gt": Q(**{f"{field}__gte": end}),
        "ge": Q(**{f"{field}__gte": start}),
    }
    return queryset.filter(lookups[prefix])


def _patient_id(value: str) -> int:
    reference = value.removeprefix("Patient/")
    if not reference.isdigit():
        raise exceptions.ValidationError({"patient": "Use a Patient id or Patient/<id>."})
    return int(reference)


def _mrn(value: str) -> str | None:
    """The MRN of a token ``[system|]value``; None when the system is not ours."""
    system, bar, code = value.rpartition("|")
    if bar and system and system != MRN_SYSTEM:
        return None
    return code


def _statuses(value: str, allowed: set[str]) -> list[str]:
    statuses = [v.strip() for v in value.split(",") if v.strip()]
    unknown = sorted(set(statuses) - allowed)
    if unknown:
        raise exceptions.ValidationError(
            {"status": f"Unknown status {', '.join(unknown)}; use {', '.join(sorted(allowed))}."}
        )
    return statuses


class FhirSearchApi(FhirApi):
    """A type-level search answering a searchset Bundle; subclasses filter the rows."""

    resource_type = ""
    audit_model = ""

    def rows(self, params: list[tuple[str, str]]) -> QuerySet:
        raise NotImplementedError

    def resource(self, row: Any) -> dict[str, Any]:
        raise NotImplementedError

    def search(self, request: Request) -> Response:
        supported = {name for name, _, _ in SEARCH_PARAMS[self.resource_type]}
        params = [(k, v) for k in request.query_params for v in request.query_params.getlist(k) if k in supported and v]
        count = request.query_params.get("_count", "")
        count_n = min(int(count), MAX_COUNT) if count.isdigit() else MAX_COUNT
        offset = request.query_params.get("_offset", "")
        offset_n = int(offset) if offset.isdigit() else 0
        queryset = self.rows(params)
        total = queryset.count()
        page = list(queryset[offset_n : offset_n + count_n])
        base = request.build_absolute_uri(f"/fhir/{self.resource_type}")
        links = [
            {"relation": "self", "url": f"{base}?{urlencode([*params, ('_count', count_n), ('_offset', offset_n)])}"}
        ]
        if offset_n + count_n < total:
            following = [*params, ("_count", count_n), ("_offset", offset_n + count_n)]
            links.append({"relation": "next", "url": f"{base}?{urlencode(following)}"})
        entries = []
        for row in page:
            resource = self.resource(row)
            entries.append({"fullUrl": f"{base}/{resource['id']}", "resource": resource, "search": {"mode": "match"}})
        self.audit("fhir_search", None, resource=self.resource_type, model=self.audit_model, ids=[r.pk for r in page])
        bundle = {"resourceType": "Bundle", "type": "searchset", "total": total, "link": links, "entry": entries}
        return Response(bundle, content_type="application/fhir+json")


SEARCH_SCHEMA = {(200, "application/fhir+json"): OpenApiTypes.OBJECT}


def _parameters(resource_type: str) -> list[OpenApiParameter]:
    return [OpenApiParameter(name, str, description=doc) for name, _, doc in SEARCH_PARAMS[resource_type]] + [
        OpenApiParameter("_count", int),
        OpenApiParameter("_offset", int),
    ]


class FhirDiagnosticReportSearchApi(FhirSearchApi):
    resource_type, audit_model = "DiagnosticReport", "classifier.prediction"

    def rows(self, params: list[tuple[str, str]]) -> QuerySet:
        reports = (
            Prediction.objects.filter(status=Prediction.Status.DONE, model_version__isnull=False)
            .select_related("model_version", "image__study")
            .annotate(
                reviewed=Exists(Review.objects.filter(prediction=OuterRef("pk"))),  # as review_of_prediction
                effective=Coalesce(
                    "image__study__study_date", TruncDate("image__study__created_at"), output_field=DateField()
                ),
            )
            .order_by("-finished_at", "-id")
        )
        for name, value in params:
            if name == "patient":
                reports = reports.filter(image__study__patient_id=_patient_id(value))
            elif name == "patient.identifier":
                reports = reports.filter(image__study__patient__mrn=_mrn(value))
            elif name == "status":
                statuses = _statuses(value, {"preliminary", "final"})
                if len(set(statuses)) == 1:
                    reports = reports.filter(reviewed=statuses[0] == "final")
            elif name == "date":
                reports = match_date(reports, "effective", value, name)
        return reports

    def resource(self, row: Any) -> dict[str, Any]:
        return diagnostic_report_resource(row)

    @extend_schema(
        operation_id="fhir_diagnosticreport_search", parameters=_parameters("DiagnosticReport"), responses=SEARCH_SCHEMA
    )
    def get(self, request: Request) -> Response:
        return self.search(request)


class FhirImagingStudySearchApi(FhirSearchApi):
    resource_type, audit_model = "ImagingStudy", "classifier.study"

    def rows(self, params: list[tuple[str, str]]) -> QuerySet:
        studies = Study.objects.annotate(image_count=Count("images")).order_by("-created_at", "-id")
        for name, value in params:
            if name == "patient":
                studies = studies.filter(patient_id=_patient_id(value))
            elif name == "patient.identifier":
                studies = studies.filter(patient__mrn=_mrn(value))
            elif name == "status":
                statuses = set(_statuses(value, {"registered", "available"}))
                if len(statuses) == 1:
                    studies = (
                        studies.filter(image_count__gt=0) if "available" in statuses else studies.filter(image_count=0)
                    )
            elif name == "started":
                studies = match_date(studies, "study_date", value, name)
        return studies

    def resource(self, row: Any) -> dict[str, Any]:
        return imaging_study_resource(row)

    @extend_schema(
        operation_id="fhir_imagingstudy_search", parameters=_parameters("ImagingStudy"), responses=SEARCH_SCHEMA
    )
    def get(self, request: Request) -> Response:
        return self.search(request)


def capability_statement(base: str) -> dict[str, Any]:
    """What this server serves: read for four types, search for two, JSON only."""

    def resource(kind: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": kind, "interaction": [{"code": "read"}]}
        if kind in SEARCH_PARAMS:
            entry["interaction"].append({"code": "search-type"})
            entry["searchParam"] = [
                {"name": name, "type": kind_, "documentation": doc} for name, kind_, doc in SEARCH_PARAMS[kind]
            ]
        return entry

    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date.today().isoformat(),
        "kind": "instance",
        "software": {"name": "CXR triage"},
        "implementation": {"description": "Chest X-ray triage: decision support, not a diagnosis.", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "security": {"description": "Authorization: Bearer <API token>, issued by an administrator."},
                "resource": [resource(kind) for kind in ("Patient", "ImagingStudy", "DiagnosticReport", "Observation")],
            }
        ],
    }


class FhirMetadataApi(FhirApi):
    """GET /fhir/metadata: the CapabilityStatement (readable with any role's token)."""

    @extend_schema(operation_id="fhir_metadata", responses=SEARCH_SCHEMA)
    def get(self, request: Request) -> Response:
        return Response(capability_statement(request.build_absolute_uri("/fhir")), content_type="application/fhir+json")
