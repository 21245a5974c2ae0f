"""Decoding files built in the test: LUT arithmetic, colour modes, sniffing, metadata."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from classifier.imaging import DecodeLimits, EmptyFile, UnsupportedFormat, decode_bytes, sniff_format
from classifier.imaging.dicom import window

from .conftest import build_dataset, dataset_bytes, encode, gradient_u16

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def dicom_linear_window(x: np.ndarray, centre: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, written out independently, onto [0, 1]."""
    low = centre - 0.5 - (width - 1) / 2
    high = centre - 0.5 + (width - 1) / 2
    y = (x - (centre - 0.5)) / (width - 1) + 0.5
    return np.where(x <= low, 0.0, np.where(x > high, 1.0, y))


def test_rescale_then_window_follows_the_dicom_formula(make_dicom) -> None:
    stored = gradient_u16()
    data = make_dicom(
        stored,
        BitsStored=12,
        HighBit=11,
        RescaleSlope="2",
        RescaleIntercept="-100",
        WindowCenter="3000",
        WindowWidth="2001",
    )
    decoded = decode_bytes(data)
    expected = dicom_linear_window(stored.astype(np.float64) * 2 - 100, 3000, 2001)
    np.testing.assert_allclose(decoded.pixels, expected, atol=1e-5)
    assert 0 < (decoded.pixels == 0).mean() < 1 and 0 < (decoded.pixels == 1).mean() < 1
    assert decoded.bit_depth == 12


def test_monochrome1_is_one_minus_monochrome2(make_dicom) -> None:
    attrs = {"RescaleSlope": "2", "RescaleIntercept": "-100", "WindowCenter": "3000", "WindowWidth": "2001"}
    mono2 = decode_bytes(make_dicom(gradient_u16(), **attrs)).pixels
    mono1 = decode_bytes(make_dicom(gradient_u16(), PhotometricInterpretation="MONOCHROME1", **attrs)).pixels
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)


def test_signed_pixels_and_multi_valued_window(make_dicom) -> None:
    stored = (gradient_u16().astype(np.int32) - 2048).astype(np.int16)
    decoded = decode_bytes(make_dicom(stored, WindowCenter=["0", "100"], WindowWidth=["1000", "5"]))
    expected = dicom_linear_window(stored.astype(np.float64), 0, 1000)
    np.testing.assert_allclose(decoded.pixels, expected, atol=1e-5)


def test_without_window_a_robust_percentile_window_is_used(make_dicom) -> None:
    stored = gradient_u16()
    stored[0, 0] = 65535  # one hot pixel must not compress the rest of the range
    pixels = decode_bytes(make_dicom(stored)).pixels
    assert pixels.min() == 0.0 and pixels.max() == 1.0
    assert 0.4 < float(np.median(pixels)) < 0.6


def test_voi_lut_sequence_takes_precedence_over_window(make_dicom) -> None:
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 0, 16])  # LUTDescriptor
    item.add_new(0x00283006, "US", list(range(4095, -1, -1)))  # LUTData: an inverting LUT
    data = make_dicom(gradient_u16(), VOILUTSequence=Sequence([item]), WindowCenter="100", WindowWidth="10")
    pixels = decode_bytes(data).pixels
    np.testing.assert_allclose(pixels, 1.0 - gradient_u16() / 4095.0, atol=1e-4)


@pytest.mark.parametrize(
    "function, expected",
    [
        ("LINEAR_EXACT", [0.0, 0.25, 0.5, 0.75, 1.0]),
        ("SIGMOID", [1 / (1 + np.exp(2)), 1 / (1 + np.exp(1)), 0.5, 1 / (1 + np.exp(-1)), 1 / (1 + np.exp(-2))]),
    ],
)
def test_other_voi_functions(function: str, expected: list[float]) -> None:
    values = np.array([[0.0, 50.0, 100.0, 150.0, 200.0]], dtype=np.float32)
    np.testing.assert_allclose(window(values, 100, 200, function)[0], expected, atol=1e-6)


def test_metadata_keys_dates_and_names(make_dicom) -> None:
    data = make_dicom(
        PatientName="Doe^Jane",
        PatientID="P1",
        PatientBirthDate="19700131",
        StudyDate="20240229",
        PatientSex="F",
        ViewPosition="PA",
        PixelSpacing=["0.139", "0.139"],
        AccessionNumber="A7",
    )
    meta = decode_bytes(data).metadata
    json.dumps(meta)
    assert meta["patient_name"] == "Doe^Jane" and meta["patient_id"] == "P1"
    assert meta["patient_birth_date"] == "1970-01-31" and meta["study_date"] == "2024-02-29"
    assert meta["pixel_spacing"] == [0.139, 0.139] and meta["bits_stored"] == 16
    assert meta["transfer_syntax"] == "1.2.840.10008.1.2.1"


def test_invalid_dates_become_none(make_dicom) -> None:
    meta = decode_bytes(make_dicom(StudyDate="20241399")).metadata
    assert meta["study_date"] is None and meta["patient_birth_date"] is None


def _grey_pattern() -> np.ndarray:
    y, x = np.mgrid[0:80, 0:100]
    return ((x * 2 + y) % 256).astype(np.uint8)


def test_png_16_bit_keeps_precision() -> None:
    values = (np.arange(80 * 100, dtype=np.uint32).reshape(80, 100) * 8).astype(np.uint16)
    decoded = decode_bytes(encode(values, "PNG"))
    assert decoded.bit_depth == 16
    np.testing.assert_allclose(decoded.pixels, values / 65535.0, atol=1e-7)


def test_rgba_is_composited_on_black() -> None:
    rgba = np.zeros((80, 100, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[:, :50, 3] = 255  # left half opaque, right half transparent
    pixels = decode_bytes(encode(rgba, "PNG")).pixels
    np.testing.assert_allclose(pixels[:, :50], 200 / 255, atol=1e-5)
    np.testing.assert_allclose(pixels[:, 50:], 0.0)


def test_rgb_becomes_luma() -> None:
    rgb = np.zeros((80, 100, 3), dtype=np.uint8)
    rgb[..., 1] = 255
    np.testing.assert_allclose(decode_bytes(encode(rgb, "PNG")).pixels, 0.587, atol=0.5 / 255)


def test_palette_png_decodes() -> None:
    image = Image.fromarray(_grey_pattern()).convert("P")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    decoded = decode_bytes(buffer.getvalue())
    np.testing.assert_allclose(decoded.pixels, _grey_pattern() / 255.0, atol=2 / 255)


def test_exif_orientation_is_applied() -> None:
    grey = np.zeros((80, 120), dtype=np.uint8)
    grey[:, :10] = 255  # a bright stripe on the left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    data = encode(grey, "JPEG", exif=exif.tobytes(), quality=95)
    decoded = decode_bytes(data)
    assert (decoded.width, decoded.height) == (80, 120)
    assert decoded.pixels[:10].mean() > 0.8  # the stripe is now at the top


def test_sniffing_uses_content_not_names(make_dicom) -> None:
    assert sniff_format(make_dicom()) == "DICOM"
    assert sniff_format(encode(_grey_pattern(), "PNG")) == "PNG"
    assert sniff_format(encode(_grey_pattern(), "JPEG")) == "JPEG"
    with pytest.raises(EmptyFile):
        sniff_format(b"")
    for junk in (b"%PDF-1.4\n", b"GIF89a" + bytes(200), b"II*\x00" + bytes(300), b"hello" * 50):
        with pytest.raises(UnsupportedFormat, match="not a DICOM, PNG or JPEG"):
            sniff_format(junk)


def test_preamble_less_explicit_dicom_is_sniffed(make_dicom) -> None:
    full = make_dicom()
    dataset_start = full.index(b"\x08\x00", 132 + 12)  # first (0008,xxxx) after file meta
    bare = full[dataset_start:]
    assert sniff_format(bare) == "DICOM"


def test_tiff_like_preamble_is_legitimate(make_dicom) -> None:
    decoded = decode_bytes(make_dicom(preamble=b"II*\x00" + bytes(124)))
    assert decoded.format == "DICOM"


def test_limits_round_trip_and_reject_unknown_keys() -> None:
    limits = DecodeLimits(max_pixels=10)
    assert DecodeLimits.from_dict(limits.to_dict()) == limits
    with pytest.raises(ValueError):
        DecodeLimits.from_dict({"max_pixelz": 1})
    with pytest.raises(ValueError):
        DecodeLimits(max_bytes=-1)
    assert build_dataset(gradient_u16()).Rows == 96
    assert dataset_bytes(build_dataset(gradient_u16()))[128:132] == b"DICM"
