"""A malformed and hostile corpus, generated in code: each file must be refused with a
specific ImagingError subclass and a readable message, without hanging."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from classifier.imaging import (
    CorruptImage,
    DecodeLimits,
    EmptyFile,
    FileTooLarge,
    ImageTooLarge,
    ImageTooSmall,
    ImagingError,
    LimitExceeded,
    MultiFrameImage,
    NoPixelData,
    NotChestRadiograph,
    SuspiciousFile,
    UnsupportedFormat,
    decode_bytes,
    decode_file,
)

from .conftest import dataset_bytes, encode, gradient_u16, read_pydicom

pytestmark = [pytest.mark.timeout(30), pytest.mark.filterwarnings("ignore::UserWarning")]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def lying_png(width: int, height: int, idat: bytes = b"\x00" * 64) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(idat)) + png_chunk(b"IEND", b"")
    )


def refuse(data: bytes, error: type[ImagingError], limits: DecodeLimits | None = None) -> ImagingError:
    with pytest.raises(error) as caught:
        decode_bytes(data, limits=limits)
    assert caught.value.message.strip() and str(caught.value) == caught.value.message
    assert caught.value.code
    return caught.value


def _pattern() -> np.ndarray:
    y, x = np.mgrid[0:120, 0:160]
    return ((x + 2 * y) % 256).astype(np.uint8)


# --- not an image at all -------------------------------------------------------------


def test_zero_bytes() -> None:
    assert isinstance(refuse(b"", EmptyFile), UnsupportedFormat)


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
        b"Patient: Jane Doe\nThis is a text file renamed to .dcm\n" * 10,
        b"GIF89a" + bytes(300),
        b"II*\x00" + bytes(300),
        b"\x00" * 500,
        b"PK\x03\x04" + bytes(100),
    ],
)
def test_other_content_is_unsupported(data: bytes) -> None:
    error = refuse(data, UnsupportedFormat)
    assert error.message == "This file is not a DICOM, PNG or JPEG image."


def test_extension_does_not_decide(tmp_path: Path) -> None:
    text = tmp_path / "scan.dcm"
    text.write_text("definitely not DICOM\n" * 20)
    pdf = tmp_path / "xray.png"
    pdf.write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n%%EOF\n")
    for path in (text, pdf):
        with pytest.raises(UnsupportedFormat):
            decode_file(path)
    real_png = tmp_path / "image.dcm"
    real_png.write_bytes(encode(_pattern(), "PNG"))
    assert decode_file(real_png).format == "PNG"


@pytest.mark.parametrize("magic", [b"MZ\x90\x00", b"\x7fELF", b"#!/bin/sh\n", b"\xcf\xfa\xed\xfe"])
def test_executables_are_suspicious(magic: bytes) -> None:
    refuse(magic + bytes(400), SuspiciousFile)


# --- truncation and damage -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_truncated_raster_is_corrupt(seed_files: dict[str, bytes], kind: str) -> None:
    data = seed_files[kind]
    for cut in (len(data) // 2, len(data) - 200, 60):
        refuse(data[:cut], CorruptImage)


@pytest.mark.parametrize("kind", ["dicom", "dicom_jpeg"])
def test_truncated_dicom_is_corrupt(seed_files: dict[str, bytes], kind: str) -> None:
    data = seed_files[kind]
    for cut in (len(data) // 2, len(data) - 100, 1000):
        refuse(data[:cut], CorruptImage)


def test_png_with_bad_crc_is_corrupt() -> None:
    data = bytearray(encode(_pattern(), "PNG"))
    data[40] ^= 0xFF  # inside IDAT
    refuse(bytes(data), CorruptImage)


def test_dicom_element_lengths_that_lie_are_corrupt(make_dicom) -> None:
    data = make_dicom()
    for marker, offset, fmt, value in [
        (b"\x28\x00\x10\x00US", 6, "<H", 0x0400),
        (b"\x08\x00\x60\x00CS", 6, "<H", 0xFFF0),
        (b"\xe0\x7f\x10\x00OW", 8, "<I", 0x7FFFFFF0),
    ]:
        at = data.index(marker) + offset
        bad = data[:at] + struct.pack(fmt, value) + data[at + struct.calcsize(fmt) :]
        refuse(bad, CorruptImage)


def test_dicom_without_magic_but_garbage_body_is_corrupt() -> None:
    refuse(bytes(128) + b"DICM" + bytes(range(256)) * 4, ImagingError)


# --- lying headers and sizes ---------------------------------------------------------


def test_png_header_claiming_60000_squared_is_refused_before_allocation() -> None:
    refuse(lying_png(60_000, 60_000), ImageTooLarge)


def test_png_above_the_configured_pixel_limit_is_refused() -> None:
    limits = DecodeLimits(max_pixels=1_000_000)
    rows = (b"\x00" + bytes(3000)) * 3000  # an honest 3000 x 3000 black PNG, tiny file
    data = lying_png(3000, 3000, rows)
    assert len(data) < 50_000
    refuse(data, ImageTooLarge, limits)


def test_jpeg_frame_header_claiming_huge_size_is_refused(seed_files: dict[str, bytes]) -> None:
    data = bytearray(seed_files["jpeg"])
    for marker in (b"\xff\xc0", b"\xff\xc2", b"\xff\xc1"):
        at = data.find(marker)
        if at > 0:
            data[at + 5 : at + 9] = struct.pack(">HH", 65_000, 65_000)
            break
    refuse(bytes(data), ImageTooLarge)


def test_tiny_image_is_refused() -> None:
    refuse(encode(np.zeros((16, 16), np.uint8), "PNG"), ImageTooSmall)


def test_file_over_byte_limit_is_refused(seed_files: dict[str, bytes]) -> None:
    refuse(seed_files["png"], FileTooLarge, DecodeLimits(max_bytes=1000))


def test_dicom_rows_columns_far_too_large(make_dicom) -> None:
    refuse(make_dicom(Rows=30_000, Columns=30_000), ImageTooLarge)


def test_dicom_rows_columns_inconsistent_with_pixel_data(make_dicom) -> None:
    refuse(make_dicom(Rows=200, Columns=200), CorruptImage)


def test_compressed_dicom_size_disagreeing_with_codestream(dicom_dir: Path) -> None:
    ds = read_pydicom(next(dicom_dir.glob("SIIM_1.*.dcm")))
    ds.Rows = 512
    refuse(dataset_bytes(ds), CorruptImage)


def test_element_over_the_length_limit(make_dicom) -> None:
    data = make_dicom(ImageComments="x" * 5000)
    refuse(data, LimitExceeded, DecodeLimits(max_element_length=4096))


# --- DICOM policy --------------------------------------------------------------------


@pytest.mark.parametrize(
    "preamble",
    [b"MZ" + bytes(126), b"\x7fELF" + bytes(124), b"#!/bin/bash\n" + bytes(116), b"\xfe\xed\xfa\xcf" + bytes(124)],
)
def test_executable_preamble_is_suspicious(make_dicom: Callable[..., bytes], preamble: bytes) -> None:
    refuse(make_dicom(preamble=preamble), SuspiciousFile)


def test_multi_frame_is_refused(make_dicom) -> None:
    frames = np.concatenate([gradient_u16(), gradient_u16()])
    data = make_dicom(frames, Rows=96, NumberOfFrames=2)
    assert "2 frames" in refuse(data, MultiFrameImage).message


@pytest.mark.parametrize("modality", ["CT", "MR", "US", "NM", "MG", "PT"])
def test_non_radiograph_modalities_are_refused(make_dicom, modality: str) -> None:
    assert modality in refuse(make_dicom(Modality=modality), NotChestRadiograph).message


@pytest.mark.parametrize("body_part", ["HEAD", "KNEE", "HAND", "SKULL", "LSPINE", "PELVIS", "LEFT KNEE", "HAND_R"])
def test_non_chest_body_parts_are_refused(make_dicom, body_part: str) -> None:
    refuse(make_dicom(BodyPartExamined=body_part), NotChestRadiograph)


@pytest.mark.parametrize(
    "attrs",
    [
        {"BodyPartExamined": None},
        {"BodyPartExamined": "THORAX"},
        {"BodyPartExamined": "PORT CHEST"},
        {"BodyPartExamined": "CHEST_AP"},
        {"BodyPartExamined": "PORTABLE"},
        {"Modality": "DX"},
        {"Modality": "OT", "BodyPartExamined": None},
        {"Modality": "SC"},
        {"Modality": None},
    ],
)
def test_chest_like_objects_are_accepted(make_dicom, attrs: dict) -> None:
    assert decode_bytes(make_dicom(**attrs)).format == "DICOM"


def test_dicom_without_pixel_data(make_dicom) -> None:
    refuse(make_dicom(PixelData=None), NoPixelData)


def _nested(depth: int) -> Sequence:
    item = Dataset()
    item.CodeValue = "leaf"
    for _ in range(depth - 1):
        outer = Dataset()
        outer.ContentSequence = Sequence([item])
        item = outer
    return Sequence([item])


def test_nesting_within_the_limit_is_accepted(make_dicom) -> None:
    assert decode_bytes(make_dicom(ContentSequence=_nested(8))).format == "DICOM"


def test_deeply_nested_sequences_are_refused(make_dicom) -> None:
    refuse(make_dicom(ContentSequence=_nested(9)), LimitExceeded)


def test_pathologically_deep_undefined_length_nesting_is_refused(make_dicom) -> None:
    opening = b"\x40\x00\x75\x02SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    closing = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    data = make_dicom()
    at = data.index(b"\x28\x00\x02\x00")  # before (0028,0002), keeping tag order
    refuse(data[:at] + opening * 3000 + closing * 3000 + data[at:], LimitExceeded)


def test_compressed_dicom_whose_codestream_claims_a_huge_frame(dicom_dir: Path) -> None:
    data = bytearray(next(dicom_dir.glob("SIIM_1.*.dcm")).read_bytes())
    sof = data.find(b"\xff\xc0", data.find(b"\xff\xd8\xff"))
    data[sof + 5 : sof + 9] = struct.pack(">HH", 65_000, 65_000)
    refuse(bytes(data), CorruptImage)


def test_compressed_dicom_without_a_codestream_header(dicom_dir: Path) -> None:
    data = bytearray(next(dicom_dir.glob("SIIM_1.*.dcm")).read_bytes())
    soi = data.find(b"\xff\xd8\xff")
    data[soi : soi + 3] = b"\x00\x00\x00"
    refuse(bytes(data), CorruptImage)
