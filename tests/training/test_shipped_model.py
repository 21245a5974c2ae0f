"""The shipped model: registered and active after migrate, and scoring the real test split."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.conf import settings
from django.core.management import call_command
from PIL import Image as PILImage
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from classifier.imaging import data_dir
from tests.conftest import needs_shared_data
from training import registry

SHIPPED = Path(settings.CXR["SHIPPED_MODEL_DIR"])


@pytest.fixture(autouse=True)
def _shared_sample() -> None:
    needs_shared_data(data_dir() / "cxr" / "test")


def dicom_from_png(png: bytes) -> bytes:
    """The same pixels as an 8-bit MONOCHROME2 CR DICOM, as a modality would send them."""
    pixels = np.asarray(PILImage.open(io.BytesIO(png)).convert("L"))
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality, ds.BodyPartExamined, ds.PatientID = "CR", "CHEST", "SAME-1"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.django_db
def test_shipped_model_is_active_after_migrate() -> None:
    version = registry.active_version()
    assert version is not None and version.architecture and version.thresholds["abnormal"] > 0
    assert version.artifact_sha256 == json.loads((SHIPPED / "manifest.json").read_text())["files"]
    assert "Decision support" in version.model_card


@pytest.mark.django_db
@pytest.mark.slow
def test_shipped_model_scores_the_real_test_split_above_floor() -> None:
    """Floors well below what it scored when shipped (see the model card): a regression alarm."""
    from training.services.evaluate import evaluate_files, files_from_label_folders

    version = registry.active_version()
    report = evaluate_files(
        version.artifact_dir,
        files_from_label_folders(data_dir() / "cxr" / "test"),
        threshold=version.thresholds["abnormal"],
        labels=version.labels,
        n_bootstrap=0,
    )
    assert report["n"] == 56 and not report["failed_files"]
    assert report["auc"] >= 0.93
    assert report["sensitivity"] >= 0.9
    assert report["multiclass"]["accuracy"] >= 0.75


@pytest.mark.django_db
def test_dicom_and_png_of_the_same_radiograph_get_the_same_answer() -> None:
    from classifier.inference.pipeline import InferencePipeline

    png = next((data_dir() / "cxr" / "test" / "NORMAL").glob("*.png")).read_bytes()
    pipeline = InferencePipeline(registry.active_version().artifact_dir, heatmap=False)
    from_png, from_dicom = pipeline.run(png), pipeline.run(dicom_from_png(png))
    assert from_png.label == from_dicom.label and from_png.flag == from_dicom.flag
    for label, p in from_png.probabilities.items():
        assert from_dicom.probabilities[label] == pytest.approx(p, abs=1e-5)


@pytest.mark.django_db
def test_predict_command_prints_one_json_array_of_one_object_per_file(tmp_path: Path, capsys) -> None:
    files = sorted((data_dir() / "cxr" / "test" / "COVID19").iterdir())[:2]
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"%PDF-1.7 not an image")
    with pytest.raises(Exception, match="1 of 3 files"):
        call_command("predict", *map(str, files), str(bad), "--json", "--out", str(tmp_path))
    lines = json.loads(capsys.readouterr().out)
    assert [Path(r["file"]).name for r in lines] == [files[0].name, files[1].name, "notes.png"]
    for record in lines[:2]:
        assert {"file", "probabilities", "label", "flag", "heatmap", "timings_ms"} <= set(record)
        assert Path(record["heatmap"]).read_bytes()[:4] == b"\x89PNG"
    assert lines[2]["code"] == "unsupported_format"


def test_shipped_heatmaps_equal_the_gradient_tape_grad_cam_on_real_images() -> None:
    """The served heatmap (closed form from the TFLite pass) is the Grad-CAM a
    GradientTape computes through the Keras model, on real radiographs of each class."""
    from classifier.inference.gradcam import gradcam_batch
    from classifier.inference.pipeline import InferencePipeline

    files = [
        path for folder in sorted((data_dir() / "cxr" / "test").iterdir()) for path in sorted(folder.iterdir())[:2]
    ]
    pipeline = InferencePipeline(SHIPPED)
    assert pipeline.head is not None  # cxr_net's GAP -> Dense head has the closed form
    results = pipeline.run_many([path.read_bytes() for path in files], batch_size=8)
    seen = np.stack([r.preprocessed.astype(np.float32)[..., None] / 255.0 for r in results])
    tape = gradcam_batch(pipeline.keras_model, seen, [pipeline.labels.index(r.heatmap_class) for r in results])
    for result, expected in zip(results, tape, strict=False):
        assert np.abs(result.heatmap_raw - expected).max() < 1e-3
        assert result.heatmap_raw.max() == pytest.approx(1.0)
