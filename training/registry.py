"""The model registry: immutable artifact directories, one active version per name.

Activation flips the active row inside a transaction; the partial unique constraint
``one_active_version_per_name`` makes two active versions impossible even under races.
Every activation is a row of the activation history (``ModelActivation``); rollback is
the same operation aimed at the version the active one's latest promotion replaced.
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

from classifier.artifact_store import artifact_upload, artifact_verify_stored, model_storage
from classifier.inference.manifest import ArtifactIntegrityError, verify_manifest
from classifier.services.audit import Actor, AuditContext, audit_record
from training.models import ModelActivation, ModelVersion, SiteThreshold

log = logging.getLogger(__name__)
DEFAULT_NAME = "cxr-triage"
REQUIRED_FILES = ("model.keras", "model.tflite", "preprocess.json", "labels.json", "thresholds.json", "manifest.json")


class RegistryError(Exception):
    """An artifact directory is incomplete or does not match its manifest."""


def active_version(name: str = DEFAULT_NAME) -> ModelVersion | None:
    """The live version of ``name``; read per task so promotions apply without restarts."""
    return ModelVersion.objects.filter(name=name, status=ModelVersion.Status.ACTIVE).first()


def site_threshold_in_force(version: ModelVersion) -> SiteThreshold | None:
    """This deployment's adopted threshold for ``version`` (training.services.site_thresholds),
    or None: the artifact's threshold applies. Read per batch, like :func:`active_version`."""
    return SiteThreshold.objects.filter(version=version, retired_at__isnull=True).first()


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
    With shared storage (CXR_STORAGE=s3) the files are also uploaded to the model storage
    under ``<name>/v<N>-<random>`` and verified there: that copy is what every process loads
    (``classifier.artifact_store.artifact_local_dir``).
    """
    files = artifact_verify(source_dir)
    number = (ModelVersion.objects.select_for_update().filter(name=name).aggregate(m=Max("version"))["m"] or 0) + 1
    # The suffix keeps a re-created database from colliding with an older copy.
    folder = f"v{number}-{uuid.uuid4().hex[:8]}"
    key = ""
    if model_storage() is not None:
        key = f"{name}/{folder}"
        try:
            artifact_upload(source_dir=source_dir, key=key, files=files)
        except ArtifactIntegrityError as exc:
            raise RegistryError(str(exc)) from None
    target = source_dir
    if copy:
        target = Path(settings.CXR["MODEL_ROOT"]) / name / folder
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
        artifact_key=key,
        artifact_sha256=files,
        model_card=(target / "model_card.md").read_text() if (target / "model_card.md").is_file() else "",
        created_by=created_by,
        reviewed_images_used=reviewed_images_used,
    )


@transaction.atomic
def version_activate(
    *,
    version: ModelVersion,
    actor: Actor = None,
    audit: AuditContext | None = None,
    reason: str = "manual",
    gate: dict[str, Any] | None = None,
    override_reason: str = "",
) -> ModelVersion:
    """Make ``version`` the active one of its name; the previous active one is archived.

    Recorded as a promotion in the activation history (with the gate's result and an
    override's reason when given) and audited. Whether the gate allows it is the
    caller's rule (``training.services.promotion``); activating the active version is a no-op.
    """
    return _activate(
        version=version,
        kind=ModelActivation.Kind.PROMOTE,
        actor=actor,
        audit=audit,
        reason=reason,
        gate=gate,
        override_reason=override_reason,
    )


def _activate(
    *,
    version: ModelVersion,
    kind: str,
    actor: Actor,
    audit: AuditContext | None,
    reason: str,
    gate: dict[str, Any] | None = None,
    override_reason: str = "",
) -> ModelVersion:
    version = ModelVersion.objects.select_for_update().get(pk=version.pk)
    if version.status == ModelVersion.Status.FAILED:
        raise RegistryError(f"{version} failed and cannot be activated.")
    if version.status == ModelVersion.Status.ACTIVE:
        return version
    if version.artifact_key:  # the copy every process loads, checked where it is stored
        try:
            artifact_verify_stored(key=version.artifact_key, files=version.artifact_sha256)
        except ArtifactIntegrityError as exc:
            raise RegistryError(str(exc)) from None
    else:
        artifact_verify(Path(version.artifact_dir))
    previous = (
        ModelVersion.objects.select_for_update()
        .filter(name=version.name, status=ModelVersion.Status.ACTIVE)
        .exclude(pk=version.pk)
        .first()
    )
    if previous is not None:
        ModelVersion.objects.filter(pk=previous.pk).update(status=ModelVersion.Status.ARCHIVED)
    now = timezone.now()
    ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.ACTIVE, activated_at=now)
    ModelActivation.objects.create(
        name=version.name,
        version=version,
        previous=previous,
        kind=kind,
        reason=reason,
        gate=gate or {},
        override_reason=override_reason,
        actor=actor if isinstance(actor, User) and actor.is_authenticated else None,
        created_at=now,
    )
    detail: dict[str, Any] = {"reason": reason, "previous": previous.version if previous else None, "kind": kind}
    if gate:
        detail["gate"] = {"promote": bool(gate.get("promote")), "reasons": list(gate.get("reasons") or [])}
    if override_reason:
        detail["gate_override_reason"] = override_reason
    audit_record(actor=actor, action="model_activate", obj=version, audit=audit, detail=detail)
    log.info("activated %s (previous: %s, %s: %s)", version, previous, kind, reason)
    version.refresh_from_db()
    return version


def _latest_promotion(name: str, version: ModelVersion, *, lock: bool = False) -> ModelActivation | None:
    rows = ModelActivation.objects.filter(
        name=name, version=version, kind=ModelActivation.Kind.PROMOTE, undone_at__isnull=True
    )
    if lock:
        rows = rows.select_for_update(of=("self",))
    return rows.select_related("previous").order_by("-created_at", "-pk").first()


def rollback_target(name: str = DEFAULT_NAME) -> ModelVersion | None:
    """The version a rollback would re-activate: the one the active version's latest
    promotion replaced (never a later one). None when there is nothing to go back to."""
    current = active_version(name)
    entry = _latest_promotion(name, current) if current is not None else None
    return entry.previous if entry is not None else None


@transaction.atomic
def version_rollback(
    *, name: str = DEFAULT_NAME, actor: Actor = None, audit: AuditContext | None = None
) -> ModelVersion:
    """Undo the active version's latest promotion: re-activate the version it replaced.

    The promotion row is locked and marked undone, so two concurrent rollbacks walk back
    one step each (the second sees the first's result), never toggle forward.
    """
    current = active_version(name)
    if current is None:
        raise RegistryError(f"No version of {name} is active, so there is nothing to roll back.")
    entry = _latest_promotion(name, current, lock=True)
    if entry is None or entry.previous is None:
        raise RegistryError(f"There is no earlier active version of {name} to roll back to from {current}.")
    ModelActivation.objects.filter(pk=entry.pk).update(undone_at=timezone.now())
    return _activate(
        version=entry.previous,
        kind=ModelActivation.Kind.ROLLBACK,
        actor=actor,
        audit=audit,
        reason=f"rollback from {current}",
    )


def register_shipped_after_migrate(sender: Any = None, using: str = "default", **kwargs: Any) -> None:
    """post_migrate: on a database without models, register and activate the shipped model."""
    shipped = Path(settings.CXR["SHIPPED_MODEL_DIR"])
    if not (shipped / "manifest.json").is_file():
        return
    if ModelVersion.objects.using(using).filter(name=DEFAULT_NAME).exists():
        return
    version = version_register(source_dir=shipped)
    version_activate(version=version, reason="shipped model on a fresh database")
