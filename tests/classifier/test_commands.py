"""The clinical app's management commands, through call_command on real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.conftest import synthetic_png

pytestmark = pytest.mark.django_db


def test_inspect_image_reports_the_stages_and_writes_their_images(tmp_path: Path, capsys) -> None:
    image = tmp_path / "chest.png"
    image.write_bytes(synthetic_png(128))
    call_command("inspect_image", str(image), "--json", "--save-stages", str(tmp_path / "stages"))
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "PNG" and report["stages"]
    written = sorted(p.name for p in (tmp_path / "stages").glob("*.png"))
    assert len(written) == len(report["stages"])
