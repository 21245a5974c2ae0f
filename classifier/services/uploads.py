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

log = logging.getLogger(__name__)


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


def image_upload(
    *,
    data: bytes,
    filename: str,
    uploaded_by: User | None,
    fields: StudyFields | None = None,
    study: Study | None = None,
    audit: AuditContext | None = None,
) -> UploadOutcome:
    """Validate, store and queue one file. Never raises for bad input: see UploadOutcome."""
    outcome = UploadOutcome(filename=filename[:255])
    try:
        header = probe_bytes(data, limits=upload_limits())
        created = False
        if study is None:
            study, created = study_get_or_create(
                fields=fields_from_header(header.metadata, fields or StudyFields()), requested_by=uploaded_by
            )
        _store(outcome, study=study, data=data, header=header, uploaded_by=uploaded_by, refresh_study=not created)
    except ImagingError as exc:
        outcome.error_code, outcome.error_message = exc.code, exc.message
    except ServiceError as exc:
        outcome.error_code, outcome.error_message = exc.code, exc.message
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
    study: Study,
    data: bytes,
    header: ProbeResult,
    uploaded_by: User | None,
    refresh_study: bool,
) -> None:
    sha = hashlib.sha256(data).hexdigest()
    sop = (header.metadata.get("sop_instance_uid") or "")[:64]
    duplicate = _find_duplicate(study=study, sha=sha, sop=sop)
    if duplicate is not None:
        outcome.image, outcome.duplicate = duplicate, True
        outcome.prediction = duplicate.predictions.order_by("-created_at").first()
        return
    name = default_storage.save(generated_name("images", SUFFIXES[header.format]), ContentFile(data))
    try:
        with default_storage.open(name, "rb") as stored:
            if stream_sha256(stored) != sha:
                raise OSError("stored file does not match the uploaded bytes")
        with transaction.atomic():
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
