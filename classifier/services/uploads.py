"""Uploads: validate a file from its headers, store it, and queue its prediction.

Uploads are validated from headers here (format by content, size and pixel limits,
DICOM structure) without decoding pixels; the full decode runs in the worker under a
time limit. A file is written under a generated name and its sha256 verified on disk
before the Image and its pending Prediction are committed together.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from classifier.imaging import DecodeLimits, ImagingError
from classifier.imaging.probe import ProbeResult, probe_bytes
from classifier.models import Image, Prediction, Study
from classifier.services.audit import AuditContext, audit_record
from classifier.services.errors import ServiceError
from classifier.services.predictions import prediction_request
from classifier.services.studies import StudyFields, fields_from_header, study_get_or_create, study_refresh
from classifier.storage import SUFFIXES, generated_name, stream_sha256
from classifier.triage import triage_base

log = logging.getLogger(__name__)


@dataclass
class UploadOutcome:
    filename: str
    image: Image | None = None
    prediction: Prediction | None = None
    duplicate: bool = False
    error_code: str = ""
    error_message: str = ""
    error_status: int = 0  # the service's HTTP status for a refusal (409 for conflicts), 0 = by code
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.error_code


def upload_limits() -> DecodeLimits:
    return DecodeLimits(max_bytes=settings.CXR["MAX_UPLOAD_BYTES"], max_pixels=settings.CXR["MAX_PIXELS"])


def image_upload(
    *,
    data: bytes,
    filename: str,
    uploaded_by: User | None,
    fields: StudyFields | None = None,
    study: Study | None = None,
    audit: AuditContext | None = None,
) -> UploadOutcome:
    """Validate, store and queue one file. Never raises for bad input: see UploadOutcome.

    Nothing is created for a duplicate, a conflict or a failed upload: the patient and
    study (when new), the Image and its pending Prediction commit in one transaction after
    the file is stored and its checksum verified. Without ``study`` the file goes to the
    patient and study its DICOM header names (typed ``fields`` fill what the header lacks
    and must not contradict it); an existing MRN given with another name needs
    ``fields.patient_confirmed``.
    """
    # A client's filename is shown and stored: no control characters (a NUL fails the insert).
    outcome = UploadOutcome(filename="".join(ch for ch in filename if ch.isprintable())[:255])
    try:
        header = probe_bytes(data, limits=upload_limits())
        resolved = None if study is not None else fields_from_header(header.metadata, fields or StudyFields())
        _store(outcome, study=study, fields=resolved, data=data, header=header, uploaded_by=uploaded_by)
    except ImagingError as exc:
        outcome.error_code, outcome.error_message = exc.code, exc.message
    except ServiceError as exc:
        outcome.error_code, outcome.error_message, outcome.error_status = exc.code, exc.message, exc.status
        if exc.code == "sop_conflict" and outcome.image is not None:
            audit_record(
                actor=uploaded_by,
                action="upload_conflict",
                obj=outcome.image,
                audit=audit,
                detail={"study": outcome.image.study_id, "filename": outcome.filename},
            )
            outcome.image = None
    if outcome.image is not None:
        audit_record(
            actor=uploaded_by,
            action="upload_duplicate" if outcome.duplicate else "upload",
            obj=outcome.image,
            audit=audit,
            detail={"study": outcome.image.study_id},
        )
    return outcome


def _store(
    outcome: UploadOutcome,
    *,
    study: Study | None,
    fields: StudyFields | None,
    data: bytes,
    header: ProbeResult,
    uploaded_by: User | None,
) -> None:
    sha = hashlib.sha256(data).hexdigest()
    sop = (header.metadata.get("sop_instance_uid") or "")[:64]
    target = study if study is not None else _existing_study(fields)
    if _take_duplicate(outcome, study=target, sha=sha, sop=sop):
        return
    name = default_storage.save(generated_name("images", SUFFIXES[header.format]), ContentFile(data))
    try:
        with default_storage.open(name, "rb") as stored:
            if stream_sha256(stored) != sha:
                raise OSError("stored file does not match the uploaded bytes")
        with transaction.atomic():
            created = False
            if study is None:
                assert fields is not None
                study, created = study_get_or_create(fields=fields, requested_by=uploaded_by)
            image = Image.objects.create(
                study=study,
                file=name,
                sha256=sha,
                size_bytes=len(data),
                original_filename=outcome.filename,
                format=header.format,
                width=header.width,
                height=header.height,
                sop_instance_uid=sop,
                metadata=header.metadata,
                uploaded_by=uploaded_by if getattr(uploaded_by, "pk", None) else None,
            )

            user = uploaded_by if getattr(uploaded_by, "pk", None) else None
            outcome.prediction = prediction_request(image=image, requested_by=user)
            outcome.image = image
            # On the worklist from this commit (the stored has_images), not from the refresh
            # after it. A study created by this upload is already queued at the right
            # priority; it gets the base a refresh gives one image without a result.
            Study.objects.filter(pk=study.pk).update(
                has_images=True,
                **({"triage_base": triage_base(p_abnormal=None, flag=None, failed=False)} if created else {}),
            )
            if not created:
                refreshed = study.pk
                transaction.on_commit(lambda: study_refresh(refreshed))
    except IntegrityError:  # a concurrent upload of the same content won the race; ours rolled back
        default_storage.delete(name)
        outcome.image = outcome.prediction = None
        if not _take_duplicate(outcome, study=study or _existing_study(fields), sha=sha, sop=sop):
            raise
    except BaseException:
        default_storage.delete(name)
        outcome.image = outcome.prediction = None
        raise


def _existing_study(fields: StudyFields | None) -> Study | None:
    if fields is None or not fields.accession_number:
        return None
    return Study.objects.filter(accession_number=fields.accession_number).first()


def _take_duplicate(outcome: UploadOutcome, *, study: Study | None, sha: str, sop: str) -> bool:
    """Fill ``outcome`` with the already stored image of this file, if any.

    The same SOPInstanceUID with other bytes is not a duplicate but a conflict (another
    image claiming an identity already used): ServiceError ``sop_conflict``, with
    ``outcome.image`` set to the stored image for the audit record.
    """
    found = Image.objects.filter(sop_instance_uid=sop).select_related("study").first() if sop else None
    if found is not None and found.sha256 != sha:
        outcome.image = found
        raise ServiceError(
            "sop_conflict",
            f"A different image with SOPInstanceUID {sop} is already stored (study {found.study.accession_number}). "
            "The same UID must not name two images; check the modality or PACS that produced this file.",
            409,
        )
    if found is None and study is not None:
        found = Image.objects.filter(study=study, sha256=sha).first()
    if found is None:
        return False
    outcome.image, outcome.duplicate = found, True
    outcome.prediction = found.predictions.order_by("-created_at").first()
    return True
