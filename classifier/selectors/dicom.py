"""Reads for the DICOM listener."""

from __future__ import annotations

from classifier.integrations import DicomPeer


def dicom_peer_titles() -> list[str]:
    """The calling AE titles allowed to associate now (active peers)."""
    return list(DicomPeer.objects.filter(is_active=True).values_list("ae_title", flat=True))
