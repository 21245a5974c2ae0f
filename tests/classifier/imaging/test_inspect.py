"""inspect_bytes reports, plus data_dir resolution."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from classifier.imaging import PreprocessConfig, UnsupportedFormat, data_dir, inspect_bytes
from classifier.imaging.datapaths import repo_root

from .conftest import encode


def test_inspect_report_is_json_and_complete(seed_files: dict[str, bytes]) -> None:
    for kind in ("png", "dicom"):
        report = inspect_bytes(seed_files[kind])
        json.dumps(report)
        assert report["format"] in ("PNG", "DICOM")
        assert report["width"] > 0 and report["height"] > 0 and report["bit_depth"] > 0
        stats = report["pixel_statistics"]
        assert 0 <= stats["min"] <= stats["percentiles"]["p50"] <= stats["max"] <= 1
        assert [s["name"] for s in report["stages"]] == ["lung_crop", "resize", "clahe", "pad", "normalise"]
        assert report["output_shape"] == [224, 224, 1]
        assert set(report["metadata"]) >= {"patient_id", "study_date", "transfer_syntax"}


def test_inspect_honours_config() -> None:
    image = (np.random.default_rng(0).random((100, 120)) * 255).astype(np.uint8)
    report = inspect_bytes(encode(image, "PNG"), config=PreprocessConfig(lung_crop=False, channels=3))
    assert report["output_shape"] == [224, 224, 3]
    assert "lung_crop" not in [s["name"] for s in report["stages"]]


def test_inspect_raises_imaging_error() -> None:
    with pytest.raises(UnsupportedFormat):
        inspect_bytes(b"not an image at all")


def test_data_dir_default_and_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CXR_DATA_DIR", raising=False)
    assert data_dir() == (repo_root().parent / "shared" / "data").resolve()
    assert (repo_root() / "classifier" / "imaging").is_dir()
    monkeypatch.setenv("CXR_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path
