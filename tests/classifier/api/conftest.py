"""API fixtures: synthetic DICOM files and a local webhook receiver (clients per role are in tests/conftest.py)."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest


def synthetic_dicom(
    *,
    mrn: str = "MRN-D1",
    accession: str = "ACC-D1",
    study_uid: str | None = None,
    sop_uid: str | None = None,
    size: int = 96,
    seed: int = 0,
    modality: str = "CR",
    body_part: str = "CHEST",
) -> bytes:
    """A CR chest radiograph with synthetic pixels, written with pydicom."""
    from PIL import Image as PILImage
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from tests.conftest import synthetic_png

    pixels = np.asarray(PILImage.open(io.BytesIO(synthetic_png(size, seed=seed)))).astype(np.uint16) * 16
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR Image Storage
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID, ds.PatientName, ds.PatientSex, ds.PatientBirthDate = mrn, "Test^Patient", "F", "19700101"
    ds.AccessionNumber, ds.StudyDate, ds.Modality = accession, "20260101", modality
    ds.BodyPartExamined, ds.ViewPosition = body_part, "PA"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture
def dicom_bytes() -> Callable[..., bytes]:
    return synthetic_dicom


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: records requests, answers the next queued status codes."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    got: threading.Event = field(default_factory=threading.Event)

    def verify(self, request: dict[str, Any], secret: str) -> bool:
        expected = "sha256=" + hmac.new(secret.encode(), request["body"], hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, request["headers"].get("X-CXR-Signature", ""))

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.requests]


@pytest.fixture
def webhook_receiver() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            receiver.requests.append({"body": body, "headers": dict(self.headers.items()), "path": self.path})
            code = receiver.statuses.pop(0) if receiver.statuses else 200
            self.send_response(code)
            self.end_headers()
            receiver.got.set()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()
