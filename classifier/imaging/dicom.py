"""DICOM reading for untrusted chest radiograph uploads.

Order of defences (cheapest first, nothing large is allocated before the checks):
executable preamble -> parse (pixel bytes stay encoded) -> structure limits
(sequence depth, element length) -> policy (single frame, has pixels, looks like a
chest radiograph) -> Rows x Columns limits -> pixel payload consistent with the
header (native length, or the embedded JPEG / JPEG 2000 header) -> decode -> LUTs.

Display mapping follows PS3.3 C.11: modality LUT (or rescale slope/intercept), then
the VOI LUT (sequence if present, else window centre/width, else a robust
percentile window), then MONOCHROME1 inversion. Arithmetic is float32, which holds
every 16-bit stored value exactly, until the final [0, 1] result.
"""

from __future__ import annotations

import io
import re
import struct
from typing import Any, NamedTuple

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
)

from .errors import (
    CorruptImage,
    ImageTooLarge,
    ImageTooSmall,
    LimitExceeded,
    MultiFrameImage,
    NoPixelData,
    NotChestRadiograph,
    SuspiciousFile,
)
from .limits import DecodeLimits

__all__ = [
    "EXECUTABLE_MAGICS",
    "DicomResult",
    "DisplayInput",
    "apply_luts",
    "check_preamble",
    "decode_dicom",
    "dicom_metadata",
    "read_dataset",
]

# Executable headers hidden in the 128-byte preamble make a file both a valid DICOM and a
# runnable program (the "PE-DICOM" polyglot, CVE-2019-11687). Zeros or TIFF are legitimate.
EXECUTABLE_MAGICS: tuple[bytes, ...] = (
    b"MZ",
    b"\x7fELF",
    b"#!",
    b"\xfe\xed\xfa\xce",
    b"\xfe\xed\xfa\xcf",
    b"\xce\xfa\xed\xfe",
    b"\xcf\xfa\xed\xfe",
    b"\xca\xfe\xba\xbe",
)
ACCEPTED_MODALITIES = frozenset({"CR", "DX"})
SECONDARY_CAPTURE_MODALITIES = frozenset({"OT", "SC", "XC", ""})
CHEST_WORDS = ("CHEST", "THORAX", "LUNG", "THORACIC", "TORAX", "BRUST", "POITRINE")
NOT_CHEST_WORDS = frozenset(
    {
        "HEAD",
        "SKULL",
        "BRAIN",
        "FACE",
        "SINUS",
        "JAW",
        "TMJ",
        "NECK",
        "CSPINE",
        "TSPINE",
        "LSPINE",
        "SSPINE",
        "SPINE",
        "KNEE",
        "HAND",
        "FINGER",
        "WRIST",
        "FOREARM",
        "ELBOW",
        "ARM",
        "SHOULDER",
        "CLAVICLE",
        "HIP",
        "PELVIS",
        "FEMUR",
        "LEG",
        "ANKLE",
        "FOOT",
        "TOE",
        "HEEL",
        "ABDOMEN",
        "BREAST",
        "EXTREMITY",
        "SACRUM",
        "COCCYX",
        "TIBIA",
        "FIBULA",
        "HUMERUS",
    }
)
UNDEFINED_LENGTH = 0xFFFFFFFF
_SIZED_CODECS = frozenset(JPEGTransferSyntaxes + JPEGLSTransferSyntaxes + JPEG2000TransferSyntaxes)
_PIXEL_TAG_LE, _PIXEL_TAG_BE = b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10"
_NATIVE_SYNTAXES = frozenset({ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian})


class DicomResult(NamedTuple):
    pixels: np.ndarray  # float32, 2-D, [0, 1], MONOCHROME2 orientation
    bit_depth: int
    metadata: dict[str, Any]
    display: DisplayInput | None = None  # greyscale only: the values a viewer windows


class DisplayInput(NamedTuple):
    """What a viewer needs to window the film itself (``classifier.imaging.display``)."""

    values: np.ndarray  # modality-LUT output (before any VOI window), float32
    windows: list[dict[str, Any]]  # the header's WindowCenter/WindowWidth presets
    invert: bool  # MONOCHROME1
    units: str


def check_preamble(data: bytes) -> None:
    """Raise SuspiciousFile if a DICM file's preamble starts with an executable header."""
    if len(data) >= 132 and data[128:132] == b"DICM" and data[:128].startswith(EXECUTABLE_MAGICS):
        raise SuspiciousFile("The DICOM file hides an executable program in its header and was rejected.")


def read_dataset(data: bytes, limits: DecodeLimits) -> Dataset:
    """Parse a DICOM byte string (force for preamble-less files) and check structure.

    Pixel bytes are read but not decoded. A missing Transfer Syntax UID is filled from
    the encoding pydicom detected, so preamble-less files decode.
    """
    check_preamble(data)
    has_dicm = data[128:132] == b"DICM"
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=not has_dicm)
    except RecursionError as exc:
        raise LimitExceeded("The DICOM file nests sequences too deeply.") from exc
    except Exception as exc:  # pydicom raises many types for malformed input
        raise CorruptImage("The DICOM file is damaged and cannot be read.") from exc
    _check_complete(ds)
    _check_structure(ds, limits, depth=0)
    _ensure_transfer_syntax(ds)
    return ds


def _check_complete(ds: Dataset) -> None:
    """pydicom silently keeps a value cut short by the end of the file; we refuse it."""
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        if (
            isinstance(raw, RawDataElement)
            and raw.length != UNDEFINED_LENGTH
            and raw.value is not None
            and len(raw.value) < raw.length
        ):
            raise CorruptImage("The DICOM file is incomplete (cut off part-way through).")


def _check_structure(ds: Dataset, limits: DecodeLimits, depth: int) -> None:
    if depth > limits.max_sequence_depth:
        raise LimitExceeded("The DICOM file nests sequences too deeply.")
    try:
        for elem in ds:
            if elem.VR == "SQ":
                for item in elem.value:
                    _check_structure(item, limits, depth + 1)
            elif isinstance(elem.value, (bytes, str)) and len(elem.value) > limits.max_element_length:
                raise LimitExceeded("The DICOM file contains an element larger than allowed.")
    except (LimitExceeded, CorruptImage):
        raise
    except RecursionError as exc:
        raise LimitExceeded("The DICOM file nests sequences too deeply.") from exc
    except Exception as exc:
        raise CorruptImage("The DICOM file has malformed elements and cannot be read.") from exc


def _ensure_transfer_syntax(ds: Dataset) -> None:
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit is None:
        implicit, little = True, True
    syntax = ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    if meta is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax


def _int(ds: Dataset, keyword: str, default: int | None = None) -> int | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    try:
        return int(float(value))
    except (TypeError, ValueError) as exc:
        raise CorruptImage(f"The DICOM attribute {keyword} is not a valid number.") from exc


def check_policy(ds: Dataset) -> None:
    """Refuse what is not one single-frame chest radiograph, with a reason."""
    if "PixelData" not in ds:
        raise NoPixelData()
    frames = _int(ds, "NumberOfFrames", 1) or 1
    if frames > 1:
        raise MultiFrameImage(f"The DICOM file has {frames} frames; upload a single radiograph.")
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality not in ACCEPTED_MODALITIES | SECONDARY_CAPTURE_MODALITIES:
        raise NotChestRadiograph(f"The DICOM modality is {modality}, not a chest radiograph (CR or DX).")
    body = str(ds.get("BodyPartExamined", "") or "").strip().upper()
    if body and not any(word in body for word in CHEST_WORDS):
        # Only a clear statement refuses: a whole word naming another body part.
        if NOT_CHEST_WORDS.intersection(re.split(r"[^A-Z]+", body)):
            raise NotChestRadiograph(f"The DICOM body part is {body}, not the chest.")


def check_dimensions(ds: Dataset, limits: DecodeLimits) -> tuple[int, int]:
    """Rows and Columns within limits, read before any pixel is decoded."""
    rows, cols = _int(ds, "Rows"), _int(ds, "Columns")
    if not rows or not cols or rows < 0 or cols < 0:
        raise CorruptImage("The DICOM file does not state a valid image size.")
    if rows * cols > limits.max_pixels or max(rows, cols) > limits.max_dimension:
        raise ImageTooLarge(f"The image is {cols} x {rows} pixels, more than the upload limit.")
    if min(rows, cols) < limits.min_dimension:
        raise ImageTooSmall(f"The image is only {cols} x {rows} pixels, too small to read.")
    return rows, cols


def check_payload(ds: Dataset, rows: int, cols: int) -> None:
    """The pixel bytes must agree with Rows x Columns before the decoder allocates."""
    syntax = ds.file_meta.TransferSyntaxUID
    payload = ds.PixelData
    if syntax in _NATIVE_SYNTAXES or not UID(syntax).is_compressed:
        samples = _int(ds, "SamplesPerPixel", 1) or 1
        if str(ds.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422":
            samples = 2  # chroma is subsampled horizontally: Y Y Cb Cr per two pixels
        bits = _int(ds, "BitsAllocated", 16) or 16
        expected = rows * cols * samples * bits // 8
        if len(payload) < expected:
            raise CorruptImage("The DICOM image size does not match its pixel data.")
        return
    size = _embedded_codestream_size(bytes(payload[:65536]))
    if size is None and syntax in _SIZED_CODECS:
        # without the frame header we cannot bound what the decoder would allocate
        raise CorruptImage("The DICOM compressed image header is missing or damaged.")
    if size is not None and size != (cols, rows):
        raise CorruptImage("The DICOM image size does not match its compressed pixel data.")


def _embedded_codestream_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from the first JPEG SOF or JPEG 2000 SIZ marker, if found."""
    j2k = head.find(b"\xff\x4f\xff\x51")
    if j2k >= 0 and len(head) >= j2k + 16:
        xsiz, ysiz, xo, yo = struct.unpack(">IIII", head[j2k + 8 : j2k + 24])
        return xsiz - xo, ysiz - yo
    soi = head.find(b"\xff\xd8\xff")
    pos = soi + 2 if soi >= 0 else -1
    while 0 <= pos < len(head) - 9:
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        (length,) = struct.unpack(">H", head[pos + 2 : pos + 4])
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7):
            height, width = struct.unpack(">HH", head[pos + 5 : pos + 9])
            return width, height
        pos += 2 + length
    return None


def decode_dicom(data: bytes, limits: DecodeLimits) -> DicomResult:
    """Decode one chest radiograph DICOM to float32 [0, 1] (bone bright)."""
    ds = read_dataset(data, limits)
    if "PixelData" not in ds and (_PIXEL_TAG_LE in data or _PIXEL_TAG_BE in data):
        # pydicom drops encapsulated pixel data whose closing delimiter is missing
        raise CorruptImage("The DICOM file is incomplete (its image data is cut off).")
    check_policy(ds)
    rows, cols = check_dimensions(ds, limits)
    check_payload(ds, rows, cols)
    try:
        stored = ds.pixel_array
    except MemoryError as exc:
        raise ImageTooLarge() from exc
    except Exception as exc:
        raise CorruptImage("The DICOM pixel data is damaged and cannot be decoded.") from exc
    if stored.shape[:2] != (rows, cols):
        raise CorruptImage("The decoded DICOM image size does not match its header.")
    pixels = apply_luts(stored, ds)
    bit_depth = _int(ds, "BitsStored", None) or int(stored.dtype.itemsize * 8)
    display = None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if stored.ndim == 2 and photometric in ("MONOCHROME1", "MONOCHROME2"):
        display = DisplayInput(
            modality_lut(stored, ds),
            header_windows(ds),
            photometric == "MONOCHROME1",
            str(ds.get("RescaleType", "") or ""),
        )
    return DicomResult(pixels, bit_depth, dicom_metadata(ds), display)


def header_windows(ds: Dataset) -> list[dict[str, Any]]:
    """The WindowCenter/WindowWidth pairs of the header, named by their explanations."""
    centres, widths = ds.get("WindowCenter"), ds.get("WindowWidth")
    if centres is None or widths is None:
        return []
    centres = list(centres) if isinstance(centres, (list, tuple)) or hasattr(centres, "__iter__") else [centres]
    widths = list(widths) if isinstance(widths, (list, tuple)) or hasattr(widths, "__iter__") else [widths]
    names = ds.get("WindowCenterWidthExplanation") or []
    names = [names] if isinstance(names, str) else list(names)
    out = []
    for i, (centre, width) in enumerate(zip(centres, widths, strict=False)):
        c, w = _float(centre, None), _float(width, None)
        if c is not None and w is not None and w >= 1.0:
            label = str(names[i]).strip() if i < len(names) and str(names[i]).strip() else f"Header window {i + 1}"
            out.append({"name": label, "center": c, "width": w})
    return out


def apply_luts(stored: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored values -> float32 [0, 1] display values, MONOCHROME2 orientation.

    Greyscale: modality LUT, VOI LUT, then inversion for MONOCHROME1. Colour data
    (RGB, YBR, palette) is reduced to luma and scaled by its bit depth.
    """
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        rgb = apply_color_lut(stored, ds)
        return _luma(rgb) / np.float32(np.iinfo(rgb.dtype).max if rgb.dtype.kind in "ui" else 1)
    if stored.ndim == 3:
        bits = _int(ds, "BitsStored", 8) or 8
        return np.clip(_luma(stored) / np.float32(2**bits - 1), 0.0, 1.0)
    values = modality_lut(stored, ds)
    shown = voi_lut(values, ds)
    if photometric == "MONOCHROME1":
        shown = np.float32(1.0) - shown
    return np.ascontiguousarray(shown, dtype=np.float32)


def _luma(rgb: np.ndarray) -> np.ndarray:
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return rgb[..., :3].astype(np.float32) @ weights


def modality_lut(stored: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored values -> modality values (float32), per PS3.3 C.11.1."""
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        return np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)
    slope = _float(ds.get("RescaleSlope"), 1.0)
    intercept = _float(ds.get("RescaleIntercept"), 0.0)
    values = stored.astype(np.float32)
    if slope != 1.0:
        values *= np.float32(slope)
    if intercept != 0.0:
        values += np.float32(intercept)
    return values


def voi_lut(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """Modality values -> [0, 1]: VOI LUT sequence, else window, else (8-bit data) the full
    stored range, else a robust percentile window."""
    if "VOILUTSequence" in ds:
        from pydicom.pixels import apply_voi

        try:
            lut_out = np.asarray(apply_voi(values, ds, index=0), dtype=np.float32)
            lut = np.asarray(ds.VOILUTSequence[0].LUTData, dtype=np.float32)
            low, high = float(lut.min()), float(lut.max())
            if high > low:
                return np.asarray(np.clip((lut_out - low) / (high - low), 0.0, 1.0))
        except Exception:  # a broken VOI LUT falls back to windowing, as viewers do
            pass
    centre = _float(_first(ds.get("WindowCenter")), None)
    width = _float(_first(ds.get("WindowWidth")), None)
    if centre is not None and width is not None and width >= 1.0:
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
        return window(values, centre, width, function)
    bits = _int(ds, "BitsStored", 16) or 16
    if bits <= 8 and "RescaleSlope" not in ds and "RescaleIntercept" not in ds:
        # 8-bit data without a window is already display-ready (secondary captures,
        # exported images): scale it as a PNG of the same pixels would be, so both
        # formats of one radiograph give the model identical input.
        return np.clip(values / np.float32(2**bits - 1), 0.0, 1.0)
    return percentile_window(values)


def window(values: np.ndarray, centre: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """DICOM window (PS3.3 C.11.2.1.2) onto [0, 1]; LINEAR, LINEAR_EXACT or SIGMOID."""
    c, w = np.float32(centre), np.float32(width)
    if function == "SIGMOID":
        return np.asarray(1.0 / (1.0 + np.exp(-4.0 * (values - c) / w)), dtype=np.float32)
    if function == "LINEAR_EXACT":
        return np.asarray(np.clip((values - c) / w + np.float32(0.5), 0.0, 1.0))
    if w <= 1:
        return (values > c - np.float32(0.5)).astype(np.float32)
    scaled = (values - (c - np.float32(0.5))) / (w - np.float32(1.0)) + np.float32(0.5)
    return np.asarray(np.clip(scaled, 0.0, 1.0))


def percentile_window(values: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5) -> np.ndarray:
    """Linear window between robust percentiles, from a fixed subsample (deterministic)."""
    step = max(1, int(np.sqrt(values.size / 250_000)))
    sample = values[::step, ::step]
    low, high = np.percentile(sample, [low_pct, high_pct])
    if not np.isfinite(low) or not np.isfinite(high):
        raise CorruptImage("The DICOM pixel values are not finite numbers.")
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    scale = np.float32(1.0 / (high - low))
    return np.asarray(np.clip((values - np.float32(low)) * scale, 0.0, 1.0))


def _first(value: Any) -> Any:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return value[0] if len(value) else None
    return value


def _float(value: Any, default: float | None) -> float | None:
    if value is None or value == "":
        return default
    try:
        result = float(value)
    except (TypeError, ValueError):
        return default
    return result if np.isfinite(result) else default


def _iso_date(value: Any) -> str | None:
    import datetime as dt

    text = "".join(ch for ch in str(value or "") if ch.isdigit())
    if len(text) < 8:
        return None
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8])).isoformat()
    except ValueError:
        return None


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    text = str(value).strip(" \x00\t\r\n")  # DICOM pads with a space or a NUL
    return text or None


def dicom_metadata(ds: Dataset) -> dict[str, Any]:
    """The contract's metadata keys (docs/contracts.md), JSON-serialisable, None when absent."""
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    try:
        spacing_list = [float(v) for v in spacing][:2] if spacing else None
    except (TypeError, ValueError):
        spacing_list = None
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    bits = ds.get("BitsStored")
    return {
        "patient_id": _text(ds, "PatientID"),
        "patient_name": _text(ds, "PatientName"),
        "patient_birth_date": _iso_date(ds.get("PatientBirthDate")),
        "patient_sex": _text(ds, "PatientSex"),
        "accession_number": _text(ds, "AccessionNumber"),
        "study_instance_uid": _text(ds, "StudyInstanceUID"),
        "sop_instance_uid": _text(ds, "SOPInstanceUID"),
        "series_instance_uid": _text(ds, "SeriesInstanceUID"),
        "sop_class_uid": _text(ds, "SOPClassUID"),
        "series_number": _text(ds, "SeriesNumber"),
        "instance_number": _text(ds, "InstanceNumber"),
        "study_date": _iso_date(ds.get("StudyDate")),
        "modality": _text(ds, "Modality"),
        "view_position": _text(ds, "ViewPosition"),
        "body_part_examined": _text(ds, "BodyPartExamined"),
        "photometric_interpretation": _text(ds, "PhotometricInterpretation"),
        "pixel_spacing": spacing_list,
        "bits_stored": int(bits) if isinstance(bits, int) else None,
        "transfer_syntax": str(syntax) if syntax else None,
    }


def decodable_transfer_syntaxes() -> list[str]:
    """The transfer syntaxes whose pixel data this installation can decode (pydicom's
    decoders with their plugins present): what a DICOM receiver may accept."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import AllTransferSyntaxes

    found = []
    for uid in AllTransferSyntaxes:
        try:
            available = get_decoder(uid).is_available
        except NotImplementedError:
            continue
        if available:
            found.append(str(uid))
    return found
