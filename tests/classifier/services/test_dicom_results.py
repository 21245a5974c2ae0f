"""Results back to the PACS: a pynetdicom C-STORE SCP started by the test receives the SR
and the Secondary Capture from a real worker; they are read back with highdicom/pydicom."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import highdicom as hd
import pydicom
import pytest
from PIL import Image as PILImage
from pynetdicom import AE, evt
from pynetdicom.sop_class import ComprehensiveSRStorage, SecondaryCaptureImageStorage

from classifier.integrations import DicomDelivery, DicomDestination
from classifier.models import Prediction
from classifier.services.reviews import review_submit
from classifier.services.uploads import image_upload
from tests.conftest import synthetic_dicom, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow]
PACS_PORT = 11114


@dataclass
class Pacs:
    """A C-STORE SCP on 127.0.0.1: keeps each received object as the bytes of a DICOM file."""

    received: list[bytes] = field(default_factory=list)
    server: Any = None

    def start(self) -> None:
        ae = AE(ae_title="TEST_PACS")
        for sop_class in (ComprehensiveSRStorage, SecondaryCaptureImageStorage):
            ae.add_supported_context(sop_class)

        def store(event: Any) -> int:
            self.received.append(event.encoded_dataset())
            return 0x0000

        self.server = ae.start_server(("127.0.0.1", PACS_PORT), block=False, evt_handlers=[(evt.EVT_C_STORE, store)])

    def datasets(self) -> list[pydicom.Dataset]:
        return [pydicom.dcmread(io.BytesIO(data)) for data in self.received]


@pytest.fixture
def pacs() -> Iterator[Pacs]:
    scp = Pacs()
    yield scp
    if scp.server is not None:
        scp.server.shutdown()


def _by_class(datasets: list[pydicom.Dataset], uid: str) -> list[pydicom.Dataset]:
    return [ds for ds in datasets if ds.SOPClassUID == uid]


def _sr_texts(ds: pydicom.Dataset) -> dict[str, Any]:
    report = hd.sr.ComprehensiveSR.from_dataset(ds)
    values = {}
    for item in report.ContentSequence:
        name = item.ConceptNameCodeSequence[0].CodeMeaning
        values[name] = item.get("TextValue") or (
            item.MeasuredValueSequence[0].NumericValue if "MeasuredValueSequence" in item else None
        )
    return values


def test_sr_and_secondary_capture_reach_the_pacs_after_a_retry_and_again_after_review(
    pacs, celery_worker_proc, active_tiny_model, role_users, live_server, api_tokens
) -> None:
    DicomDestination.objects.create(name="PACS", ae_title="TEST_PACS", host="127.0.0.1", port=PACS_PORT)
    worker = celery_worker_proc()
    source = pydicom.dcmread(io.BytesIO(data := synthetic_dicom(mrn="R-1", accession="RB-1", size=128)))
    outcome = image_upload(data=data, filename="r.dcm", uploaded_by=role_users["Clinician"])
    assert outcome.ok, outcome.error_message
    # The PACS is down at first: the deliveries wait with the failed attempt recorded.
    wait_for(
        lambda: DicomDelivery.objects.filter(attempts__gte=1).count() == 2, 90, interval=0.2, message=worker.output
    )
    assert set(DicomDelivery.objects.values_list("status", flat=True)) == {"pending"}
    assert "no association" in DicomDelivery.objects.first().last_error
    pacs.start()
    wait_for(lambda: len(pacs.received) == 2, 60, interval=0.2, message=worker.output)  # the backoff retry
    prediction = Prediction.objects.get(pk=outcome.prediction.pk)
    (sr,) = _by_class(pacs.datasets(), ComprehensiveSRStorage)
    (sc,) = _by_class(pacs.datasets(), SecondaryCaptureImageStorage)
    for obj in (sr, sc):
        assert obj.StudyInstanceUID == source.StudyInstanceUID and obj.PatientID == "R-1"
        assert obj.SeriesInstanceUID != source.SeriesInstanceUID
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == source.StudyInstanceUID
    assert (
        evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    )
    texts = _sr_texts(sr)
    assert float(texts["Probability of abnormality"]) == pytest.approx(prediction.p_abnormal, abs=1e-6)
    assert float(texts["Operating threshold"]) == pytest.approx(prediction.threshold, abs=1e-6)
    assert texts["Triage flag"] == ("flagged" if prediction.flag else "not flagged")
    assert texts["Algorithm Name"] == active_tiny_model.name
    assert texts["Model sha256"] == active_tiny_model.artifact_sha256["model.tflite"]
    assert texts["Comment"] == "decision support, not a diagnosis"
    assert sr.PreliminaryFlag == "PRELIMINARY" and sr.CompletionFlag == "COMPLETE"
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert sc.BurnedInAnnotation == "YES" and sc.PhotometricInterpretation == "RGB"
    with prediction.heatmap.open("rb") as handle:
        overlay = PILImage.open(handle)
        overlay_size = overlay.size
    assert sc.Columns == overlay_size[0] and sc.Rows > overlay_size[1]  # the overlay with the text band below
    assert sc.pixel_array.shape == (sc.Rows, sc.Columns, 3)
    assert set(DicomDelivery.objects.values_list("status", flat=True)) == {"succeeded"}

    review_submit(prediction=prediction, radiologist=role_users["Radiologist"], decision="confirm")
    wait_for(lambda: len(pacs.received) == 4, 60, interval=0.2, message=worker.output)
    (final,) = [
        ds for ds in _by_class(pacs.datasets(), ComprehensiveSRStorage) if ds.SOPInstanceUID != sr.SOPInstanceUID
    ]
    assert final.PreliminaryFlag == "FINAL" and final.StudyInstanceUID == source.StudyInstanceUID
    assert _sr_texts(final)["Radiologist review"].startswith("Radiologist confirmed")
    # The study page shows the four deliveries.
    from django.test import Client

    client = Client()
    client.force_login(role_users["Clinician"])
    page = client.get(f"/studies/{prediction.image.study_id}/").content.decode()
    assert "Sent to PACS (4)" in page and page.count("Succeeded") >= 4
    # The same objects over WADO-RS, in the source study.
    import requests
    from dicomweb_client.api import DICOMwebClient

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {api_tokens['Clinician']}"
    web = DICOMwebClient(url=f"{live_server.url}/dicomweb", session=session)
    served = web.retrieve_instance(source.StudyInstanceUID, sr.SeriesInstanceUID, sr.SOPInstanceUID)
    assert _sr_texts(served) == texts and served.SOPInstanceUID == sr.SOPInstanceUID
    whole = web.retrieve_study(source.StudyInstanceUID)
    assert {ds.SOPInstanceUID for ds in whole} == {source.SOPInstanceUID} | {
        ds.SOPInstanceUID for ds in pacs.datasets()
    }
    meta = web.retrieve_series_metadata(source.StudyInstanceUID, sc.SeriesInstanceUID)
    assert [m["00080018"]["Value"][0] for m in meta] == [sc.SOPInstanceUID] and "7FE00010" not in meta[0]
    # ... and found by QIDO-RS: a series per result object beside the source's, each with its instance.
    sent = pacs.datasets()
    series = {s["0020000E"]["Value"][0]: s for s in web.search_for_series(source.StudyInstanceUID)}
    assert set(series) == {source.SeriesInstanceUID} | {ds.SeriesInstanceUID for ds in sent}
    assert {series[ds.SeriesInstanceUID]["00080060"]["Value"][0] for ds in sent} == {"SR", "OT"}
    for ds in sent:
        listed = series[ds.SeriesInstanceUID]
        assert listed["00080060"]["Value"] == (["SR"] if ds.SOPClassUID == ComprehensiveSRStorage else ["OT"])
        assert listed["00200011"]["Value"] == [ds.SeriesNumber] and listed["00201209"]["Value"] == [1]
        (instance,) = web.search_for_instances(source.StudyInstanceUID, ds.SeriesInstanceUID)
        assert instance["00080018"]["Value"] == [ds.SOPInstanceUID]
        assert instance["00080016"]["Value"] == [ds.SOPClassUID]
    only_sr = web.search_for_series(source.StudyInstanceUID, search_filters={"Modality": "SR"})
    assert {s["0020000E"]["Value"][0] for s in only_sr} == {sr.SeriesInstanceUID, final.SeriesInstanceUID}
    captures = web.search_for_instances(
        source.StudyInstanceUID, search_filters={"SOPClassUID": SecondaryCaptureImageStorage}
    )
    assert len(captures) == 2 and sc.SOPInstanceUID in {i["00080018"]["Value"][0] for i in captures}
    assert web.search_for_instances(search_filters={"PatientID": "someone else", "Modality": "SR"}) == []
    assert (
        web.retrieve_instance(  # the listed RetrieveURL's object is served
            source.StudyInstanceUID, sc.SeriesInstanceUID, sc.SOPInstanceUID
        ).SOPInstanceUID
        == sc.SOPInstanceUID
    )
