"""The model registry: immutable artifact directories, one active version per name.

Activation flips the active row inside a transaction; the partial unique constraint
``one_active_version_per_name`` makes two active versions impossible even under races.
Rollback is the same operation aimed at the previously active version.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from classifier.inference.manifest import ArtifactIntegrityError, verify_manifest
from classifier.services.audit import Actor, AuditContext, audit_record
from training.models import ModelVersion

log = logging.getLogger(__name__)
DEFAULT_NAME = "cxr-triage"
REQUIRED_FILES = ("model.keras", "model.tflite", "preprocess.json", "labels.json", "thresholds.json", "manifest.json")


class RegistryError(Exception):
    """An artifact directory is incomplete or does not match its manifest."""


def active_version(name: str = DEFAULT_NAME) -> ModelVersion | None:
    """The live version of ``name``; read per task so promotions apply without restarts."""
    return ModelVersion.objects.filter(name=name, status=ModelVersion.Status.ACTIVE).first()


def artifact_verify(artifact_dir: Path) -> dict[str, str]:
    """Check the required files are there and every file matches manifest.json's sha256
    (classifier.inference.manifest, the check the runtime makes too); return the
    manifest's files. Raises RegistryError."""
    missing = [name for name in REQUIRED_FILES if not (artifact_dir / name).is_file()]
    if missing:
        raise RegistryError(f"{artifact_dir} is missing {', '.join(missing)}.")
    try:
        files: dict[str, str] = verify_manifest(artifact_dir)["files"]
    except ArtifactIntegrityError as exc:
        raise RegistryError(str(exc)) from None
    return files


def _read_json(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.is_file() else default


@transaction.atomic
def version_register(
    *,
    source_dir: Path,
    name: str = DEFAULT_NAME,
    created_by: User | None = None,
    parent: ModelVersion | None = None,
    data_snapshot: dict | None = None,
    reviewed_images_used: int = 0,
    copy: bool = True,
) -> ModelVersion:
    """Register an artifact directory as the next CANDIDATE version of ``name``.

    With ``copy`` the files are copied into MODEL_ROOT/<name>/v<N>-<random>/ (never overwriting), so
    the registry owns an immutable copy; otherwise ``source_dir`` must already live there.
    """
    files = artifact_verify(source_dir)
    number = (ModelVersion.objects.select_for_update().filter(name=name).aggregate(m=Max("version"))["m"] or 0) + 1
    target = source_dir
    if copy:
        # The suffix keeps a re-created database from colliding with an older copy.
        target = Path(settings.CXR["MODEL_ROOT"]) / name / f"v{number}-{uuid.uuid4().hex[:8]}"
        if target.exists():
            raise RegistryError(f"{target} already exists; artifacts are never overwritten.")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source_dir, target)
        for path in target.rglob("*"):
            if path.is_file():
                path.chmod(0o444)
    manifest = _read_json(target / "manifest.json", {})
    preprocess = _read_json(target / "preprocess.json", {})
    hyper = manifest.get("hyperparameters", {})
    return ModelVersion.objects.create(
        name=name,
        version=number,
        architecture=hyper.get("architecture", manifest.get("architecture", "unknown")),
        input_size=int(preprocess.get("input_size", 0)),
        labels=_read_json(target / "labels.json", []),
        preprocess_config=preprocess,
        hyperparameters=hyper,
        data_snapshot=data_snapshot if data_snapshot is not None else manifest.get("data_snapshot", {}),
        parent=parent,
        metrics=_read_json(target / "metrics.json", {}),
        thresholds=_read_json(target / "thresholds.json", {}),
        artifact_dir=str(target),
        artifact_sha256=files,
        model_card=(target / "model_card.md").read_text() if (target / "model_card.md").is_file() else "",
        created_by=created_by,
        reviewed_images_used=reviewed_images_used,
    )


@transaction.atomic
def version_activate(
    *, version: ModelVersion, actor: Actor = None, audit: AuditContext | None = None, reason: str = "manual"
) -> ModelVersion:
    """Make ``version`` the active one of its name; the previous active one is archived."""
    version = ModelVersion.objects.select_for_update().get(pk=version.pk)
    if version.status == ModelVersion.Status.FAILED:
        raise RegistryError(f"{version} failed and cannot be activated.")
    artifact_verify(Path(version.artifact_dir))
    previous = (
        ModelVersion.objects.select_for_update()
        .filter(name=version.name, status=ModelVersion.Status.ACTIVE)
        .exclude(pk=version.pk)
        .first()
    )
    if previous is not None:
        ModelVersion.objects.filter(pk=previous.pk).update(status=ModelVersion.Status.ARCHIVED)
    ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.ACTIVE, activated_at=timezone.now())
    audit_record(
        actor=actor,
        action="model_activate",
        obj=version,
        audit=audit,
        detail={"reason": reason, "previous": previous.version if previous else None},
    )
    log.info("activated %s (previous: %s, reason: %s)", version, previous, reason)
    version.refresh_from_db()
    return version


@transaction.atomic
def version_rollback(
    *, name: str = DEFAULT_NAME, actor: Actor = None, audit: AuditContext | None = None
) -> ModelVersion:
    """Re-activate the version that was active before the current one."""
    current = active_version(name)
    earlier = ModelVersion.objects.filter(name=name, status=ModelVersion.Status.ARCHIVED, activated_at__isnull=False)
    if current is not None and current.activated_at is not None:
        earlier = earlier.filter(activated_at__lt=current.activated_at)
    target = earlier.order_by("-activated_at").first()
    if target is None:
        raise RegistryError("There is no earlier active version to roll back to.")
    return version_activate(version=target, actor=actor, audit=audit, reason="rollback")


def register_shipped_after_migrate(sender: Any = None, using: str = "default", **kwargs: Any) -> None:
    """post_migrate: on a database without models, register and activate the shipped model."""
    shipped = Path(settings.CXR["SHIPPED_MODEL_DIR"])
    if not (shipped / "manifest.json").is_file():
        return
    if ModelVersion.objects.using(using).filter(name=DEFAULT_NAME).exists():
        return
    version = version_register(source_dir=shipped)
    version_activate(version=version, reason="shipped model on a fresh database")
