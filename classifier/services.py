"""Writes for the clinical domain: uploads, patients, studies, reviews.

Uploads are validated from headers here (format by content, size and pixel limits,
DICOM structure) without decoding pixels; the full decode runs in the worker under a
time limit. A file is written under a generated name and its sha256 verified on disk
before the Image and its pending Prediction are committed together.
"""
from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from classifier.audit import audit_record
from classifier.imaging import DecodeLimits, ImagingError
from classifier.imaging.probe import probe_bytes
from classifier.models import Image, Label, Patient, Prediction, Review, Study
from classifier.predictions import prediction_request, study_refresh
from classifier.triage import priority_score

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """A request the service refuses, with a sentence for the user and a machine code."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


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


@dataclass
class UploadOutcome:
    filename: str
    image: Image | None = None
    prediction: Prediction | None = None
    duplicate: bool = False
    error_code: str = ""
    error_message: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.error_code


def upload_limits() -> DecodeLimits:
    return DecodeLimits(max_bytes=settings.CXR["MAX_UPLOAD_BYTES"], max_pixels=settings.CXR["MAX_PIXELS"])


def fields_from_header(metadata: dict[str, Any], given: StudyFields) -> StudyFields:
    """Typed fields win over the DICOM header; the header fills what was left blank."""
    def pick(typed: Any, key: str) -> Any:
        return typed if typed else (metadata.get(key) or typed)

    view = (metadata.get("view_position") or "").upper()
    return StudyFields(
        mrn=pick(given.mrn, "patient_id"), patient_name=pick(given.patient_name, "patient_name"),
        birth_date=given.birth_date or _date(metadata.get("patient_birth_date")),
        sex=given.sex or (metadata.get("patient_sex") or "")[:1].upper(),
        accession_number=pick(given.accession_number, "accession_number"),
        study_instance_uid=pick(given.study_instance_uid, "study_instance_uid"),
        view_position=given.view_position or (view if view in {"PA", "AP", "LL"} else ""),
        study_date=given.study_date or _date(metadata.get("study_date")),
        modality=pick(given.modality, "modality"), clinical_notes=given.clinical_notes)


def _date(value: Any) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except (TypeError, ValueError):
        return None


def study_get_or_create(*, fields: StudyFields, requested_by: Any) -> tuple[Study, bool]:
    """Find the study by accession (or StudyInstanceUID) or create it with its patient."""
    if not fields.mrn or not fields.accession_number:
        missing = [name for name, value in (("patient MRN", fields.mrn), ("accession number",
                                             fields.accession_number)) if not value]
        raise ServiceError("missing_field", f"Please enter the {' and '.join(missing)}; "
                                            "the file does not carry them.")
    existing = Study.objects.filter(accession_number=fields.accession_number).select_related("patient").first()
    if existing is None and fields.study_instance_uid:
        existing = Study.objects.filter(study_instance_uid=fields.study_instance_uid).first()
    if existing is not None:
        if existing.patient.mrn != fields.mrn:
            raise ServiceError("patient_mismatch", "This accession number belongs to a different patient.", 409)
        return existing, False
    try:
        return _study_create(fields=fields, requested_by=requested_by), True
    except IntegrityError:  # a concurrent request created it first: use theirs
        existing = Study.objects.filter(accession_number=fields.accession_number).select_related("patient").first()
        if existing is None or existing.patient.mrn != fields.mrn:
            raise ServiceError("conflict", "This study was created at the same time with different details.", 409)
        return existing, False


@transaction.atomic
def _study_create(*, fields: StudyFields, requested_by: Any) -> Study:
    patient, _ = Patient.objects.get_or_create(mrn=fields.mrn, defaults={
        "name": fields.patient_name[:200], "birth_date": fields.birth_date, "sex": fields.sex})
    # A new study has no result yet: queued, at the triage score of "no result" (what
    # study_refresh would compute), so its first upload need not refresh it again.
    return Study.objects.create(
        status=Study.Status.QUEUED, priority=priority_score(p_abnormal=None, flag=None, failed=False,
                                                            waited_minutes=0.0,
                                                            max_wait_minutes=settings.CXR["TRIAGE_MAX_WAIT_MINUTES"]),
        patient=patient, accession_number=fields.accession_number,
        study_instance_uid=fields.study_instance_uid, modality=fields.modality[:16] or "CR",
        view_position=fields.view_position or Study.View.UNKNOWN, study_date=fields.study_date,
        requesting_clinician=requested_by if getattr(requested_by, "is_authenticated", False) else None,
        clinical_notes=fields.clinical_notes)


def image_upload(*, data: bytes, filename: str, uploaded_by: Any, fields: StudyFields | None = None,
                 study: Study | None = None, request: Any = None) -> UploadOutcome:
    """Validate, store and queue one file. Never raises for bad input: see UploadOutcome."""
    outcome = UploadOutcome(filename=filename[:255])
    try:
        header = probe_bytes(data, limits=upload_limits())
        created = False
        if study is None:
            study, created = study_get_or_create(fields=fields_from_header(header.metadata, fields or StudyFields()),
                                                 requested_by=uploaded_by)
        _store(outcome, study=study, data=data, header=header, uploaded_by=uploaded_by, refresh_study=not created)
    except ImagingError as exc:
        outcome.error_code, outcome.error_message = exc.code, exc.message
    except ServiceError as exc:
        outcome.error_code, outcome.error_message = exc.code, exc.message
    if outcome.image is not None:
        audit_record(actor=uploaded_by, action="upload_duplicate" if outcome.duplicate else "upload",
                     obj=outcome.image, request=request, detail={"study": outcome.image.study_id})
    return outcome


def _store(outcome: UploadOutcome, *, study: Study, data: bytes, header: Any, uploaded_by: Any,
           refresh_study: bool) -> None:
    sha = hashlib.sha256(data).hexdigest()
    sop = (header.metadata.get("sop_instance_uid") or "")[:64]
    duplicate = _find_duplicate(study=study, sha=sha, sop=sop)
    if duplicate is not None:
        outcome.image, outcome.duplicate = duplicate, True
        outcome.prediction = duplicate.predictions.order_by("-created_at").first()
        return
    suffix = {"DICOM": ".dcm", "PNG": ".png", "JPEG": ".jpg"}[header.format]
    name = default_storage.save(f"images/{uuid.uuid4().hex[:2]}/{uuid.uuid4().hex}{suffix}", ContentFile(data))
    try:
        with default_storage.open(name, "rb") as stored:
            if hashlib.sha256(stored.read()).hexdigest() != sha:
                raise OSError("stored file does not match the uploaded bytes")
        with transaction.atomic():
            image = Image.objects.create(
                study=study, file=name, sha256=sha, size_bytes=len(data), original_filename=outcome.filename,
                format=header.format, width=header.width, height=header.height, sop_instance_uid=sop,
                metadata=header.metadata, uploaded_by=uploaded_by if getattr(uploaded_by, "pk", None) else None)

            user = uploaded_by if getattr(uploaded_by, "pk", None) else None
            outcome.prediction = prediction_request(image=image, requested_by=user)
            outcome.image = image
            if refresh_study:  # a study created by this upload is already queued at the right priority
                transaction.on_commit(lambda: study_refresh(study.pk))
    except IntegrityError:  # a concurrent upload of the same content won the race
        default_storage.delete(name)
        existing = _find_duplicate(study=study, sha=sha, sop=sop)
        if existing is None:
            raise
        outcome.image, outcome.duplicate = existing, True
        outcome.prediction = existing.predictions.order_by("-created_at").first()
    except BaseException:
        default_storage.delete(name)
        raise


def _find_duplicate(*, study: Study, sha: str, sop: str) -> Image | None:
    if sop:
        found = Image.objects.filter(sop_instance_uid=sop).first()
        if found is not None:
            return found
    return Image.objects.filter(study=study, sha256=sha).first()


def prediction_rerun(*, image: Image, requested_by: Any, request: Any = None) -> Prediction:
    """A new prediction with whatever version is active when it runs; the old one is kept."""
    prediction = prediction_request(image=image, requested_by=requested_by)
    audit_record(actor=requested_by, action="prediction_rerun", obj=prediction, request=request)
    return prediction


@transaction.atomic
def review_submit(*, prediction: Prediction, radiologist: Any, decision: str, label: str = "",
                  comment: str = "", request: Any = None) -> Review:
    """Record a radiologist's confirm/correct. The latest review becomes the image's label."""
    if prediction.status != Prediction.Status.DONE:
        raise ServiceError("prediction_not_done", "Only a finished prediction can be reviewed.", 409)
    if decision == Review.Decision.CONFIRM:
        label = prediction.label
    elif decision == Review.Decision.CORRECT:
        if label not in Label.values:
            raise ServiceError("invalid_label", "Choose the correct label from the list.")
    else:
        raise ServiceError("invalid_decision", "The decision must be confirm or correct.")
    review = Review.objects.create(prediction=prediction, image=prediction.image, radiologist=radiologist,
                                   decision=decision, label=label, comment=comment.strip())
    audit_record(actor=radiologist, action="review", obj=review, request=request,
                 detail={"prediction": prediction.pk, "decision": decision, "label": label})
    transaction.on_commit(lambda: study_refresh(prediction.image.study_id))
    return review
