"""Django-free decoding and preprocessing of chest radiographs (see docs/contracts.md).

Public API::

    decode_bytes(data, *, limits=None) -> DecodedImage
    decode_file(path, *, limits=None) -> DecodedImage
    sniff_format(data) -> "DICOM" | "PNG" | "JPEG"
    preprocess(pixels, config=None) -> np.ndarray (S, S, C) float32
    preprocess_with_stages(pixels, config=None) -> (np.ndarray, list[StageReport])
    inspect_bytes(data, *, config=None, limits=None) -> dict
"""

from .datapaths import data_dir
from .decode import DecodedImage, decode_bytes, decode_file, sniff_format
from .errors import (
    BlankImage,
    CorruptImage,
    EmptyFile,
    FileTooLarge,
    ImageTooLarge,
    ImageTooSmall,
    ImagingError,
    InvalidHeaderValue,
    LimitExceeded,
    MultiFrameImage,
    NoPixelData,
    NotChestRadiograph,
    SuspiciousFile,
    UnsupportedFormat,
    UnsupportedImage,
)
from .inspect import inspect_bytes
from .limits import DEFAULT_LIMITS, DecodeLimits
from .lungcrop import CropResult, lung_crop, lung_crop_box
from .preprocess import (
    PreprocessConfig,
    StageReport,
    apply_clahe,
    normalise,
    pad_square,
    preprocess,
    preprocess_with_stages,
    resize_fit,
    resize_pad,
    save_stages,
)

__all__ = [
    "DEFAULT_LIMITS",
    "BlankImage",
    "CorruptImage",
    "CropResult",
    "DecodeLimits",
    "DecodedImage",
    "EmptyFile",
    "FileTooLarge",
    "ImageTooLarge",
    "ImageTooSmall",
    "ImagingError",
    "InvalidHeaderValue",
    "LimitExceeded",
    "MultiFrameImage",
    "NoPixelData",
    "NotChestRadiograph",
    "PreprocessConfig",
    "StageReport",
    "SuspiciousFile",
    "UnsupportedFormat",
    "UnsupportedImage",
    "apply_clahe",
    "data_dir",
    "decode_bytes",
    "decode_file",
    "inspect_bytes",
    "lung_crop",
    "lung_crop_box",
    "normalise",
    "pad_square",
    "preprocess",
    "preprocess_with_stages",
    "resize_fit",
    "resize_pad",
    "save_stages",
    "sniff_format",
]
