"""Reads for the DICOM listener."""

from __future__ import annotations

from classifier.integrations import DicomDelivery, DicomPeer


def dicom_peer_titles() -> list[str]:
    """The calling AE titles allowed to associate now (active peers)."""
    return list(DicomPeer.objects.filter(is_active=True).values_list("ae_title", flat=True))


def dicom_deliveries_by_image(study_id: int) -> dict[int, list[DicomDelivery]]:
    """The SR and SC deliveries of a study's images, newest first, keyed by image id."""
    found: dict[int, list[DicomDelivery]] = {}
    rows = (
        DicomDelivery.objects.filter(prediction__image__study_id=study_id)
        .select_related("destination", "prediction")
        .order_by("-created_at", "-id")
    )
    for delivery in rows:
        found.setdefault(delivery.prediction.image_id, []).append(delivery)
    return found
