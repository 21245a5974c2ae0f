"""Reading patient data through the pages is audited: the worklist and its MRN search,
the worklist poll, the upload header probe (it echoes patient headers), the audit log."""

from __future__ import annotations

import io

import pytest

from classifier.models import AuditEvent
from tests.conftest import synthetic_dicom

pytestmark = pytest.mark.django_db


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action))


def test_the_worklist_and_its_search_are_one_event_each(clients, done_study, role_users) -> None:
    clients["Clinician"].get("/")
    clients["Clinician"].get("/", {"q": "MRN-T1"})
    events = _events("worklist_view")
    assert len(events) == 2 and all(e.actor == role_users["Clinician"] for e in events)
    assert events[-1].detail["search"] == "MRN-T1" or events[0].detail["search"] == "MRN-T1"
    assert done_study.pk in events[0].detail["studies"]


def test_the_worklist_poll_is_audited(clients, done_study) -> None:
    assert clients["Clinician"].get("/worklist/poll/", {"ids": str(done_study.pk)}).status_code == 200
    assert _events("worklist_poll")[0].detail["studies"] == [done_study.pk]


def test_the_upload_header_probe_is_audited(clients) -> None:
    handle = io.BytesIO(synthetic_dicom(mrn="MRN-PROBE"))
    handle.name = "p.dcm"
    assert clients["Clinician"].post("/studies/upload/probe/", {"file": handle}).status_code == 200
    (event,) = _events("upload_probe")
    assert event.detail["mrn"] == "MRN-PROBE"


def test_reading_the_audit_log_is_audited(clients, role_users) -> None:
    assert clients["Admin"].get("/audit/").status_code == 200
    (event,) = _events("audit_view")
    assert event.actor == role_users["Admin"]


def test_the_study_status_poll_is_audited(clients, done_study, role_users) -> None:
    assert clients["Clinician"].get(f"/studies/{done_study.pk}/status/").status_code == 200
    (event,) = _events("study_poll")
    assert event.actor == role_users["Clinician"] and event.detail["study"] == done_study.pk
    assert event.object_type == "classifier.study"
