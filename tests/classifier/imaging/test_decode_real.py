"""Decoding real files: the shared chest DICOMs and radiographs, and pydicom's test files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageOps

from classifier.imaging import (
    CorruptImage,
    DecodeLimits,
    ImagingError,
    MultiFrameImage,
    NoPixelData,
    NotChestRadiograph,
    decode_bytes,
    decode_file,
)

from .conftest import dataset_bytes, read_pydicom

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SHARED_DICOMS = [
    "CR-MONO1-10-chest.dcm",
    "RG1_J2KI.dcm",
    "SIIM_Fake_MONOHR1.dcm",
    "RSNA_c64d5667-a776-4f95-9e21-bfabafb07740.dcm",
    "SIIM_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm",
]
SMALL = DecodeLimits(min_dimension=8)


def _assert_valid(decoded, fmt: str) -> None:
    assert decoded.format == fmt
    assert decoded.pixels.dtype == np.float32 and decoded.pixels.ndim == 2
    assert decoded.pixels.shape == (decoded.height, decoded.width)
    assert float(decoded.pixels.min()) >= 0.0 and float(decoded.pixels.max()) <= 1.0
    json.dumps(decoded.metadata)


@pytest.mark.parametrize("name", SHARED_DICOMS)
def test_shared_chest_dicoms_decode_with_metadata(dicom_dir: Path, name: str) -> None:
    decoded = decode_file(dicom_dir / name)
    _assert_valid(decoded, "DICOM")
    assert decoded.metadata["modality"] == "CR"
    assert decoded.metadata["body_part_examined"] == "CHEST"
    assert decoded.metadata["transfer_syntax"]
    assert float(decoded.pixels.std()) > 0.1


def test_preamble_less_implicit_dicom_is_read(dicom_dir: Path) -> None:
    decoded = decode_file(dicom_dir / "CR-MONO1-10-chest.dcm")
    assert (decoded.width, decoded.height, decoded.bit_depth) == (440, 440, 10)
    assert decoded.metadata["transfer_syntax"] == "1.2.840.10008.1.2"


def test_fake_monochrome1_decodes_to_inverse_of_original(dicom_dir: Path) -> None:
    original = decode_file(next(dicom_dir.glob("SIIM_1.*.dcm"))).pixels
    fake = decode_file(dicom_dir / "SIIM_Fake_MONOHR1.dcm").pixels
    correlation = np.corrcoef(original.ravel(), fake.ravel())[0, 1]
    assert correlation < -0.9
    np.testing.assert_allclose(original + fake, 1.0, atol=0.02)


@pytest.mark.parametrize("name", ["CR-MONO1-10-chest.dcm", "RG1_J2KI.dcm"])
def test_real_monochrome1_shows_bone_bright(dicom_dir: Path, name: str) -> None:
    pixels = decode_file(dicom_dir / name).pixels
    height, width = pixels.shape
    # Lung fields (upper-middle thirds either side of the spine) are darker than the
    # mediastinum/spine column once MONOCHROME1 is inverted.
    lungs = np.concatenate(
        [
            pixels[height // 4 : height // 2, width // 6 : width // 3].ravel(),
            pixels[height // 4 : height // 2, 2 * width // 3 : 5 * width // 6].ravel(),
        ]
    )
    spine = pixels[height // 4 : height // 2, 9 * width // 20 : 11 * width // 20]
    assert lungs.mean() < spine.mean()


@pytest.mark.parametrize(
    "name, shape",
    [
        ("JPGExtended.dcm", (1024, 256)),
        ("JPEG2000.dcm", (1024, 256)),
        ("MR_small_jpeg_ls_lossless.dcm", (64, 64)),
        ("MR_small_RLE.dcm", (64, 64)),
        ("MR_small_jp2klossless.dcm", (64, 64)),
        ("MR_small_bigendian.dcm", (64, 64)),
        ("MR_small.dcm", (64, 64)),
    ],
)
def test_pydicom_codec_files_decode_when_relabelled_as_chest(
    pydicom_test_dir: Path, name: str, shape: tuple[int, int]
) -> None:
    ds = read_pydicom(pydicom_test_dir / name)
    ds.Modality, ds.BodyPartExamined = "CR", "CHEST"
    decoded = decode_bytes(dataset_bytes(ds))
    _assert_valid(decoded, "DICOM")
    assert decoded.pixels.shape == shape


def test_lossless_codecs_agree_with_uncompressed(pydicom_test_dir: Path) -> None:
    results = []
    for name in (
        "MR_small.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_bigendian.dcm",
    ):
        ds = read_pydicom(pydicom_test_dir / name)
        ds.Modality = "CR"
        results.append(decode_bytes(dataset_bytes(ds)).pixels)
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], atol=1e-6)


@pytest.mark.parametrize(
    "name", ["image_dfl.dcm", "SC_rgb_jpeg.dcm", "SC_rgb_rle.dcm", "SC_ybr_full_422_uncompressed.dcm"]
)
def test_secondary_capture_without_body_part_is_accepted(pydicom_test_dir: Path, name: str) -> None:
    decoded = decode_file(pydicom_test_dir / name)
    _assert_valid(decoded, "DICOM")


def test_monochrome1_cr_files_are_refused_as_spine_then_decode_inverted(pydicom_test_dir: Path) -> None:
    for path in sorted((pydicom_test_dir / "dicomdirtests" / "77654033").glob("CR*/*")):
        with pytest.raises(NotChestRadiograph):
            decode_file(path, limits=SMALL)
        ds = read_pydicom(path)
        ds.BodyPartExamined = "CHEST"
        decoded = decode_bytes(dataset_bytes(ds), limits=SMALL)
        _assert_valid(decoded, "DICOM")
        assert decoded.metadata["photometric_interpretation"] == "MONOCHROME1"
        ds.PhotometricInterpretation = "MONOCHROME2"
        as_mono2 = decode_bytes(dataset_bytes(ds), limits=SMALL).pixels
        np.testing.assert_allclose(decoded.pixels, 1.0 - as_mono2, atol=1e-6)


@pytest.mark.parametrize(
    "name, error",
    [
        ("CT_small.dcm", NotChestRadiograph),
        ("MR_small.dcm", NotChestRadiograph),
        ("examples_palette.dcm", NotChestRadiograph),
        ("SC_rgb_rle_2frame.dcm", MultiFrameImage),
        ("rtplan.dcm", NoPixelData),
        ("JPEG-lossy.dcm", ImagingError),
    ],
)
def test_pydicom_files_outside_policy_are_refused(pydicom_test_dir: Path, name: str, error: type[ImagingError]) -> None:
    with pytest.raises(error) as caught:
        decode_file(pydicom_test_dir / name)
    assert caught.value.message and caught.value.code


def test_undecodable_12_bit_jpeg_is_corrupt_not_a_crash(pydicom_test_dir: Path) -> None:
    ds = read_pydicom(pydicom_test_dir / "JPEG-lossy.dcm")
    ds.Modality, ds.BodyPartExamined = "CR", "CHEST"
    with pytest.raises(CorruptImage):
        decode_bytes(dataset_bytes(ds))


def test_real_radiograph_sample_decodes(cxr_files: list[Path]) -> None:
    sample = cxr_files[::29]
    rgba = [p for p in cxr_files if p.suffix == ".png" and Image.open(p).mode == "RGBA"][:2]
    for path in sample + rgba:
        decoded = decode_file(path)
        _assert_valid(decoded, "PNG" if path.suffix.lower() == ".png" else "JPEG")
        with Image.open(path) as image:
            assert (decoded.width, decoded.height) == ImageOps.exif_transpose(image).size
        assert float(decoded.pixels.std()) > 0.02


def test_greyscale_png_values_are_exact(cxr_files: list[Path]) -> None:
    path = next(p for p in cxr_files if p.suffix == ".png" and Image.open(p).mode == "L")
    expected = np.asarray(Image.open(path), dtype=np.float32) / 255.0
    np.testing.assert_array_equal(decode_file(path).pixels, expected)
    assert decode_bytes(io.BytesIO(path.read_bytes()).getvalue()).bit_depth == 8


def test_shared_dicom_reads_same_as_pydicom_shape(dicom_dir: Path) -> None:
    path = dicom_dir / "RG1_J2KI.dcm"
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    decoded = decode_file(path)
    assert (decoded.height, decoded.width) == (ds.Rows, ds.Columns)
    assert decoded.bit_depth == 15
