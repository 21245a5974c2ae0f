"""QIDO-RS (PS3.18 10.6): study, series and instance search -> DICOM JSON.

Matching follows PS3.4 C.2.2.2: single value (case-sensitive, except PN), universal
(an empty value matches everything), wildcards ``*`` and ``?`` for the text VRs, ranges
``a-b`` / ``-b`` / ``a-`` for dates, and UID lists (``\\`` or ``,`` separated). Keys the
server does not match on are ignored and named in a ``Warning`` header, as PS3.18 asks.
Series and instances are the stored DICOM images (their series attributes come from the
header metadata recorded at upload) and the SR and Secondary Capture objects made for
them (``services.dicom_results``), each in its own series of the source study, so a
viewer that searches the study finds the AI results it can retrieve over WADO-RS.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from django.db.models import Count, QuerySet
from rest_framework import exceptions
from rest_framework.request import Request

from classifier.integrations import DicomDelivery
from classifier.models import Image, Study

MAX_LIMIT = 200
CONTROL_PARAMS = {"limit", "offset", "includefield", "fuzzymatching"}
TEXT_VRS = {"PN", "LO", "SH", "CS"}


@dataclass(frozen=True)
class Key:
    keyword: str
    tag: str
    vr: str
    level: str  # study, series or instance
    field: str  # ORM path from Study (study level) or Image (series, instance)


KEYS = [
    Key("PatientID", "00100020", "LO", "study", "patient__mrn"),
    Key("PatientName", "00100010", "PN", "study", "patient__name"),
    Key("PatientBirthDate", "00100030", "DA", "study", "patient__birth_date"),
    Key("PatientSex", "00100040", "CS", "study", "patient__sex"),
    Key("AccessionNumber", "00080050", "SH", "study", "accession_number"),
    Key("StudyInstanceUID", "0020000D", "UI", "study", "study_instance_uid"),
    Key("StudyDate", "00080020", "DA", "study", "study_date"),
    Key("ModalitiesInStudy", "00080061", "CS", "study", "modality"),
    Key("SeriesInstanceUID", "0020000E", "UI", "series", "metadata__series_instance_uid"),
    Key("Modality", "00080060", "CS", "series", "metadata__modality"),
    Key("SeriesNumber", "00200011", "IS", "series", "metadata__series_number"),
    Key("SOPInstanceUID", "00080018", "UI", "instance", "sop_instance_uid"),
    Key("SOPClassUID", "00080016", "UI", "instance", "metadata__sop_class_uid"),
    Key("InstanceNumber", "00200013", "IS", "instance", "metadata__instance_number"),
]
# The result objects' series/instance attributes, which every object of a kind shares.
RESULT_MODALITY: dict[str, str] = {DicomDelivery.Kind.SR: "SR", DicomDelivery.Kind.SC: "OT"}  # highdicom's SC modality
RESULT_SOP_CLASS: dict[str, str] = {
    DicomDelivery.Kind.SR: "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR Storage
    DicomDelivery.Kind.SC: "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
}
RESULT_FIELDS = {"SeriesInstanceUID": "series_instance_uid", "SOPInstanceUID": "sop_instance_uid"}
BY_NAME = {name: key for key in KEYS for name in (key.keyword, key.tag, key.tag.lower())}
LEVELS = ("study", "series", "instance")


def _dicom_date(text: str, keyword: str) -> date:
    if not re.fullmatch(r"\d{8}", text):
        raise exceptions.ValidationError({keyword: "Use YYYYMMDD or YYYYMMDD-YYYYMMDD."})
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise exceptions.ValidationError({keyword: "Not a valid date."}) from None


def _int(request: Request, name: str, default: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise exceptions.ValidationError({name: "Must be a non-negative integer."})
    return min(int(raw), maximum)


def _pn_query(value: str) -> str:
    """A PN query ("Doe^J*") in the stored form of names ("Doe, J*", services.studies.person_name)."""
    family, _, given = value.partition("^")
    given = " ".join(p for p in given.split("^")[:2] if p)
    return f"{family}, {given}" if given else family


def _wildcard(value: str) -> str:
    return "^" + re.escape(value).replace(r"\*", ".*").replace(r"\?", ".") + "$"


def match(queryset: QuerySet, key: Key, value: str, prefix: str = "") -> QuerySet:
    """``queryset`` narrowed by one query key's value under the PS3.4 matching rules."""
    field = prefix + key.field
    if key.vr == "DA":
        start, dash, end = value.partition("-")
        if not dash:
            return queryset.filter(**{field: _dicom_date(value, key.keyword)})
        if start:
            queryset = queryset.filter(**{f"{field}__gte": _dicom_date(start, key.keyword)})
        return queryset.filter(**{f"{field}__lte": _dicom_date(end, key.keyword)}) if end else queryset
    if key.vr == "UI":
        return queryset.filter(**{f"{field}__in": [v for v in re.split(r"[,\\]", value) if v]})
    if key.vr == "PN":
        value = _pn_query(value)
    if key.vr in TEXT_VRS and ("*" in value or "?" in value):
        lookup = "iregex" if key.vr == "PN" else "regex"
        return queryset.filter(**{f"{field}__{lookup}": _wildcard(value)})
    return queryset.filter(**{f"{field}__iexact" if key.vr == "PN" else field: value})


@dataclass
class Query:
    """The query keys of a request at one level; ``unsupported`` names the ignored ones."""

    keys: list[tuple[Key, str]]
    unsupported: list[str]
    offset: int
    limit: int


def query_parse(request: Request, level: str) -> Query:
    """Keys of this level or above are matched; anything else is reported as unsupported."""
    allowed = LEVELS[: LEVELS.index(level) + 1]
    keys, unsupported = [], []
    for name, value in request.query_params.items():
        if name in CONTROL_PARAMS:
            if name == "fuzzymatching" and str(value).lower() == "true":
                unsupported.append("fuzzymatching")
            continue
        key = BY_NAME.get(name)
        if key is None or key.level not in allowed:
            unsupported.append(name)
        elif value:  # an empty value is universal matching
            keys.append((key, str(value)))
    return Query(
        keys=keys,
        unsupported=unsupported,
        offset=_int(request, "offset", 0, 10**6),
        limit=_int(request, "limit", MAX_LIMIT, MAX_LIMIT),
    )


def warning_header(query: Query) -> str | None:
    if not query.unsupported:
        return None
    return f'299 cxr: "The following query keys are not supported and were ignored: {", ".join(query.unsupported)}"'


def _tag(vr: str, value: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": [value]} if value not in (None, "") else {"vr": vr}


def dicom_person_name(name: str) -> str:
    """The stored "Family, Given Middle" back as a DICOM PN "Family^Given Middle"."""
    family, sep, given = name.partition(", ")
    return f"{family}^{given}" if sep else name


def _number(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def study_attributes(study: Study, base: str) -> dict[str, Any]:
    patient = study.patient
    uid = study.study_instance_uid
    return {
        "00080020": _tag("DA", study.study_date.strftime("%Y%m%d") if study.study_date else None),
        "00080050": _tag("SH", study.accession_number),
        "00080061": _tag("CS", study.modality),
        "00100010": _tag("PN", {"Alphabetic": dicom_person_name(patient.name)} if patient.name else None),
        "00100020": _tag("LO", patient.mrn),
        "00100030": _tag("DA", patient.birth_date.strftime("%Y%m%d") if patient.birth_date else None),
        "00100040": _tag("CS", patient.sex),
        "0020000D": _tag("UI", uid),
        "00081190": _tag("UR", f"{base}/studies/{uid}" if uid else None),
    }


def study_search(request: Request) -> tuple[list[dict[str, Any]], list[Study], Query]:
    """Matching studies as DICOM JSON, with the rows (for the audit) and the parsed query."""
    query = query_parse(request, "study")
    studies = Study.objects.select_related("patient").annotate(instances=Count("images")).order_by("-created_at", "id")
    for key, value in query.keys:
        studies = match(studies, key, value)
    rows: list[Study] = list(studies[query.offset : query.offset + query.limit])
    base = request.build_absolute_uri("/dicomweb")
    results = [{**study_attributes(s, base), "00201208": _tag("IS", getattr(s, "instances", None))} for s in rows]
    return results, rows, query


def dicom_images(*, study_uid: str | None = None, series_uid: str | None = None) -> QuerySet[Image]:
    """The stored DICOM images, optionally of one study and series, oldest first."""
    images = (
        Image.objects.filter(format=Image.Format.DICOM).select_related("study__patient").order_by("created_at", "id")
    )
    if study_uid is not None:
        images = images.filter(study__study_instance_uid=study_uid)
    if series_uid is not None:
        images = images.filter(metadata__series_instance_uid=series_uid)
    return images


def _image_query(request: Request, level: str, study_uid: str | None, series_uid: str | None) -> tuple[Any, Query]:
    query = query_parse(request, level)
    images = dicom_images(study_uid=study_uid, series_uid=series_uid)
    for key, value in query.keys:
        images = match(images, key, value, prefix="study__" if key.level == "study" else "")
    return images, query


def _series_of(image: Image) -> str:
    return str(image.metadata.get("series_instance_uid") or "")


def result_deliveries(
    *, study_uid: str | None = None, series_uid: str | None = None, sop_uid: str | None = None
) -> QuerySet[DicomDelivery]:
    """The deliveries of SR and SC objects, optionally of one study/series/instance, oldest
    first; one object has a row per destination (``result_objects`` keeps one)."""
    rows = DicomDelivery.objects.select_related(
        "prediction__image__study__patient", "prediction__model_version", "review"
    ).order_by("id")
    if study_uid is not None:
        rows = rows.filter(prediction__image__study__study_instance_uid=study_uid)
    if series_uid is not None:
        rows = rows.filter(series_instance_uid=series_uid)
    if sop_uid is not None:
        rows = rows.filter(sop_instance_uid=sop_uid)
    return rows


def result_objects(rows: Iterable[DicomDelivery]) -> list[DicomDelivery]:
    """One row per result object (its first delivery), in the order given."""
    first: dict[str, DicomDelivery] = {}
    for row in rows:
        first.setdefault(row.sop_instance_uid, row)
    return list(first.values())


def _kinds_matching(table: dict[str, str], key: Key, value: str) -> list[str]:
    if key.vr == "UI":
        wanted = {v for v in re.split(r"[,\\]", value) if v}
        return [kind for kind, uid in table.items() if uid in wanted]
    pattern = _wildcard(value) if "*" in value or "?" in value else "^" + re.escape(value) + "$"
    return [kind for kind, text in table.items() if re.match(pattern, text)]


def match_results(rows: QuerySet[DicomDelivery], key: Key, value: str) -> QuerySet[DicomDelivery]:
    """``rows`` narrowed by one query key, under the rules ``match`` applies to images."""
    if key.level == "study":
        return match(rows, key, value, prefix="prediction__image__study__")
    if key.keyword in RESULT_FIELDS:
        return match(rows, replace(key, field=RESULT_FIELDS[key.keyword]), value)
    if key.keyword == "Modality":
        return rows.filter(kind__in=_kinds_matching(RESULT_MODALITY, key, value))
    if key.keyword == "SOPClassUID":
        return rows.filter(kind__in=_kinds_matching(RESULT_SOP_CLASS, key, value))
    if key.keyword == "SeriesNumber":
        return rows.filter(series_number=int(value)) if value.isdigit() else rows.none()
    return rows if value == "1" else rows.none()  # InstanceNumber: every result object is instance 1


def _result_query(query: Query, study_uid: str | None, series_uid: str | None) -> list[DicomDelivery]:
    rows = result_deliveries(study_uid=study_uid, series_uid=series_uid)
    for key, value in query.keys:
        rows = match_results(rows, key, value)
    return result_objects(rows)


def _result_series_attributes(delivery: DicomDelivery, base: str, count: int) -> dict[str, Any]:
    study = delivery.prediction.image.study
    url = f"{base}/studies/{study.study_instance_uid}/series/{delivery.series_instance_uid}"
    return {
        **study_attributes(study, base),
        "0020000E": _tag("UI", delivery.series_instance_uid),
        "00080060": _tag("CS", RESULT_MODALITY[delivery.kind]),
        "00200011": _tag("IS", delivery.series_number),
        "00201209": _tag("IS", count),
        "00081190": _tag("UR", url),
    }


def series_search(request: Request, study_uid: str | None) -> tuple[list[dict[str, Any]], list[Image], Query]:
    """Matching series (grouped from their images, then the result series) as DICOM JSON;
    the rows returned for the audit are each series' first image (a result's source image)."""
    images, query = _image_query(request, "series", study_uid, None)
    groups: dict[tuple[int, str], list[Image | DicomDelivery]] = {}
    for image in images:
        groups.setdefault((image.study_id, _series_of(image)), []).append(image)
    for result in _result_query(query, study_uid, None):
        groups.setdefault((result.prediction.image.study_id, result.series_instance_uid), []).append(result)
    base = request.build_absolute_uri("/dicomweb")
    chosen = list(groups.values())[query.offset : query.offset + query.limit]
    results = []
    for members in chosen:
        first = members[0]
        if isinstance(first, DicomDelivery):
            results.append(_result_series_attributes(first, base, len(members)))
            continue
        series = _series_of(first)
        url = f"{base}/studies/{first.study.study_instance_uid}/series/{series}" if series else None
        results.append(
            {
                **study_attributes(first.study, base),
                "0020000E": _tag("UI", series),
                "00080060": _tag("CS", first.metadata.get("modality")),
                "00200011": _tag("IS", _number(first.metadata.get("series_number"))),
                "00201209": _tag("IS", len(members)),
                "00081190": _tag("UR", url),
            }
        )
    return results, [_source_image(m[0]) for m in chosen], query


def _source_image(obj: Image | DicomDelivery) -> Image:
    return obj.prediction.image if isinstance(obj, DicomDelivery) else obj


def instance_attributes(obj: Image | DicomDelivery, base: str) -> dict[str, Any]:
    number: int | None
    size: tuple[int | None, int | None]
    if isinstance(obj, DicomDelivery):
        study = obj.prediction.image.study
        series, sop_uid = obj.series_instance_uid, obj.sop_instance_uid
        modality, sop_class = RESULT_MODALITY[obj.kind], RESULT_SOP_CLASS[obj.kind]
        number, size = 1, (None, None)
    else:
        study, series, sop_uid = obj.study, _series_of(obj), obj.sop_instance_uid
        modality, sop_class = obj.metadata.get("modality"), obj.metadata.get("sop_class_uid")
        number, size = _number(obj.metadata.get("instance_number")), (obj.height, obj.width)
    return {
        **study_attributes(study, base),
        "0020000E": _tag("UI", series),
        "00080060": _tag("CS", modality),
        "00080016": _tag("UI", sop_class),
        "00080018": _tag("UI", sop_uid),
        "00200013": _tag("IS", number),
        "00280010": _tag("US", size[0]),
        "00280011": _tag("US", size[1]),
        "00081190": _tag("UR", f"{base}/studies/{study.study_instance_uid}/series/{series}/instances/{sop_uid}"),
    }


def instance_search(
    request: Request, study_uid: str | None, series_uid: str | None
) -> tuple[list[dict[str, Any]], list[Image], Query]:
    """Matching instances: the stored images, then the result objects made for them."""
    images, query = _image_query(request, "instance", study_uid, series_uid)
    end = query.offset + query.limit
    found: list[Image | DicomDelivery] = list(images[:end])
    if len(found) < end:
        found += _result_query(query, study_uid, series_uid)
    rows = found[query.offset : end]
    base = request.build_absolute_uri("/dicomweb")
    return [instance_attributes(obj, base) for obj in rows], [_source_image(obj) for obj in rows], query


def ids(rows: Iterable[Any]) -> list[int]:
    return [row.pk for row in rows][:200]
