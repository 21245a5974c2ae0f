"""The training app's management commands, through call_command on generated files."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.conftest import synthetic_png

LABELS = ["NORMAL", "PNEUMONIA_BACTERIAL", "PNEUMONIA_VIRAL", "COVID19"]


@pytest.mark.django_db
def test_evaluate_model_refuses_label_folders_outside_the_schema_and_names_them(
    tmp_path: Path, active_tiny_model
) -> None:
    """A misspelt folder (NORMALS) used to be scored as abnormal and a folder of DICOMs
    ("dicom") as abnormal too; nothing is scored or stored then."""
    root = tmp_path / "eval"
    for folder in ("NORMAL", "COVID19", "NORMALS", "dicom"):
        (root / folder).mkdir(parents=True)
        (root / folder / "a.png").write_bytes(synthetic_png(64, seed=len(folder)))
    with pytest.raises(CommandError) as refused:
        call_command("evaluate_model", str(root), "--json", "--bootstrap", "10", "--no-lung-mass")
    message = str(refused.value)
    assert "NORMALS" in message and "dicom" in message
    assert "COVID19" not in message.split("expected")[0]
    assert active_tiny_model.evaluations.count() == 0
