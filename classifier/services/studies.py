"""Patients and studies: find or create them from typed fields or a DICOM header, and
recompute a study's status and priority from its images.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Max, Min
from django.utils import timezone
from pydicom.valuerep import PersonName

from classifier.models import Patient, Prediction, Study
from classifier.services.audit import Actor, AuditContext, audit_record
from classifier.services.errors import ServiceError
from classifier.triage import ESCALATED, priority_from_base, priority_score, triage_base

if TYPE_CHECKING:
    from classifier.selectors.studies import ImageState


@dataclass
class StudyFields:
    """What a person (or a DICOM header) tells us about the patient and the study."""

    mrn: str = ""
    patient_name: str = ""
    birth_date: date | None = None
    sex: str = ""
    accession_number: str = ""
    study_instance_uid: str = ""
    view_position: str = ""
    study_date: date | None = None
    modality: str = ""
    clinical_notes: str = ""
    # The person confirmed that an existing MRN is their patient although the name (or
    # birth date) they gave differs from the stored one; the stored details are kept.
    patient_confirmed: bool = False


# Typed values that must agree with the header: they say whose image it is.
IDENTITY_FIELDS = (
    ("mrn", "patient_id", "patient MRN"),
    ("accession_number", "accession_number", "accession number"),
    ("study_instance_uid", "study_instance_uid", "StudyInstanceUID"),
)


def same_person_name(a: str, b: str) -> bool:
    """Whether two renderings of a name are the same name ("Doe^Jane", "Doe, Jane", "JANE DOE")."""

    def tokens(name: str) -> set[str]:
        return {t for t in "".join(c if c.isalnum() else " " for c in name.casefold()).split() if t}

    return tokens(a) == tokens(b)


def header_conflicts(metadata: dict[str, Any], given: StudyFields) -> list[str]:
    """Sentences naming each typed value that disagrees with the file's own header."""
    conflicts = []
    for attr, key, label in IDENTITY_FIELDS:
        typed, header = str(getattr(given, attr) or "").strip(), str(metadata.get(key) or "").strip()
        if typed and header and typed != header:
            conflicts.append(f"the {label} typed ({typed}) differs from the file's ({header})")
    header_name = person_name(metadata.get("patient_name") or "")
    if given.patient_name and header_name and not same_person_name(given.patient_name, header_name):
        conflicts.append(f"the name typed ({given.patient_name}) differs from the file's ({header_name})")
    header_birth = _date(metadata.get("patient_birth_date"))
    if given.birth_date and header_birth and given.birth_date != header_birth:
        conflicts.append(f"the birth date typed ({given.birth_date}) differs from the file's ({header_birth})")
    return conflicts


def fields_from_header(metadata: dict[str, Any], given: StudyFields) -> StudyFields:
    """The one rule DICOM header -> study fields (web upload, its prefill, the API, STOW-RS,
    the DICOM listener): a file belongs to the patient and study its own header names. The
    header fills what was left blank; a typed patient or study identity that disagrees
    with it is a conflict the person must resolve (ServiceError ``header_conflict``, 409),
    never a silent override. Typed view, modality and notes may complete or correct it."""
    conflicts = header_conflicts(metadata, given)
    if conflicts:
        raise ServiceError(
            "header_conflict",
            "This file's DICOM header names another patient or study: "
            + "; ".join(conflicts)
            + ". Clear the typed value to file it under its own header, or correct the file.",
            409,
        )

    def pick(typed: Any, key: str) -> Any:
        return typed if typed else (metadata.get(key) or typed)

    view = Study.view_code(metadata.get("view_position"))
    return StudyFields(
        mrn=pick(given.mrn, "patient_id"),
        patient_name=given.patient_name or person_name(metadata.get("patient_name") or ""),
        birth_date=given.birth_date or _date(metadata.get("patient_birth_date")),
        sex=given.sex or (metadata.get("patient_sex") or "")[:1].upper(),
        accession_number=pick(given.accession_number, "accession_number"),
        study_instance_uid=pick(given.study_instance_uid, "study_instance_uid"),
        view_position=given.view_position or (view if view != Study.View.UNKNOWN else ""),
        study_date=given.study_date or _date(metadata.get("study_date")),
        modality=pick(given.modality, "modality"),
        clinical_notes=given.clinical_notes,
        patient_confirmed=given.patient_confirmed,
    )


def person_name(dicom_name: str) -> str:
    """A DICOM PN ("Family^Given^Middle^Prefix^Suffix", alphabetic group) as "Family, Given
    Middle", read by pydicom's PersonName; a name without components is kept as typed."""
    name = PersonName(dicom_name)
    family = name.family_name.strip()
    given = " ".join(part.strip() for part in (name.given_name, name.middle_name) if part.strip())
    return f"{family}, {given}" if given else family


def _date(value: Any) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except (TypeError, ValueError):
        return None


# Typed or header values that become columns: (attribute, label, column length).
STORED_TEXT_FIELDS = (
    ("mrn", "patient MRN", 64),
    ("patient_name", "patient name", 200),
    ("accession_number", "accession number", 64),
    ("study_instance_uid", "StudyInstanceUID", 64),
    ("modality", "modality", 16),
)


EARLIEST_BIRTH = date(1900, 1, 1)


def dates_check(*, birth_date: date | None, study_date: date | None = None) -> None:
    """Refuse impossible dates (ServiceError ``invalid_date``, 400): a birth date before
    1900 or after today, a study dated after tomorrow (time zones) or before the birth."""
    today = timezone.localdate()
    if birth_date is not None and not EARLIEST_BIRTH <= birth_date <= today:
        raise ServiceError("invalid_date", f"The birth date {birth_date} is impossible (before 1900 or in the future).")
    if study_date is not None and study_date > today + timedelta(days=1):
        raise ServiceError("invalid_date", f"The study date {study_date} is in the future.")
    if birth_date is not None and study_date is not None and study_date < birth_date:
        raise ServiceError("invalid_date", f"The study date {study_date} is before the birth date {birth_date}.")


def study_fields_check(fields: StudyFields) -> None:
    """Refuse a value the database cannot store as given, naming the field (ServiceError
    ``invalid_field``, 400): a NUL or other control character (notes may hold line breaks),
    or more characters than its column holds. Every path reaches this before a write."""
    for attr, label, limit in STORED_TEXT_FIELDS:
        value = str(getattr(fields, attr) or "")
        if any(unicodedata.category(ch) == "Cc" for ch in value):
            raise ServiceError("invalid_field", f"The {label} contains a NUL byte or another control character.")
        if len(value) > limit:
            raise ServiceError("invalid_field", f"The {label} is {len(value)} characters long; at most {limit} fit.")
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\r\t" for ch in fields.clinical_notes):
        raise ServiceError("invalid_field", "The clinical notes contain a NUL byte or another control character.")
    dates_check(birth_date=fields.birth_date, study_date=fields.study_date)


def study_get_or_create(*, fields: StudyFields, requested_by: User | None) -> tuple[Study, bool]:
    """Find the study by accession (or StudyInstanceUID) or create it with its patient."""
    study_fields_check(fields)
    if not fields.mrn or not fields.accession_number:
        missing = [
            name
            for name, value in (("patient MRN", fields.mrn), ("accession number", fields.accession_number))
            if not value
        ]
        raise ServiceError("missing_field", f"Please enter the {' and '.join(missing)}; the file does not carry them.")
    existing = Study.objects.filter(accession_number=fields.accession_number).select_related("patient").first()
    if existing is None and fields.study_instance_uid:
        existing = Study.objects.filter(study_instance_uid=fields.study_instance_uid).select_related("patient").first()
    if existing is not None:
        if existing.patient.mrn != fields.mrn:
            raise ServiceError("patient_mismatch", "This accession number belongs to a different patient.", 409)
        patient_check(existing.patient, fields)
        return existing, False
    stored = Patient.objects.filter(mrn=fields.mrn).first()
    if stored is not None:
        patient_check(stored, fields)
    try:
        return _study_create(fields=fields, requested_by=requested_by), True
    except IntegrityError:  # a concurrent request created it first: use theirs
        existing = Study.objects.filter(accession_number=fields.accession_number).select_related("patient").first()
        if existing is None or existing.patient.mrn != fields.mrn:
            raise ServiceError(
                "conflict", "This study was created at the same time with different details.", 409
            ) from None
        return existing, False


def patient_check(patient: Patient, fields: StudyFields) -> None:
    """Refuse a stored MRN given with another name or birth date, unless the person confirmed
    the patient (``fields.patient_confirmed``): a typo in the MRN would otherwise file the
    image under someone else. ServiceError ``patient_unconfirmed`` (409) names both."""
    if fields.patient_confirmed:
        return
    differences = []
    if fields.patient_name and patient.name and not same_person_name(fields.patient_name, patient.name):
        differences.append(f"name {patient.name} (given: {fields.patient_name})")
    if fields.birth_date and patient.birth_date and fields.birth_date != patient.birth_date:
        differences.append(f"birth date {patient.birth_date} (given: {fields.birth_date})")
    if differences:
        raise ServiceError(
            "patient_unconfirmed",
            f"MRN {patient.mrn} is registered with {' and '.join(differences)}. Check the MRN, "
            "or confirm that this is the registered patient (the stored details are kept).",
            409,
        )


@transaction.atomic
def _study_create(*, fields: StudyFields, requested_by: User | None) -> Study:
    patient, _ = Patient.objects.get_or_create(
        mrn=fields.mrn, defaults={"name": fields.patient_name[:200], "birth_date": fields.birth_date, "sex": fields.sex}
    )
    # A new study has no result yet: queued, at the triage score of "no result" (what
    # study_refresh would compute), so its first upload need not refresh it again.
    return Study.objects.create(
        status=Study.Status.QUEUED,
        priority=priority_score(
            p_abnormal=None,
            flag=None,
            failed=False,
            waited_minutes=0.0,
            max_wait_minutes=settings.CXR["TRIAGE_MAX_WAIT_MINUTES"],
        ),
        patient=patient,
        accession_number=fields.accession_number,
        study_instance_uid=fields.study_instance_uid,
        modality=fields.modality[:16] or "CR",
        view_position=fields.view_position or Study.View.UNKNOWN,
        study_date=fields.study_date,
        requesting_clinician=requested_by if getattr(requested_by, "is_authenticated", False) else None,
        clinical_notes=fields.clinical_notes,
    )


def patient_get_or_create(
    *,
    mrn: str,
    name: str = "",
    birth_date: date | None = None,
    sex: str = "",
    actor: Actor,
    audit: AuditContext | None = None,
) -> tuple[Patient, bool]:
    """The patient with this MRN, created when new; an existing row is returned unchanged."""
    mrn = mrn.strip()
    if not mrn:
        raise ServiceError("missing_field", "Please enter the patient MRN.")
    dates_check(birth_date=birth_date)
    try:
        with transaction.atomic():
            patient, created = Patient.objects.get_or_create(
                mrn=mrn, defaults={"name": name[:200], "birth_date": birth_date, "sex": sex}
            )
    except IntegrityError:  # a concurrent create of the same MRN won
        patient, created = Patient.objects.get(mrn=mrn), False
    if created:
        audit_record(actor=actor, action="patient_create", obj=patient, audit=audit)
    return patient, created


@transaction.atomic
def study_refresh(*study_ids: int) -> None:
    """Recompute studies' status, priority and stored current result (``current_flag``,
    ``current_p_abnormal``, ``triage_base``, ``has_images``) from their images' latest predictions and reviews.

    The study rows are locked first (in id order, so two refreshes of overlapping sets
    cannot deadlock); concurrent refreshes (the web process after an upload, a worker
    after a batch) run one after the other and the last one reads the newest
    predictions: no refresh can overwrite a newer state with an older one.
    """
    from classifier.selectors.studies import study_image_states

    studies = list(
        Study.objects.select_for_update().filter(pk__in=set(study_ids)).order_by("pk").only("pk", "created_at")
    )
    states = study_image_states([study.pk for study in studies])
    now = timezone.now()
    for study in studies:  # plain UPDATEs: bulk_update's CASE expression costs more to build
        state = _study_state(study, states.get(study.pk, []), now)
        Study.objects.filter(pk=study.pk).update(
            status=state.status,
            priority=state.priority,
            current_flag=state.flag,
            current_p_abnormal=state.p_abnormal,
            triage_base=state.base,
            has_images=bool(states.get(study.pk)),
            updated_at=now,
        )


def study_refresh_all(*, batch_size: int = 500) -> int:
    """Refresh every study, reviewed or not, in batches (each its own transaction); returns
    how many. The backfill of the stored current result (migration 0010) and of rows
    written without the services (bulk loads)."""
    last, count = 0, 0
    while True:
        ids = list(Study.objects.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            return count
        study_refresh(*ids)
        count, last = count + len(ids), ids[-1]


REFRESH_BATCH = 100  # studies per transaction: the web process locks studies too
PRIORITY_BATCH = 10_000  # rows per set-based priority UPDATE (a short transaction each)


def study_refresh_unreviewed(*, batch_size: int = REFRESH_BATCH, priority_batch: int = PRIORITY_BATCH) -> int:
    """The sweeper's refresh (each run): every unreviewed study's priority recomputed for
    the time now; returns how many studies were re-prioritised.

    All of them, at any size: the waiting-time term and the escalation after
    CXR_TRIAGE_MAX_WAIT_MINUTES only hold if every waiting study is recomputed. (A cap
    of 2,000 taken highest priority first left the rest's priority frozen.)

    Two steps. First a full ``study_refresh`` (in batches of ``batch_size``) of the few
    studies whose stored state may lag their images: those with a pending or running
    prediction (a worker's claim, a release or a reclaim changes the status without a
    refresh) and unreviewed studies with images but no ``triage_base`` (rows written
    without the services). Then ``study_refresh_priorities``: the waiting term added to
    the stored ``triage_base`` in SQL, a bounded primary-key range per statement, so the
    query count grows with N / ``priority_batch`` and no statement holds locks for long.
    """
    from classifier.selectors.studies import study_ids_to_resync

    stale = study_ids_to_resync()
    for start in range(0, len(stale), batch_size):
        study_refresh(*stale[start : start + batch_size])
    return study_refresh_priorities(batch_size=priority_batch)


# SQLite keeps a datetime as text, "YYYY-MM-DD HH:MM:SS[.ffffff]" (UTC): whole
# microseconds since the epoch, exactly (julianday's float days are off by microseconds).
_SQLITE_MICROSECONDS = (
    "(CAST(strftime('%%s', {v}) AS INTEGER) * 1000000 + CAST(substr(substr({v}, 21) || '000000', 1, 6) AS INTEGER))"
)
# The waiting time in minutes of a row at %s (now), per database: the same double-precision
# value as Python's (now - created_at).total_seconds() / 60, i.e. exact microseconds / 1e6,
# then / 60 (PostgreSQL's EPOCH of an interval is exact in microseconds, like timedelta).
_WAITED_SQL = {
    "postgresql": "(EXTRACT(EPOCH FROM (%s - created_at))::double precision / 60.0)",
    "sqlite": "(({now} - {created}) / 1000000.0 / 60.0)".format(
        now=_SQLITE_MICROSECONDS.format(v="%s"), created=_SQLITE_MICROSECONDS.format(v="created_at")
    ),
}
# classifier.triage.priority_from_base in SQL; {w} is the waiting time, %s the maximum wait.
_ROUND_SQL = {
    "postgresql": "round(({expr})::numeric, 6)::double precision",
    "sqlite": "round({expr}, 6)",
}


def study_refresh_priorities(*, batch_size: int = PRIORITY_BATCH, now: datetime | None = None) -> int:
    """Set ``priority`` of every study with a ``triage_base`` (unreviewed, with images) to
    ``classifier.triage.priority_from_base(base, waited, max wait)`` for ``now``, in SQL:
    one UPDATE per ``batch_size`` primary keys, each in its own transaction, setting
    ``updated_at`` as a refresh does. Studies without a base keep priority 0. Returns
    how many rows were updated."""
    from django.db import connection

    vendor = connection.vendor
    if vendor not in _WAITED_SQL:
        raise NotImplementedError(f"study_refresh_priorities has no SQL for {vendor}")
    now = now or timezone.now()
    max_wait = float(settings.CXR["TRIAGE_MAX_WAIT_MINUTES"])
    waited = _WAITED_SQL[vendor]
    rounded = _ROUND_SQL[vendor].format(expr=f"triage_base + (CASE WHEN {waited} > 0 THEN {waited} ELSE 0 END) / %s")
    table = connection.ops.quote_name(Study._meta.db_table)
    sql = (
        f"UPDATE {table} SET priority = CASE WHEN {waited} >= %s "
        f"THEN %s + ({waited} - %s) / %s ELSE {rounded} END, updated_at = %s "
        "WHERE triage_base IS NOT NULL AND id >= %s AND id < %s"
    )
    bounds = Study.objects.filter(triage_base__isnull=False).aggregate(low=Min("pk"), high=Max("pk"))
    if bounds["low"] is None:
        return 0
    count = 0
    at = connection.ops.adapt_datetimefield_value(now)  # SQLite stores text, PostgreSQL timestamptz
    w = [at] * waited.replace("%%", "").count("%s")  # the parameters of one waiting-time term
    for start in range(bounds["low"], bounds["high"] + 1, batch_size):
        params: list[Any] = [*w, max_wait, ESCALATED, *w, max_wait, max_wait, *w, *w, max_wait, at, start]
        params.append(start + batch_size)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
            count += cursor.rowcount
    return count


@dataclass(frozen=True)
class _State:
    status: str
    priority: float
    flag: bool | None
    p_abnormal: float | None
    base: float | None


def _study_state(study: Study, states: list[ImageState], now: datetime) -> _State:
    """A study's status, priority and current result from its images' states
    (``selectors.ImageState``)."""
    reviewed = bool(states) and all(state.reviewed for state in states)
    statuses = {state.status for state in states if state.status is not None}
    if reviewed:
        status = Study.Status.REVIEWED
    elif Prediction.Status.RUNNING in statuses:
        status = Study.Status.RUNNING
    elif Prediction.Status.PENDING in statuses or not statuses:
        status = Study.Status.QUEUED
    elif statuses == {Prediction.Status.FAILED}:
        status = Study.Status.FAILED
    else:
        status = Study.Status.DONE
    done = [state for state in states if state.status == Prediction.Status.DONE]
    worst = max(done, key=lambda state: state.p_abnormal or 0.0, default=None)
    waited = (now - study.created_at).total_seconds() / 60
    # The rule of selectors.studies.study_annotate_current_result, on the latest results.
    flags = {state.flag for state in states}
    flag = True if True in flags else (False if False in flags else None)
    p_values = [state.p_abnormal for state in states if state.p_abnormal is not None]
    if reviewed or not states:  # no image: nothing to read, so it must never escalate
        base, priority = None, 0.0
    else:
        base = triage_base(
            p_abnormal=worst.p_abnormal if worst else None,
            flag=worst.flag if worst else None,
            failed=status == Study.Status.FAILED,
        )
        priority = priority_from_base(
            base=base, waited_minutes=waited, max_wait_minutes=settings.CXR["TRIAGE_MAX_WAIT_MINUTES"]
        )
    return _State(status, priority, flag, max(p_values, default=None), base)
