"""QIDO-RS study search: query parameters -> studies -> DICOM JSON (PS3.18 10.6)."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from django.db.models import Count
from rest_framework import exceptions
from rest_framework.request import Request

from classifier.models import Study

MAX_LIMIT = 200
# QIDO accepts keywords or tags; both map to one filter.
KEYS = {
    "PatientID": "patient__mrn",
    "00100020": "patient__mrn",
    "AccessionNumber": "accession_number",
    "00080050": "accession_number",
    "StudyInstanceUID": "study_instance_uid",
    "0020000D": "study_instance_uid",
    "StudyDate": "study_date",
    "00080020": "study_date",
}


def _dicom_date(text: str) -> date:
    if not re.fullmatch(r"\d{8}", text):
        raise exceptions.ValidationError({"StudyDate": "Use YYYYMMDD or YYYYMMDD-YYYYMMDD."})
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise exceptions.ValidationError({"StudyDate": "Not a valid date."}) from None


def _int(request: Request, name: str, default: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise exceptions.ValidationError({name: "Must be a non-negative integer."})
    return min(int(raw), maximum)


def _filter(studies: Any, field: str, value: str) -> Any:
    if field == "study_date":
        start, _, end = value.partition("-")
        if _:
            if start:
                studies = studies.filter(study_date__gte=_dicom_date(start))
            return studies.filter(study_date__lte=_dicom_date(end)) if end else studies
        return studies.filter(study_date=_dicom_date(value))
    if field == "study_instance_uid":
        return studies.filter(study_instance_uid__in=[v for v in re.split(r"[,\\]", value) if v])
    if "*" in value or "?" in value:  # DICOM wildcard matching
        pattern = "^" + re.escape(value).replace(r"\*", ".*").replace(r"\?", ".") + "$"
        return studies.filter(**{f"{field}__regex": pattern})
    return studies.filter(**{field: value})


def _record(study: Study, base: str) -> dict[str, Any]:
    def tag(vr: str, value: Any) -> dict[str, Any]:
        return {"vr": vr, "Value": [value]} if value not in (None, "") else {"vr": vr}

    patient = study.patient
    return {
        "00080020": tag("DA", study.study_date.strftime("%Y%m%d") if study.study_date else None),
        "00080050": tag("SH", study.accession_number),
        "00080061": tag("CS", study.modality),
        "00100010": tag("PN", {"Alphabetic": patient.name} if patient.name else None),
        "00100020": tag("LO", patient.mrn),
        "0020000D": tag("UI", study.study_instance_uid),
        "00201208": tag("IS", getattr(study, "instances", None)),  # annotated by study_search
        "00081190": tag("UR", f"{base}/studies/{study.study_instance_uid}" if study.study_instance_uid else None),
    }


def study_search(request: Request) -> tuple[list[dict[str, Any]], list[Study]]:
    """Matching studies as DICOM JSON, with the rows (for the audit)."""
    studies = Study.objects.select_related("patient").annotate(instances=Count("images")).order_by("-created_at", "id")
    for name, value in request.query_params.items():
        field = KEYS.get(name)
        if field and value:
            studies = _filter(studies, field, str(value))
    offset = _int(request, "offset", 0, 10**6)
    limit = _int(request, "limit", MAX_LIMIT, MAX_LIMIT)
    rows: list[Study] = list(studies[offset : offset + limit])
    base = request.build_absolute_uri("/dicomweb")
    return [_record(study, base) for study in rows], rows
