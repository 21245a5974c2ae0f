"""Registered model artifacts in shared storage: the copy every machine loads.

With ``CXR_STORAGE=s3`` the registry uploads each new version's artifact directory to the
``models`` storage (``<name>/v<N>-<random>/<file>``, never overwritten) and records that
folder as ``ModelVersion.artifact_key``. The runtimes read files from disk, so a process
that loads a model calls ``artifact_local_dir``: it downloads the folder once into
``CXR_MODEL_CACHE_DIR``, checks every file's sha256 against the registry's record (not
only against the downloaded manifest, which travels with the files and could be altered
with them) and only then moves it into place, so a tampered or truncated object is
refused and never cached. A version without a key (the local default) is its own
``artifact_dir``, exactly as before.

Concurrency: pool processes of one host may fetch the same version at once; each writes
its own temporary folder and one atomic rename wins, the others use the winner's copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import IO, Protocol

from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage, storages

from classifier.inference.manifest import ArtifactIntegrityError, file_sha256
from classifier.storage import storage_unavailable_as_oserror, stream_sha256

log = logging.getLogger(__name__)
MODELS_ALIAS = "models"
MANIFEST = "manifest.json"
_verified: dict[str, Path] = {}  # per process: keys whose cached copy was checked
_lock = threading.Lock()


class StoredVersion(Protocol):
    """What this module reads of a training.models.ModelVersion."""

    artifact_dir: str
    artifact_key: str
    artifact_sha256: dict


def model_storage() -> Storage | None:
    """The shared storage of model artifacts, or None when artifacts stay on the local disk."""
    if MODELS_ALIAS not in settings.STORAGES:
        return None
    return storages[MODELS_ALIAS]


def _names(files: dict[str, str]) -> list[str]:
    return [*sorted(files), MANIFEST]


def artifact_upload(*, source_dir: Path, key: str, files: dict[str, str]) -> None:
    """Upload the manifest's files and the manifest under ``key``, then verify the stored
    objects read back. Raises ArtifactIntegrityError if a key exists or a copy differs."""
    storage = model_storage()
    if storage is None:
        raise ArtifactIntegrityError("no shared model storage is configured (CXR_STORAGE=local)")
    for relative in _names(files):
        name = f"{key}/{relative}"
        with (source_dir / relative).open("rb") as handle:
            saved = storage.save(name, File(handle, name=relative))
        if saved != name:  # file_overwrite is off: an existing key got a different name
            storage.delete(saved)
            raise ArtifactIntegrityError(f"{name} already exists in the model storage; artifacts are never overwritten")
    artifact_verify_stored(key=key, files=files)
    log.info("uploaded artifact %s (%d files) to the model storage", key, len(files) + 1)


def _open_stored(storage: Storage, key: str, relative: str) -> File:
    try:
        with storage_unavailable_as_oserror(f"reading {key}/{relative} from the model storage"):
            return storage.open(f"{key}/{relative}", "rb")
    except FileNotFoundError:
        raise ArtifactIntegrityError(f"artifact file {relative} is missing from {key} in the model storage") from None


def _mismatch(relative: str, key: str, actual: str, expected: str) -> ArtifactIntegrityError:
    return ArtifactIntegrityError(
        f"artifact file {relative} of {key} in the model storage has sha256 {actual[:12]}..., "
        f"the registry recorded {expected[:12]}...; refusing to load a modified artifact"
    )


def _check_manifest(raw: bytes, key: str, files: dict[str, str]) -> None:
    try:
        listed = json.loads(raw).get("files", {})
    except ValueError:
        listed = None
    if listed != files:
        raise ArtifactIntegrityError(
            f"{MANIFEST} of {key} in the model storage does not list the files the registry recorded; "
            "refusing to load a modified artifact"
        )


def artifact_verify_stored(*, key: str, files: dict[str, str]) -> None:
    """Stream every stored object of ``key`` through sha256 and compare with ``files``
    (nothing is written locally). Raises ArtifactIntegrityError naming the first bad file."""
    storage = model_storage()
    if storage is None:
        raise ArtifactIntegrityError(f"{key} is in the shared model storage, but CXR_STORAGE is local")
    for relative, expected in sorted(files.items()):
        with _open_stored(storage, key, relative) as handle:
            actual = stream_sha256(handle)
        if actual != expected:
            raise _mismatch(relative, key, actual, expected)
    with _open_stored(storage, key, MANIFEST) as handle:
        _check_manifest(handle.read(), key, files)


def artifact_local_dir(version: StoredVersion) -> Path:
    """A local directory holding ``version``'s verified artifact, fetched on first use.

    Without an ``artifact_key`` it is ``artifact_dir`` (the local default, unchanged).
    Raises ArtifactIntegrityError for a missing or modified file, OSError when the
    storage cannot be reached.
    """
    key = version.artifact_key
    if not key:
        return Path(version.artifact_dir)
    files = dict(version.artifact_sha256 or {})
    with _lock:
        cached = _verified.get(key)
        if cached is not None and cached.is_dir():
            return cached
        target = Path(settings.CXR["MODEL_CACHE_DIR"]) / key
        if target.is_dir():
            _check_cached(target, key, files)
        else:
            _fetch(key, files, target)
        _verified[key] = target
        return target


def _fetch(key: str, files: dict[str, str], target: Path) -> None:
    storage = model_storage()
    if storage is None:
        raise ArtifactIntegrityError(f"{key} is in the shared model storage, but CXR_STORAGE is local")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for relative in _names(files):
            local = staging / relative
            local.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with _open_stored(storage, key, relative) as source, local.open("wb") as out:
                for chunk in source.chunks():
                    digest.update(chunk)
                    out.write(chunk)
            if relative != MANIFEST and digest.hexdigest() != files[relative]:
                raise _mismatch(relative, key, digest.hexdigest(), files[relative])
        _check_manifest((staging / MANIFEST).read_bytes(), key, files)
        for path in staging.rglob("*"):
            if path.is_file():
                path.chmod(0o444)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():
                raise
            shutil.rmtree(staging, ignore_errors=True)  # another process of this host won the race
        else:
            log.info("fetched artifact %s into %s", key, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _check_cached(target: Path, key: str, files: dict[str, str]) -> None:
    """Once per process: the cached copy still matches the registry (the disk is local
    to this host, but not immutable)."""
    for relative, expected in sorted(files.items()):
        path = target / relative
        actual = file_sha256(path) if path.is_file() else "missing"
        if actual != expected:
            raise ArtifactIntegrityError(
                f"cached artifact file {relative} in {target} has sha256 {actual[:12]}..., "
                f"the registry recorded {expected[:12]}...; delete {target} to fetch {key} again"
            )
    _check_manifest((target / MANIFEST).read_bytes(), key, files)


def artifact_has(version: StoredVersion, relative: str) -> bool:
    """Whether the artifact holds ``relative`` (a stored artifact: its manifest says so, no I/O)."""
    if version.artifact_key:
        return relative in (version.artifact_sha256 or {})
    return (Path(version.artifact_dir) / relative).is_file()


def artifact_open(version: StoredVersion, relative: str) -> IO[bytes] | File:
    """One artifact file opened for reading from wherever the version lives, for pages that
    show a file (plots) without fetching the whole model. Raises FileNotFoundError."""
    if not version.artifact_key:
        return (Path(version.artifact_dir) / relative).open("rb")
    storage = model_storage()
    if storage is None:
        raise FileNotFoundError(f"{version.artifact_key} is in the shared model storage, but CXR_STORAGE is local")
    return storage.open(f"{version.artifact_key}/{relative}", "rb")
