"""DICOMweb: STOW-RS round trip with dicomweb-client, partial failures, QIDO-RS search, WADO-RS."""

from __future__ import annotations

import io

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from classifier.models import Image, Study
from tests.classifier.api.conftest import synthetic_dicom

STOW_TYPE = 'multipart/related; type="application/dicom"; boundary=xyz'


def _multipart(*payloads: bytes, content_type: str = "application/dicom") -> bytes:
    body = b"".join(b"--xyz\r\nContent-Type: " + content_type.encode() + b"\r\n\r\n" + p + b"\r\n" for p in payloads)
    return body + b"--xyz--\r\n"


def test_stow_qido_wado_round_trip_with_dicomweb_client(live_server, transactional_db, api_tokens) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {api_tokens['Clinician']}"
    client = DICOMwebClient(url=f"{live_server.url}/dicomweb", session=session)
    datasets = [
        pydicom.dcmread(
            io.BytesIO(synthetic_dicom(mrn="STOW-1", accession="SA-1", seed=s, study_uid="1.2.826.0.1.3680043.8.498.1"))
        )
        for s in (1, 2)
    ]
    result = client.store_instances(datasets)
    stored = [item.ReferencedSOPInstanceUID for item in result.ReferencedSOPSequence]
    assert stored == [ds.SOPInstanceUID for ds in datasets]
    assert "FailedSOPSequence" not in result
    assert result.RetrieveURL.endswith("/dicomweb/studies/1.2.826.0.1.3680043.8.498.1")
    study = Study.objects.get(accession_number="SA-1")
    assert study.patient.mrn == "STOW-1" and study.images.count() == 2
    found = client.search_for_studies(search_filters={"PatientID": "STOW-1"})
    assert len(found) == 1 and found[0]["0020000D"]["Value"] == ["1.2.826.0.1.3680043.8.498.1"]
    assert found[0]["00201208"]["Value"] == [2]
    assert client.search_for_studies(search_filters={"PatientID": "nobody"}) == []
    instance = client.retrieve_instance(
        datasets[0].StudyInstanceUID, datasets[0].SeriesInstanceUID, datasets[0].SOPInstanceUID
    )
    assert instance.SOPInstanceUID == datasets[0].SOPInstanceUID and instance.PatientID == "STOW-1"
    # Storing again is idempotent by SOP Instance UID.
    assert len(client.store_instances(datasets[:1]).ReferencedSOPSequence) == 1
    assert Image.objects.count() == 2


@pytest.mark.django_db
def test_stow_statuses_follow_the_standard(client_for) -> None:
    client = client_for("Clinician")
    good = synthetic_dicom(mrn="P-2", accession="PA-2")
    ct = synthetic_dicom(mrn="P-2", accession="PA-2", modality="CT", seed=3)

    def stow(body: bytes, content_type: str = STOW_TYPE):
        return client.generic(
            "POST", "/dicomweb/studies", body, content_type=content_type, HTTP_ACCEPT="application/dicom+json"
        )

    partial = stow(_multipart(good, ct))
    assert partial.status_code == 202 and partial["Content-Type"].startswith("application/dicom+json")
    body = partial.json()
    assert len(body["00081199"]["Value"]) == 1
    assert body["00081198"]["Value"][0]["00081197"]["Value"] == [0x0122]  # SOP class not supported
    none_stored = stow(_multipart(ct, b"not dicom at all"))
    assert none_stored.status_code == 409
    assert [f["00081197"]["Value"][0] for f in none_stored.json()["00081198"]["Value"]] == [0x0122, 0xC000]
    assert stow(_multipart(good), 'multipart/related; type="application/dicom+json"; boundary=xyz').status_code == 415
    assert stow(_multipart(good), "multipart/related; type=application/dicom").status_code == 400  # no boundary
    assert stow(b"--xyz--\r\n").status_code == 400
    assert stow(good, "application/dicom").status_code == 415
