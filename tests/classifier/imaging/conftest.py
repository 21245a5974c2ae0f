"""Fixtures for the imaging tests: real data locations and builders for synthetic files.

Real data comes from ``data_dir()``; tests that need it skip (with a reason) when that
directory is missing, and fail in CI (see tests.conftest.needs_shared_data). Synthetic files are built in memory, never written to the repo.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from classifier.imaging.datapaths import data_dir
from tests.conftest import needs_shared_data

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = data_dir()
    needs_shared_data(root)
    return root


@pytest.fixture(scope="session")
def dicom_dir(shared_data: Path) -> Path:
    return shared_data / "dicom"


@pytest.fixture(scope="session")
def cxr_files(shared_data: Path) -> list[Path]:
    files = sorted(p for p in (shared_data / "cxr").rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    assert files, "data_dir()/cxr holds no images"
    return files


@pytest.fixture(scope="session")
def pydicom_test_dir() -> Path:
    import pydicom.data

    path = Path(pydicom.data.__file__).parent / "test_files"
    if not path.is_dir():
        pytest.skip("pydicom's bundled test files are not installed")
    return path


def build_dataset(pixels: np.ndarray, **attrs: Any) -> Dataset:
    """A minimal single-frame greyscale CR dataset around ``pixels`` (uint8/uint16/int16)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    ds.SOPClassUID = CR_IMAGE_STORAGE
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["sop", str(pixels.shape)])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["series"])
    ds.Modality = "CR"
    ds.BodyPartExamined = "CHEST"
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.SamplesPerPixel = 1
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    for key, value in attrs.items():
        if value is None:
            if key in ds:
                delattr(ds, key)
        else:
            setattr(ds, key, value)
    return ds


def dataset_bytes(ds: Dataset, *, preamble: bytes | None = None) -> bytes:
    ds.preamble = preamble if preamble is not None else b"\x00" * 128
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture
def make_dicom() -> Callable[..., bytes]:
    """make_dicom(pixels=None, preamble=None, **attrs) -> DICOM bytes."""

    def make(pixels: np.ndarray | None = None, preamble: bytes | None = None, **attrs: Any) -> bytes:
        if pixels is None:
            pixels = gradient_u16()
        return dataset_bytes(build_dataset(pixels, **attrs), preamble=preamble)

    return make


def gradient_u16(rows: int = 96, cols: int = 128) -> np.ndarray:
    """A deterministic 12-bit test pattern with all values distinct along a row."""
    y, x = np.mgrid[0:rows, 0:cols]
    return ((x * 4000 // (cols - 1) + y * 7) % 4096).astype(np.uint16)


def encode(array: np.ndarray, fmt: str, **save: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **save)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def seed_files(shared_data: Path) -> dict[str, bytes]:
    """Small real files of each format, for fuzzing and corruption tests."""
    cxr = sorted((shared_data / "cxr").rglob("*"), key=lambda p: (p.stat().st_size, p.name))
    png = next(p for p in cxr if p.suffix.lower() == ".png")
    jpeg = next(p for p in cxr if p.suffix.lower() in (".jpg", ".jpeg"))
    dicom_dir = shared_data / "dicom"
    return {
        "png": png.read_bytes(),
        "jpeg": jpeg.read_bytes(),
        "dicom": (dicom_dir / "CR-MONO1-10-chest.dcm").read_bytes(),
        "dicom_jpeg": next(dicom_dir.glob("SIIM_1.*.dcm")).read_bytes(),
    }


def read_pydicom(path: Path) -> Dataset:
    return pydicom.dcmread(os.fspath(path), force=True)
