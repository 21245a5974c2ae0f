"""The DICOM listener: C-ECHO and C-STORE SCP (pynetdicom) in front of the upload service.

Associations are accepted only from the calling AE titles of active ``DicomPeer`` rows,
read from the database for each association request, so an admin's change applies to
the next association; a rejected association is audited. Presentation contexts are
the chest radiograph storage classes (CR, DX for presentation and for processing,
Secondary Capture) in the transfer syntaxes this installation decodes, plus
Verification; anything else is refused at negotiation. A received dataset is passed on
encoded, exactly as sent, to ``services.dicom.dicom_instance_store``: the listener decodes
nothing, and the C-STORE is answered only after the Image and its pending Prediction are
committed (a broker that is down loses nothing: the sweeper sends the task later).

Each association runs in its own thread; each handler closes that thread's database
connection when it returns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, connection
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
    Verification,
)

from classifier.imaging.dicom import decodable_transfer_syntaxes
from classifier.selectors.dicom import dicom_peer_titles
from classifier.services.dicom import dicom_association_refused, dicom_instance_store

log = logging.getLogger(__name__)

STORAGE_CLASSES = (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
)
# An AE title no peer can send (it is not a valid title): an empty allow-list refuses all.
NOBODY = "\\"

# C-STORE statuses (PS3.4 Annex B.2.3, PS3.7 Annex C).
SUCCESS = 0x0000
DUPLICATE_SOP_INSTANCE = 0x0111
PROCESSING_FAILURE = 0x0110
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
STATUS_BY_CODE = {
    "file_too_large": OUT_OF_RESOURCES,
    "image_too_large": OUT_OF_RESOURCES,
    "limit_exceeded": OUT_OF_RESOURCES,
    "not_chest_radiograph": SOP_CLASS_NOT_SUPPORTED,
    "multi_frame": SOP_CLASS_NOT_SUPPORTED,
    "no_pixel_data": SOP_CLASS_NOT_SUPPORTED,
    "unsupported_image": SOP_CLASS_NOT_SUPPORTED,
    "corrupt_image": CANNOT_UNDERSTAND,
    "unsupported_format": CANNOT_UNDERSTAND,
    "empty_file": CANNOT_UNDERSTAND,
    "sop_conflict": DUPLICATE_SOP_INSTANCE,
    "missing_field": CANNOT_UNDERSTAND,  # no PatientID: no patient to file it under
}


@dataclass(frozen=True)
class ListenerConfig:
    ae_title: str
    host: str
    port: int
    max_associations: int
    timeout_seconds: int


class AllowListAE(AE):
    """An AE whose required calling AE titles are the active peers, read per association."""

    @property  # type: ignore[misc]  # read-only on purpose: the database decides
    def require_calling_aet(self) -> list[str]:
        try:
            return [title.strip() for title in dicom_peer_titles()] or [NOBODY]
        except DatabaseError:
            log.exception("cannot read the DICOM peer allow-list; refusing the association")
            return [NOBODY]
        finally:
            connection.close()


def _status(code: int, comment: str = "") -> Dataset:
    status = Dataset()
    status.Status = code
    if comment:
        status.ErrorComment = comment[:64]  # LO
    return status


def handle_echo(event: Any) -> int:
    return SUCCESS


def handle_store(event: Any) -> Dataset:
    """Store one instance through the upload service; answer with its DIMSE status."""
    requestor = event.assoc.requestor
    try:
        outcome = dicom_instance_store(
            data=event.encoded_dataset(include_meta=True),
            calling_ae=requestor.ae_title,
            address=requestor.address,
            sop_instance_uid=str(event.request.AffectedSOPInstanceUID or ""),
        )
    except (DatabaseError, OSError):
        log.exception("C-STORE from %s could not be stored", requestor.ae_title)
        return _status(OUT_OF_RESOURCES, "Storage or database unavailable; send again later.")
    except Exception:
        log.exception("C-STORE from %s failed", requestor.ae_title)
        return _status(PROCESSING_FAILURE, "Processing failure.")
    finally:
        connection.close()
    if outcome.ok:
        return _status(SUCCESS)
    log.info("C-STORE from %s refused: %s %s", requestor.ae_title, outcome.error_code, outcome.error_message)
    return _status(STATUS_BY_CODE.get(outcome.error_code, PROCESSING_FAILURE), outcome.error_message)


def handle_rejected(event: Any) -> None:
    requestor = event.assoc.requestor
    try:
        allowed = requestor.ae_title.strip() in dicom_peer_titles()
        dicom_association_refused(
            calling_ae=requestor.ae_title,
            address=requestor.address,
            reason="association limit reached" if allowed else "calling AE title not allowed",
        )
    except DatabaseError:
        log.exception("could not audit a refused association from %s", requestor.ae_title)
    finally:
        connection.close()


HANDLERS: list[Any] = [
    (evt.EVT_C_ECHO, handle_echo),
    (evt.EVT_C_STORE, handle_store),
    (evt.EVT_REJECTED, handle_rejected),
]


def listener_build(config: ListenerConfig) -> AllowListAE:
    """The configured AE, ready for ``start_server``."""
    ae = AllowListAE(ae_title=config.ae_title)
    ae.maximum_associations = config.max_associations
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = config.timeout_seconds
    ae.require_called_aet = True
    syntaxes = decodable_transfer_syntaxes()
    for sop_class in STORAGE_CLASSES:
        ae.add_supported_context(sop_class, syntaxes)
    ae.add_supported_context(Verification)
    return ae


def listener_start(config: ListenerConfig) -> Any:
    """Start serving in background threads; the returned server's ``shutdown()`` stops it."""
    ae = listener_build(config)
    log.info(
        "DICOM listener %s on %s:%s (max %s associations)",
        config.ae_title,
        config.host,
        config.port,
        config.max_associations,
    )
    return ae.start_server((config.host, config.port), block=False, evt_handlers=HANDLERS)
