"""The DICOM listener with real clients: pynetdicom's storescu/echoscu and SCU API.

The listener runs as ``manage.py dicom_listener`` (a subprocess on this test's database)
or in-process (``listener_start``); the ports are 11112-11119.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import ComputedRadiographyImageStorage, CTImageStorage, Verification

from classifier.dicomnet.listener import ListenerConfig, listener_start
from classifier.imaging.datapaths import data_dir
from classifier.integrations import DicomPeer
from classifier.models import AuditEvent, Image, Prediction
from classifier.services.predictions import prediction_sweep
from tests.conftest import ROOT, _port_open, needs_shared_data, synthetic_dicom, wait_for

AE_TITLE = "CXR_TEST"
SUBPROCESS_PORT, INPROCESS_PORT = 11112, 11113


def _config(port: int = INPROCESS_PORT, max_associations: int = 4) -> ListenerConfig:
    return ListenerConfig(
        ae_title=AE_TITLE, host="127.0.0.1", port=port, max_associations=max_associations, timeout_seconds=10
    )


@pytest.fixture
def in_process_listener(transactional_db) -> Iterator[Callable[..., None]]:
    servers = []

    def start(**kwargs) -> None:
        servers.append(listener_start(_config(**kwargs)))

    yield start
    for server in servers:
        server.shutdown()


@pytest.fixture
def listener_proc(worker_env) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start ``manage.py dicom_listener`` with env overrides; stopped with SIGTERM after the test."""
    started: list[tuple[subprocess.Popen, Path]] = []

    def start(**overrides: str) -> subprocess.Popen:
        log = Path(worker_env["CXR_VAR_DIR"]) / f"dicom-listener-{len(started)}.log"
        env = {**worker_env, "CXR_DICOM_AE_TITLE": AE_TITLE, "CXR_DICOM_PORT": str(SUBPROCESS_PORT), **overrides}
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "manage.py", "dicom_listener"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append((proc, log))
        wait_for(lambda: _port_open(SUBPROCESS_PORT) or proc.poll() is not None, 60, message=log.read_text)
        assert proc.poll() is None, log.read_text()
        proc.log = log  # type: ignore[attr-defined]
        return proc

    yield start
    for proc, _ in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)


def _scu(calling: str = "MODALITY1", *contexts) -> AE:
    ae = AE(ae_title=calling)
    for context in contexts or (Verification, ComputedRadiographyImageStorage, CTImageStorage):
        ae.add_requested_context(context)
    return ae


def _dataset(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def test_storescu_pushes_the_shared_dicoms_and_a_worker_gives_results(
    listener_proc, celery_worker_proc, active_tiny_model
) -> None:
    source = data_dir() / "dicom"
    needs_shared_data(source)
    DicomPeer.objects.create(ae_title="STORESCU", name="test modality")
    listener = listener_proc()
    worker = celery_worker_proc()
    common = ["127.0.0.1", str(SUBPROCESS_PORT), "-aec", AE_TITLE]
    echo = subprocess.run(
        [sys.executable, "-m", "pynetdicom", "echoscu", *common, "-aet", "STORESCU"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert echo.returncode == 0, echo.stderr
    store = subprocess.run(
        [sys.executable, "-m", "pynetdicom", "storescu", *common, str(source), "-r", "-cx", "-v"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # storescu itself skips CR-MONO1 (no file meta: "Bad DICOM file"); the Fake MONOHR1 file
    # reuses the SIIM file's SOPInstanceUID with other bytes: a conflict, refused with 0x0111.
    assert store.stderr.count("Status: 0x0000 - Success") == 3, store.stderr
    assert "Status: 0x0111" in store.stderr, store.stderr
    stored = {"RG1_J2KI.dcm", "RSNA_c64d5667-a776-4f95-9e21-bfabafb07740.dcm", next(source.glob("SIIM_1.*")).name}
    expected = {str(pydicom.dcmread(source / name, stop_before_pixels=True).SOPInstanceUID) for name in stored}
    assert set(Image.objects.values_list("sop_instance_uid", flat=True)) == expected
    assert AuditEvent.objects.filter(action="upload_conflict", user_agent="DICOM STORESCU").count() == 1
    uploads = AuditEvent.objects.filter(action="upload", user_agent="DICOM STORESCU", ip_address="127.0.0.1")
    assert uploads.count() == 3
    predictions = Prediction.objects.all()
    assert predictions.count() == 3
    wait_for(
        lambda: all(p.status in ("done", "failed") for p in predictions.all()), 240, interval=0.5, message=worker.output
    )
    assert all(p.status == "done" for p in predictions.all()), [p.error_message for p in predictions.all()]
    assert listener.poll() is None


def _associate(ae: AE, port: int = INPROCESS_PORT, called: str = AE_TITLE):
    return ae.associate("127.0.0.1", port, ae_title=called)


def test_only_allow_listed_peers_associate_and_refusals_are_audited(in_process_listener) -> None:
    in_process_listener(max_associations=1)
    refused = _associate(_scu("STRANGER"))
    assert refused.is_rejected and not refused.is_established
    wait_for(lambda: AuditEvent.objects.filter(action="dicom_association_refused").exists(), 10)
    event = AuditEvent.objects.get(action="dicom_association_refused")
    assert event.detail == {"calling_ae": "STRANGER", "reason": "calling AE title not allowed"}
    peer = DicomPeer.objects.create(ae_title="MODALITY1", name="CR room 1")
    assoc = _associate(_scu("MODALITY1"))
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    # The association limit: a second concurrent association is rejected.
    second = _associate(_scu("MODALITY1"))
    assert second.is_rejected
    assoc.release()
    assert _associate(_scu("MODALITY1"), called="SOMEONE_ELSE").is_rejected  # the called AE title must match
    DicomPeer.objects.filter(pk=peer.pk).update(is_active=False)
    assert _associate(_scu("MODALITY1")).is_rejected  # read per association: no restart needed


def _store(assoc, data: bytes) -> pydicom.Dataset:
    return assoc.send_c_store(_dataset(data))


def test_c_store_statuses_follow_the_standard(in_process_listener) -> None:
    in_process_listener()
    DicomPeer.objects.create(ae_title="MODALITY1", name="CR room 1")
    assoc = _associate(_scu("MODALITY1"))
    assert assoc.is_established
    contexts = {cx.abstract_syntax for cx in assoc.accepted_contexts}
    assert ComputedRadiographyImageStorage in contexts and CTImageStorage not in contexts  # refused at negotiation
    good = synthetic_dicom(mrn="L-1", accession="LA-1", sop_uid="1.2.826.0.1.3680043.8.498.31")
    assert _store(assoc, good).Status == 0x0000
    assert _store(assoc, good).Status == 0x0000  # a re-send is a duplicate: success, nothing new
    assert Image.objects.count() == 1 and Prediction.objects.count() == 1
    other = synthetic_dicom(mrn="L-1", accession="LA-1", sop_uid="1.2.826.0.1.3680043.8.498.31", seed=5)
    conflict = _store(assoc, other)
    assert conflict.Status == 0x0111 and conflict.ErrorComment.startswith("A different image")
    knee = _store(assoc, synthetic_dicom(mrn="L-1", accession="LA-2", body_part="KNEE"))
    assert knee.Status == 0x0122
    no_patient = _store(assoc, synthetic_dicom(mrn="", accession="LA-3"))
    assert no_patient.Status == 0xC000 and "MRN" in no_patient.ErrorComment
    no_accession = synthetic_dicom(mrn="L-2", accession="", study_uid="1.2.826.0.1.3680043.8.498.32")
    assert _store(assoc, no_accession).Status == 0x0000
    assert Image.objects.get(study__study_instance_uid="1.2.826.0.1.3680043.8.498.32").study.accession_number == (
        "1.2.826.0.1.3680043.8.498.32"
    )
    assoc.release()
    assert Image.objects.count() == 2


def test_broker_down_during_c_store_loses_nothing(listener_proc, celery_worker_proc, active_tiny_model) -> None:
    """The listener's broker is unreachable: the C-STORE succeeds, the rows wait, the sweeper sends them."""
    DicomPeer.objects.create(ae_title="MODALITY1", name="CR room 1")
    listener_proc(CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    assoc = _associate(_scu("MODALITY1"), port=SUBPROCESS_PORT)
    assert assoc.is_established
    status = _store(assoc, synthetic_dicom(mrn="B-1", accession="BD-1", size=128))
    assoc.release()
    assert status.Status == 0x0000
    prediction = Prediction.objects.get(image__study__accession_number="BD-1")
    assert prediction.status == "pending" and prediction.image.file.storage.exists(prediction.image.file.name)
    worker = celery_worker_proc()
    Prediction.objects.filter(pk=prediction.pk).update(created_at=prediction.created_at.replace(year=2020))
    assert prediction_sweep()["resent"] >= 1
    wait_for(lambda: Prediction.objects.get(pk=prediction.pk).status == "done", 120, message=worker.output)


def test_peers_are_managed_in_the_admin_and_every_change_is_audited(client, django_user_model) -> None:
    admin_user = django_user_model.objects.create_superuser("root", password="pw-for-tests-1")
    client.force_login(admin_user)
    response = client.post(
        "/admin/classifier/dicompeer/add/", {"ae_title": " PACS1 ", "name": "PACS", "is_active": "on"}
    )
    assert response.status_code == 302, response.content
    peer = DicomPeer.objects.get()
    assert peer.ae_title == "PACS1"
    client.post(f"/admin/classifier/dicompeer/{peer.pk}/change/", {"ae_title": "PACS1", "name": "PACS"})
    assert DicomPeer.objects.get().is_active is False
    client.post(f"/admin/classifier/dicompeer/{peer.pk}/delete/", {"post": "yes"})
    assert not DicomPeer.objects.exists()
    actions = list(
        AuditEvent.objects.filter(actor=admin_user, action__startswith="dicom_peer")
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == ["dicom_peer_created", "dicom_peer_changed", "dicom_peer_deleted"]
