"""Where the shared sample data lives (see docs/contracts.md, "Data location")."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_dir", "repo_root"]


def repo_root() -> Path:
    """The project root: two levels above ``classifier/imaging``."""
    return Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """``$CXR_DATA_DIR`` if set (and non-empty), else ``<repo root>/../shared/data``.

    The path is returned whether or not it exists; callers decide what a missing
    directory means (tests skip, commands fail).
    """
    override = os.environ.get("CXR_DATA_DIR", "").strip()
    if override:
        return Path(override).expanduser()
    return (repo_root().parent / "shared" / "data").resolve()
