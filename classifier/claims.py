"""Atomic claiming of work rows, so a redelivered or duplicated task message is a no-op.

A row is claimed by one conditional UPDATE (PENDING -> RUNNING with a fresh token). A
RUNNING row is re-claimable only when its lease has expired or when the process that
claimed it is provably dead (same host, pid gone), which is what happens when Celery
redelivers the message of a killed worker child (``task_reject_on_worker_lost``).
Results are written with a second conditional UPDATE that matches the token, so a
zombie worker can never overwrite a newer attempt. Works on PostgreSQL and SQLite.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta
from typing import Any

from django.db import models
from django.db.models import F
from django.utils import timezone


def worker_identity() -> str:
    """``host:pid`` of this process (the Celery pool child, not the parent)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claimant_is_dead(claimed_by: str) -> bool:
    """True only when we can prove the claiming process is gone (same host, no such pid)."""
    host, _, pid_text = claimed_by.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def claim(
    model: type[models.Model], pk: int, *, pending: str, running: str, lease_seconds: float, **extra: Any
) -> uuid.UUID | None:
    """Claim row ``pk`` for this process; return the claim token, or None if someone else has it.

    ``extra`` fields are set on the row as part of the claim (e.g. started_at).
    """
    token = uuid.uuid4()
    now = timezone.now()
    changes = dict(
        status=running,
        claim_token=token,
        claimed_by=worker_identity(),
        lease_expires_at=now + timedelta(seconds=lease_seconds),
        attempts=F("attempts") + 1,
        **extra,
    )
    rows = model._default_manager.filter(pk=pk)
    if rows.filter(status=pending).update(**changes) == 1:
        return token
    stale = rows.filter(status=running).values("claim_token", "claimed_by", "lease_expires_at").first()
    if stale is None:
        return None
    expired = stale["lease_expires_at"] is not None and stale["lease_expires_at"] <= now
    if not (expired or claimant_is_dead(stale["claimed_by"])):
        return None
    taken = rows.filter(status=running, claim_token=stale["claim_token"]).update(**changes)
    return token if taken == 1 else None


def claim_many(
    model: type[models.Model], pks: list[int], *, pending: str, running: str, lease_seconds: float, **extra: Any
) -> tuple[uuid.UUID, list[int]]:
    """Claim whichever of ``pks`` are still ``pending``, in two queries; return the shared
    claim token and the ids claimed.  Unlike ``claim`` this never takes over a RUNNING
    row (batch-mates are optional work; reclaiming stays with ``claim`` and the sweeper).
    """
    token = uuid.uuid4()
    if not pks:
        return token, []
    changes = dict(
        status=running,
        claim_token=token,
        claimed_by=worker_identity(),
        lease_expires_at=timezone.now() + timedelta(seconds=lease_seconds),
        attempts=F("attempts") + 1,
        **extra,
    )
    if not model._default_manager.filter(pk__in=pks, status=pending).update(**changes):
        return token, []
    return token, list(
        model._default_manager.filter(pk__in=pks, status=running, claim_token=token)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def complete(model: type[models.Model], pk: int, token: uuid.UUID, *, running: str, **fields: Any) -> bool:
    """Write the outcome only if this process still holds the claim. True when written."""
    return model._default_manager.filter(pk=pk, status=running, claim_token=token).update(**fields) == 1
