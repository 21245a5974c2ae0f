"""Orphan media: files under images/, heatmaps/ and films/ that no row references.

They appear when a database failure rolls back an upload after its file was written, or
when a worker is killed between writing a batch's heatmaps and committing the outcome.
``media_orphans_sweep`` (the hourly ``media_cleanup_task``) removes those older than
CXR_ORPHAN_GRACE_HOURS: younger files may belong to a transaction still in flight.
It works one ``<prefix>/<2 hex>/`` directory at a time (the layout of
``storage.generated_name``), asking the database which of that directory's names are
referenced, so memory stays bounded at any number of files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models import Q
from django.utils import timezone

from classifier.models import Image, Prediction

log = logging.getLogger(__name__)

PREFIXES = ("images", "heatmaps", "films")
PREDICTION_FILES = ("heatmap", "heatmap_raw", "display", "heatmap_rgba")
IMAGE_FILES = ("file", "film")


def _directories(prefix: str) -> Iterator[tuple[str, list[str]]]:
    """(directory, file names in it) for the prefix itself and each of its subdirectories.

    A folder is not asked whether it ``exists``: an object store has no folders (S3
    answers False for every prefix), it only lists what is under one."""
    pending = [prefix]
    while pending:
        directory = pending.pop()
        try:
            subdirs, files = default_storage.listdir(directory)
        except FileNotFoundError:  # the local disk before the first file of this prefix
            continue
        pending.extend(f"{directory}/{sub}" for sub in subdirs)
        if files:
            yield directory, [f"{directory}/{name}" for name in files]


def _referenced(names: list[str]) -> set[str]:
    found: set[str] = set()
    for model, fields in ((Image, IMAGE_FILES), (Prediction, PREDICTION_FILES)):
        query = Q()
        for field in fields:
            query |= Q(**{f"{field}__in": names})
        for row in model.objects.filter(query).values_list(*fields):
            found.update(row)
    return found


def media_orphans_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Delete unreferenced media files older than the grace period; returns the counts
    (also logged). A file referenced by any row, or younger than the grace, is kept."""
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.CXR["ORPHAN_GRACE_HOURS"])
    removed = kept_young = freed = 0
    for prefix in PREFIXES:
        for _, names in _directories(prefix):
            referenced = _referenced(names)
            for name in names:
                if name in referenced:
                    continue
                if default_storage.get_modified_time(name) > cutoff:
                    kept_young += 1
                    continue
                freed += default_storage.size(name)
                default_storage.delete(name)
                removed += 1
    log.info(
        "media cleanup: removed %d orphan files (%d bytes); %d unreferenced files are within the %d h grace period",
        removed,
        freed,
        kept_young,
        settings.CXR["ORPHAN_GRACE_HOURS"],
    )
    return {"removed": removed, "bytes": freed, "within_grace": kept_young}
