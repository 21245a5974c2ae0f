"""DICOMweb with dicomweb-client against live servers: STOW-RS (chunked, large, many),
QIDO-RS at three levels with the standard matching, WADO-RS retrieve/metadata/rendered."""

from __future__ import annotations

import io
import logging
from urllib.parse import urlsplit

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from PIL import Image as PILImage

from classifier.models import Image, Study
from tests.classifier.api.conftest import synthetic_dicom

STUDY_A, STUDY_B = "1.2.826.0.1.3680043.8.498.21", "1.2.826.0.1.3680043.8.498.22"
SERIES_A = "1.2.826.0.1.3680043.8.498.21.1"

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


def _client(base: str, token: str) -> DICOMwebClient:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return DICOMwebClient(url=f"{base}/dicomweb", session=session)


def _dataset(**kwargs) -> pydicom.Dataset:
    series = kwargs.pop("series_uid", None)
    ds = pydicom.dcmread(io.BytesIO(synthetic_dicom(**kwargs)))
    if series:
        ds.SeriesInstanceUID = series
    return ds


def test_stow_stores_a_chunked_request_over_1_mb_with_ten_instances(gunicorn_server, api_tokens) -> None:
    client = _client(gunicorn_server, api_tokens["Clinician"])
    datasets = [
        _dataset(mrn="BIG-1", accession="BIG-1", study_uid=STUDY_A, seed=s, size=800 if s == 0 else 96)
        for s in range(10)
    ]
    sizes = []
    for ds in datasets:
        buffer = io.BytesIO()
        ds.save_as(buffer)
        sizes.append(len(buffer.getvalue()))
    assert sizes[0] > 1_000_000 and sum(sizes) > client._chunk_size  # dicomweb-client sends it chunked
    result = client.store_instances(datasets)
    assert [i.ReferencedSOPInstanceUID for i in result.ReferencedSOPSequence] == [d.SOPInstanceUID for d in datasets]
    assert "FailedSOPSequence" not in result
    assert Image.objects.filter(study__study_instance_uid=STUDY_A).count() == 10
    # The RetrieveURL it answers with resolves to the study, with every instance in it.
    retrieved = client.retrieve_study(STUDY_A)
    assert sorted(d.SOPInstanceUID for d in retrieved) == sorted(d.SOPInstanceUID for d in datasets)
    big = next(d for d in retrieved if d.SOPInstanceUID == datasets[0].SOPInstanceUID)
    assert big.PixelData == datasets[0].PixelData
    response = client._session.get(
        result.RetrieveURL, headers={"Accept": 'multipart/related; type="application/dicom"'}
    )
    assert response.status_code == 200 and response.content.count(b"DICM") == 10


def test_stow_chunked_on_a_server_that_cannot_decode_it_is_411_not_empty(live_server, transactional_db, api_tokens):
    body = _multipart(synthetic_dicom(mrn="CH-1", accession="CH-1"))
    response = requests.post(
        f"{live_server.url}/dicomweb/studies",
        data=iter([body[:100], body[100:]]),  # a generator body: requests sends it chunked
        headers={"Authorization": f"Bearer {api_tokens['Clinician']}", "Content-Type": STOW_TYPE},
    )
    assert response.status_code == 411 and not Image.objects.exists()


@pytest.fixture
def two_studies(live_server, transactional_db, api_tokens) -> DICOMwebClient:
    client = _client(live_server.url, api_tokens["Clinician"])
    a = [
        _dataset(mrn="Q-1", accession="QA-1", study_uid=STUDY_A, series_uid=SERIES_A, seed=s, patient_name="Doe^Jane")
        for s in (1, 2)
    ]
    for number, ds in enumerate(a, start=1):
        ds.InstanceNumber = number
    b = _dataset(mrn="Q-2", accession="QB-1", study_uid=STUDY_B, seed=3, patient_name="Roe^Rick", study_date="20260301")
    assert len(client.store_instances([*a, b]).ReferencedSOPSequence) == 3
    client.stored = [*a, b]  # type: ignore[attr-defined]
    return client


def _study_uids(found: list[dict]) -> set[str]:
    return {item["0020000D"]["Value"][0] for item in found}


def test_qido_studies_match_wildcards_dates_and_uid_lists(two_studies, caplog) -> None:
    client = two_studies
    assert _study_uids(client.search_for_studies(search_filters={"PatientName": "Doe*"})) == {STUDY_A}
    assert _study_uids(client.search_for_studies(search_filters={"PatientName": "doe^jane"})) == {STUDY_A}
    assert _study_uids(client.search_for_studies(search_filters={"PatientName": "R?e^*"})) == {STUDY_B}
    assert _study_uids(client.search_for_studies(search_filters={"PatientID": "Q-*"})) == {STUDY_A, STUDY_B}
    assert _study_uids(client.search_for_studies(search_filters={"StudyDate": "20260101-20260131"})) == {STUDY_A}
    assert _study_uids(client.search_for_studies(search_filters={"StudyDate": "20260201-"})) == {STUDY_B}
    assert _study_uids(client.search_for_studies(search_filters={"StudyInstanceUID": f"{STUDY_A},{STUDY_B}"})) == {
        STUDY_A,
        STUDY_B,
    }
    found = client.search_for_studies(search_filters={"PatientName": "Doe*"})
    assert found[0]["00100010"]["Value"] == [{"Alphabetic": "Doe^Jane"}]
    with caplog.at_level(logging.WARNING, logger="dicomweb_client"):
        ignored = client.search_for_studies(search_filters={"ReferringPhysicianName": "Who*"})
    assert _study_uids(ignored) == {STUDY_A, STUDY_B}  # ignored, not matched
    assert "ReferringPhysicianName" in caplog.text and "299" in caplog.text


def test_qido_series_and_instances_at_every_level(two_studies) -> None:
    client = two_studies
    series = client.search_for_series(STUDY_A)
    assert [s["0020000E"]["Value"] for s in series] == [[SERIES_A]] and series[0]["00201209"]["Value"] == [2]
    assert len(client.search_for_series()) == 2
    assert _study_uids(client.search_for_series(search_filters={"PatientName": "Roe*"})) == {STUDY_B}
    assert client.search_for_series(search_filters={"Modality": "CT"}) == []
    instances = client.search_for_instances(STUDY_A, SERIES_A)
    assert sorted(i["00200013"]["Value"][0] for i in instances) == [1, 2]
    assert len(client.search_for_instances(STUDY_A)) == 2 and len(client.search_for_instances()) == 3
    sop = client.stored[0].SOPInstanceUID
    (one,) = client.search_for_instances(search_filters={"SOPInstanceUID": sop})
    assert one["00080016"]["Value"] == ["1.2.840.10008.5.1.4.1.1.1"]
    # Its RetrieveURL resolves (the path: dicomweb-client sends a Host header without the port).
    url = urlsplit(one["00081190"]["Value"][0]).path
    assert client._session.get(client.base_url.replace("/dicomweb", "") + url).status_code == 200


def test_wado_retrieves_study_series_instance_metadata_and_rendered(two_studies) -> None:
    client = two_studies
    a1, a2, b = client.stored
    assert sorted(d.SOPInstanceUID for d in client.retrieve_series(STUDY_A, SERIES_A)) == sorted(
        [a1.SOPInstanceUID, a2.SOPInstanceUID]
    )
    assert [d.SOPInstanceUID for d in client.retrieve_study(STUDY_B)] == [b.SOPInstanceUID]
    study_meta = client.retrieve_study_metadata(STUDY_A)
    assert sorted(m["00080018"]["Value"][0] for m in study_meta) == sorted([a1.SOPInstanceUID, a2.SOPInstanceUID])
    assert "7FE00010" not in study_meta[0]  # metadata without the pixel data
    assert len(client.retrieve_series_metadata(STUDY_A, SERIES_A)) == 2
    meta = client.retrieve_instance_metadata(STUDY_A, SERIES_A, a1.SOPInstanceUID)
    assert meta["00100020"]["Value"] == ["Q-1"]
    png = client.retrieve_instance_rendered(STUDY_A, SERIES_A, a1.SOPInstanceUID, media_types=("image/png",))
    rendered = PILImage.open(io.BytesIO(png))
    assert rendered.format == "PNG" and rendered.size == (a1.Columns, a1.Rows)
    jpeg = client.retrieve_instance_rendered(STUDY_A, SERIES_A, a1.SOPInstanceUID, media_types=("image/jpeg",))
    assert jpeg[:2] == b"\xff\xd8"


def test_wado_answers_404_for_a_wrong_series_or_unknown_study(two_studies) -> None:
    client = two_studies
    a1 = client.stored[0]
    for call in (
        lambda: client.retrieve_instance(STUDY_A, "1.2.3.999", a1.SOPInstanceUID),
        lambda: client.retrieve_instance(STUDY_B, a1.SeriesInstanceUID, a1.SOPInstanceUID),
        lambda: client.retrieve_instance_metadata(STUDY_A, "1.2.3.999", a1.SOPInstanceUID),
        lambda: client.retrieve_series(STUDY_A, "1.2.3.999"),
        lambda: client.retrieve_study("1.2.3.4.5"),
    ):
        with pytest.raises(requests.HTTPError) as raised:
            call()
        assert raised.value.response.status_code == 404
