"""The clinical app's management commands, through call_command on real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

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


def test_predict_json_prints_one_array_for_several_files(tmp_path: Path, active_tiny_model, capsys) -> None:
    """Several files with --json are one JSON document (an array, in the order given),
    not JSON Lines; an unreadable file is a record with its reason and the exit is non-zero."""
    files = []
    for seed in (1, 2):
        path = tmp_path / f"chest-{seed}.png"
        path.write_bytes(synthetic_png(96, seed=seed))
        files.append(path)
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"%PDF-1.7 not an image")
    with pytest.raises(CommandError, match="1 of 3 files"):
        call_command("predict", *map(str, files), str(bad), "--json", "--out", str(tmp_path / "heatmaps"))
    records = json.loads(capsys.readouterr().out)
    assert isinstance(records, list)
    assert [Path(r["file"]).name for r in records] == ["chest-1.png", "chest-2.png", "notes.png"]
    for record in records[:2]:
        assert record["model"] == f"{active_tiny_model.name} v{active_tiny_model.version}"
        assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert record["flag"] == (record["p_abnormal"] >= record["threshold"])
        assert Path(record["heatmap"]).read_bytes()[:4] == b"\x89PNG"
    assert records[2]["code"] == "unsupported_format"


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_check_queue_round_trips_through_a_real_worker_and_fails_without_one(celery_worker_proc, capsys) -> None:
    from classifier.models import QueueProbe

    with pytest.raises(CommandError, match="no worker completed the probe within 1 s"):
        call_command("check_queue", "--timeout", "1")
    celery_worker_proc()
    call_command("check_queue", "--timeout", "120")
    assert capsys.readouterr().out.startswith("queue ok: round trip")
    assert QueueProbe.objects.filter(status=QueueProbe.Status.DONE).exists()


def test_setup_roles_is_idempotent_and_keeps_demo_passwords_unless_given(capsys) -> None:
    from django.contrib.auth import get_user_model

    call_command("setup_roles", "--demo", "--password", "first-password-1")
    call_command("setup_roles", "--demo")
    out = capsys.readouterr().out
    assert "(unchanged; pass --password to reset)" in out
    admin = get_user_model().objects.get(username="admin")
    assert admin.check_password("first-password-1") and admin.is_staff
    assert list(admin.groups.values_list("name", flat=True)) == ["Admin"]
