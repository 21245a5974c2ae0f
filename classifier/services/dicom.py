"""The DICOM listener's writes: store a received instance, keep the allow-list of peers.

A received instance goes through ``image_upload`` exactly like a web or API upload
(header validation, checksum, patient and study from the header, duplicate and conflict
rules); the Image and its pending Prediction commit before the C-STORE is answered, so
a broker that is down loses nothing (the sweeper re-sends the task).
"""

from __future__ import annotations

import io

import pydicom
from django.db import transaction

from classifier.integrations import DicomPeer
from classifier.services.audit import Actor, AuditContext, audit_record
from classifier.services.studies import StudyFields
from classifier.services.uploads import UploadOutcome, image_upload


def dicom_audit_context(*, calling_ae: str, address: str | None) -> AuditContext:
    """Where a DICOM action came from: the peer's address, its AE title as the agent."""
    return AuditContext(ip_address=address or None, user_agent=f"DICOM {calling_ae}"[:255])


def dicom_instance_store(*, data: bytes, calling_ae: str, address: str | None, sop_instance_uid: str) -> UploadOutcome:
    """Store one C-STORE dataset (encoded, as received; its pixels are never decoded here).

    No person can type a missing accession number for a pushed instance: a header without
    one files the instance under its StudyInstanceUID as the study's accession, so every
    instance of that study lands in one study. A header without a PatientID is refused
    (``missing_field``): a patient identity is never invented.
    """
    return image_upload(
        data=data,
        filename=f"{calling_ae}-{sop_instance_uid}.dcm"[:255],
        uploaded_by=None,
        fields=StudyFields(accession_number=_accession_fallback(data)),
        audit=dicom_audit_context(calling_ae=calling_ae, address=address),
    )


def _accession_fallback(data: bytes) -> str:
    """The StudyInstanceUID when the header has no AccessionNumber, else "" (the header's own)."""
    try:
        ds = pydicom.dcmread(
            io.BytesIO(data), stop_before_pixels=True, force=True, specific_tags=["AccessionNumber", "StudyInstanceUID"]
        )
    except Exception:  # the upload service reports what is wrong with the file
        return ""
    if str(ds.get("AccessionNumber") or "").strip():
        return ""
    return str(ds.get("StudyInstanceUID") or "").strip()[:64]


def dicom_association_refused(*, calling_ae: str, address: str | None, reason: str) -> None:
    audit_record(
        actor=None,
        action="dicom_association_refused",
        audit=dicom_audit_context(calling_ae=calling_ae, address=address),
        detail={"calling_ae": calling_ae, "reason": reason},
    )


@transaction.atomic
def dicom_peer_save(*, peer: DicomPeer, actor: Actor, audit: AuditContext | None = None) -> DicomPeer:
    """Create or change an allow-listed peer; the change is audited."""
    peer.ae_title = peer.ae_title.strip()
    created = peer.pk is None
    peer.full_clean()
    peer.save()
    audit_record(
        actor=actor,
        action="dicom_peer_created" if created else "dicom_peer_changed",
        obj=peer,
        audit=audit,
        detail={"ae_title": peer.ae_title, "is_active": peer.is_active},
    )
    return peer


@transaction.atomic
def dicom_peer_delete(*, peer: DicomPeer, actor: Actor, audit: AuditContext | None = None) -> None:
    audit_record(actor=actor, action="dicom_peer_deleted", obj=peer, audit=audit, detail={"ae_title": peer.ae_title})
    peer.delete()
