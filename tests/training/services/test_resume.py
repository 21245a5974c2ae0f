"""``train_model --resume``: only an expired or dead claim is taken over (one executor per run)."""

from __future__ import annotations

import os
import socket
import subprocess
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from tests.classifier.api.helpers import registered_version
from training.models import TrainingRun

pytestmark = pytest.mark.django_db


def _running_run(*, claimed_by: str, lease_in: timedelta) -> TrainingRun:
    return TrainingRun.objects.create(
        status=TrainingRun.Status.RUNNING,
        claim_token="00000000-0000-0000-0000-000000000001",
        claimed_by=claimed_by,
        lease_expires_at=timezone.now() + lease_in,
        started_at=timezone.now(),
    )


@pytest.fixture
def executed(monkeypatch, tmp_path) -> list[int]:
    """Record executions instead of training: _execute is what would train the model."""
    calls: list[int] = []

    def fake_execute(run):
        calls.append(run.pk)
        return registered_version(tmp_path, len(calls))

    monkeypatch.setattr("training.services.runs._execute", fake_execute)
    return calls


def test_resume_refuses_a_run_whose_claim_is_alive(executed) -> None:
    alive = f"{socket.gethostname()}:{os.getppid()}"  # a live process on this host, not us
    run = _running_run(claimed_by=alive, lease_in=timedelta(hours=2))
    with pytest.raises(CommandError, match=r"claim is alive .* not resumed"):
        call_command("train_model", "--resume", str(run.pk))
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.RUNNING and run.claimed_by == alive
    assert str(run.claim_token) == "00000000-0000-0000-0000-000000000001" and executed == []


def test_resume_reclaims_a_run_whose_worker_died(executed) -> None:
    child = subprocess.Popen(["true"])
    child.wait()  # its pid is gone now
    run = _running_run(claimed_by=f"{socket.gethostname()}:{child.pid}", lease_in=timedelta(hours=2))
    call_command("train_model", "--resume", str(run.pk))
    run.refresh_from_db()
    assert executed == [run.pk] and run.status == TrainingRun.Status.SUCCEEDED and run.attempts == 1


def test_resume_reclaims_a_run_whose_lease_expired(executed) -> None:
    run = _running_run(claimed_by="another-host:123", lease_in=timedelta(seconds=-1))
    call_command("train_model", "--resume", str(run.pk))
    run.refresh_from_db()
    assert executed == [run.pk] and run.status == TrainingRun.Status.SUCCEEDED


def test_resume_requeues_a_failed_run_and_refuses_a_finished_one(executed) -> None:
    run = TrainingRun.objects.create(status=TrainingRun.Status.FAILED, error_message="power cut")
    call_command("train_model", "--resume", str(run.pk))
    run.refresh_from_db()
    assert executed == [run.pk] and run.status == TrainingRun.Status.SUCCEEDED and run.error_message == ""
    with pytest.raises(CommandError, match="already succeeded"):
        call_command("train_model", "--resume", str(run.pk))
    assert executed == [run.pk]
