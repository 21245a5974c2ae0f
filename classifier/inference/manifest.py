"""The artifact manifest: the one check that an artifact directory is the one recorded.

``manifest.json`` lists every file with its sha256 (docs/contracts.md). The registry
checks it before registering or activating a version, the runtime before loading one.
Django-free and cheap to import (hashlib and json only).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


class ArtifactIntegrityError(RuntimeError):
    """The artifact directory does not match its manifest (missing or altered file)."""


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in chunks (large models never sit in memory twice)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def verify_manifest(artifact_dir: str | Path) -> dict[str, Any]:
    """Return the manifest after checking every listed file's sha256.

    Raises ArtifactIntegrityError naming the first missing or mismatching file.
    """
    artifact_dir = Path(artifact_dir)
    manifest_path = artifact_dir / "manifest.json"
    if not manifest_path.is_file():
        raise ArtifactIntegrityError(f"{artifact_dir} has no manifest.json")
    manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    for name, expected in manifest.get("files", {}).items():
        path = artifact_dir / name
        if not path.is_file():
            raise ArtifactIntegrityError(f"artifact file {name} is missing from {artifact_dir}")
        actual = file_sha256(path)
        if actual != expected:
            raise ArtifactIntegrityError(
                f"artifact file {name} in {artifact_dir} has sha256 {actual[:12]}..., "
                f"manifest says {expected[:12]}...; the artifact was modified"
            )
    return manifest
