"""Importing a server-side folder of labelled images from the web page, on the training queue.

``dataset_import_start`` checks the folder (under ``CXR_DATASET_IMPORT_ROOT`` only, a
layout ``import_dataset`` knows), writes a QUEUED DatasetImport, audits it and sends the
task on commit. ``dataset_import_execute`` claims the row (a redelivered message does
nothing; a dead worker's claim is reclaimed as for training runs), runs the same
``dataset_import`` as the command with progress written to the row, and records the outcome.
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from classifier import claims
from classifier.services.audit import AuditContext, audit_record
from training.models import DatasetImport
from training.services.datasets import SCANNERS, SPLITS, dataset_import

log = logging.getLogger(__name__)


class ImportRefused(ValueError):
    """The folder cannot be imported; the message says why."""


def import_root() -> Path:
    return Path(settings.CXR["DATASET_IMPORT_ROOT"]).resolve()


def import_directory_check(*, directory: str, layout: str) -> Path:
    """The resolved folder, if it is under the import root and readable in ``layout``."""
    root = import_root()
    if not directory.strip():
        raise ImportRefused("Name the folder to import.")
    path = Path(directory.strip())
    resolved = (path if path.is_absolute() else root / path).resolve()  # symlinks and .. resolved first
    if not resolved.is_relative_to(root):
        raise ImportRefused(f"{directory} is outside the import folder {root} (CXR_DATASET_IMPORT_ROOT).")
    if not resolved.is_dir():
        raise ImportRefused(f"{resolved} is not a folder on the server.")
    if layout not in SCANNERS:
        raise ImportRefused(f"The layout must be one of {', '.join(sorted(SCANNERS))}.")
    if layout == "covid-metadata" and not (resolved / "metadata.csv").is_file():
        raise ImportRefused(f"{resolved} has no metadata.csv, which the covid-metadata layout reads.")
    return resolved


def dataset_import_start(
    *,
    directory: str,
    layout: str,
    name: str = "",
    default_split: str = "",
    created_by: User | None = None,
    audit: AuditContext | None = None,
) -> DatasetImport:
    """Check the folder, create a QUEUED import and send it to the training queue on commit."""
    resolved = import_directory_check(directory=directory, layout=layout)
    if default_split and default_split not in SPLITS:
        raise ImportRefused(f"The default split must be one of {', '.join(sorted(SPLITS))} or empty.")
    with transaction.atomic():
        job = DatasetImport.objects.create(
            directory=str(resolved),
            layout=layout,
            name=(name.strip() or resolved.name)[:128],
            default_split=default_split,
            created_by=created_by,
        )
        audit_record(
            actor=created_by,
            action="dataset_import_start",
            obj=job,
            audit=audit,
            detail={"directory": job.directory, "layout": layout, "name": job.name},
        )
        from training.tasks import dataset_import_task

        transaction.on_commit(lambda: dataset_import_task.delay(job.pk))
    return job


def dataset_import_execute(*, import_id: int) -> DatasetImport | None:
    """Run a queued import. Returns None when another executor holds it."""
    token = claims.claim(
        DatasetImport,
        import_id,
        pending=DatasetImport.Status.QUEUED,
        running=DatasetImport.Status.RUNNING,
        lease_seconds=settings.CXR["TRAINING_HARD_TIME_LIMIT"] + 60,  # the task's own limits
        started_at=timezone.now(),
    )
    if token is None:
        return None
    job = DatasetImport.objects.get(pk=import_id)

    def progress(record: dict[str, int]) -> None:
        DatasetImport.objects.filter(pk=import_id, claim_token=token).update(progress=record)

    try:
        dataset, counts = dataset_import(
            directory=Path(job.directory),
            layout=job.layout,
            name=job.name,
            created_by=job.created_by,
            default_split=job.default_split,
            progress=progress,
        )
    except Exception as exc:  # the row must end in a final state with the reason
        log.exception("dataset import %s failed", import_id)
        claims.complete(
            DatasetImport,
            import_id,
            token,
            running=DatasetImport.Status.RUNNING,
            status=DatasetImport.Status.FAILED,
            error_message=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now(),
        )
        raise
    job.refresh_from_db()
    final = {**job.progress, **counts, "images_in_dataset": dataset.images.count()}
    claims.complete(
        DatasetImport,
        import_id,
        token,
        running=DatasetImport.Status.RUNNING,
        status=DatasetImport.Status.SUCCEEDED,
        dataset=dataset,
        progress=final,
        finished_at=timezone.now(),
    )
    audit_record(
        actor=job.created_by, action="dataset_import_done", obj=job, detail={"dataset": dataset.name, **counts}
    )
    return DatasetImport.objects.get(pk=import_id)
