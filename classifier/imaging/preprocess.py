"""Deterministic preprocessing shared by training and inference.

Pipeline (each step a pure, vectorised function on a numpy array):

1. ``lung_crop``  - crop box found on the decoded, pre-CLAHE image: by the lung-field
   network named in ``lung_model`` (:mod:`lungfield`), or, for configs without one, by
   the intensity heuristic of :mod:`lungcrop` (CLAHE would flatten the lung/soft-tissue
   contrast it relies on);
2. ``resize``     - fit the long side to ``input_size`` keeping the aspect ratio
   (INTER_AREA when shrinking);
3. ``clahe``      - CLAHE on the resized content, 8-bit;
4. ``lung_mask``  - with ``lung_mask`` set, black outside the (dilated) lung field, so
   text, markers and borders outside the lungs carry no signal;
5. ``pad``        - centre on a black square of ``input_size``;
6. ``normalise``  - value range and channel count.

CLAHE runs after resizing and before padding, deliberately: its tiles then cover
the same anatomy whatever the source resolution (a 3000 px DICOM and a 1024 px PNG
of one film give nearly the same result), padding never enters a tile histogram,
and it costs a fixed, small time. ``resize_pad`` is still available as one step.

``preprocess(pixels, config)`` is bit-for-bit identical to the array returned by
``preprocess_with_stages``; the config is stored with each model (preprocess.json),
so bump ``version`` whenever the output for a given config changes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .lungcrop import CropResult, lung_crop_box
from .lungfield import LungFieldResult, lung_field

__all__ = [
    "NORMALISATIONS",
    "PREPROCESS_VERSION",
    "PreprocessConfig",
    "StageReport",
    "apply_clahe",
    "as_unit_float",
    "normalise",
    "pad_square",
    "preprocess",
    "preprocess_with_geometry",
    "preprocess_with_lung_field",
    "preprocess_with_stages",
    "resize_fit",
    "resize_pad",
    "save_stages",
]

PREPROCESS_VERSION = "1"
NORMALISATIONS = ("zero_one", "minus_one_one", "imagenet")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
GREY_MEAN, GREY_STD = np.float32(0.449), np.float32(0.226)  # means of the ImageNet values


@dataclass(frozen=True)
class PreprocessConfig:
    """How pixels become model input; stored with each model as preprocess.json."""

    version: str = PREPROCESS_VERSION
    input_size: int = 224
    channels: int = 1
    clahe: bool = True
    clahe_clip_limit: float = 2.0
    clahe_tile_grid: int = 8
    lung_crop: bool = True
    lung_crop_work_size: int = 256
    lung_crop_margin: float = 0.08
    normalisation: str = "zero_one"
    # Lung-field network (classifier/imaging/lungfield/<name>.tflite) and its sha256; empty =
    # the intensity heuristic (the configs of versions trained before the network existed).
    lung_model: str = ""
    lung_model_sha256: str = ""
    lung_mask: bool = False
    lung_mask_dilation: float = 0.04  # of the crop's long side, so lung edges stay in

    def __post_init__(self) -> None:
        if self.input_size < 16:
            raise ValueError("input_size must be at least 16")
        if self.channels not in (1, 3):
            raise ValueError("channels must be 1 or 3")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {NORMALISATIONS}")
        if self.clahe_clip_limit <= 0 or self.clahe_tile_grid < 1:
            raise ValueError("CLAHE clip limit and tile grid must be positive")
        if self.lung_crop_work_size < 64 or not 0 <= self.lung_crop_margin < 0.5:
            raise ValueError("lung_crop_work_size >= 64 and 0 <= lung_crop_margin < 0.5")
        if self.lung_mask and not (self.lung_crop and self.lung_model):
            raise ValueError("lung_mask needs lung_crop with a lung_model")
        if not 0 <= self.lung_mask_dilation < 0.5:
            raise ValueError("0 <= lung_mask_dilation < 0.5")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError (a newer format)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown PreprocessConfig keys: {sorted(unknown)}")
        return cls(**dict(data))


@dataclass(frozen=True, eq=False)
class StageReport:
    """One pipeline stage: time taken, a JSON-friendly summary and a uint8 picture."""

    name: str
    elapsed_ms: float
    summary: dict[str, Any]
    debug_image: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The report without its image (JSON-serialisable)."""
        return {"name": self.name, "elapsed_ms": round(self.elapsed_ms, 3), "summary": self.summary}


def as_unit_float(pixels: np.ndarray) -> np.ndarray:
    """2-D uint8/uint16/float input -> float32 in [0, 1] (floats are clipped)."""
    arr = np.asarray(pixels)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"expected a 2-D greyscale image, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / np.float32(65535.0)
    return np.clip(arr.astype(np.float32, copy=False), 0.0, 1.0)


def resize_fit(img: np.ndarray, size: int) -> np.ndarray:
    """Scale so the long side is ``size``, keeping the aspect ratio (INTER_AREA to shrink)."""
    height, width = img.shape[:2]
    scale = size / max(height, width)
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new == (width, height):
        return img
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(img, new, interpolation=interpolation)


def pad_square(img: np.ndarray, size: int) -> np.ndarray:
    """Centre ``img`` (at most size x size) on a zero square; odd padding goes bottom/right."""
    height, width = img.shape[:2]
    if height > size or width > size:
        raise ValueError("image larger than the pad target; resize first")
    top, left = (size - height) // 2, (size - width) // 2
    out = np.zeros((size, size, *img.shape[2:]), dtype=img.dtype)
    out[top : top + height, left : left + width] = img
    return out


def resize_pad(img: np.ndarray, size: int) -> np.ndarray:
    """Aspect-preserving resize then zero padding to ``size`` x ``size``."""
    return pad_square(resize_fit(img, size), size)


def apply_clahe(img: np.ndarray, clip_limit: float = 2.0, tile_grid: int = 8) -> np.ndarray:
    """OpenCV CLAHE. uint8/uint16 in -> same dtype out; float [0, 1] is done in 8 bits
    (so training PNGs and 16-bit DICOMs get identical clip semantics) and returned as
    float32 in [0, 1]."""
    clahe = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(tile_grid, tile_grid))
    if img.dtype in (np.uint8, np.uint16):
        return clahe.apply(np.ascontiguousarray(img))
    quantised = np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    out: np.ndarray = clahe.apply(quantised).astype(np.float32) / np.float32(255.0)
    return out


def normalise(img: np.ndarray, mode: str = "zero_one", channels: int = 1) -> np.ndarray:
    """[0, 1] 2-D image -> (H, W, channels) float32 in the model's value range.

    zero_one: unchanged; minus_one_one: 2x - 1; imagenet: (x - mean) / std, per
    channel for 3 channels, with the mean of the ImageNet statistics for 1 channel.
    """
    if mode not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}")
    base = img.astype(np.float32, copy=False)[..., None]
    if channels == 3:
        base = np.repeat(base, 3, axis=2)
    if mode == "minus_one_one":
        return base * np.float32(2.0) - np.float32(1.0)
    if mode == "imagenet":
        if channels == 3:
            return (base - IMAGENET_MEAN) / IMAGENET_STD
        return (base - GREY_MEAN) / GREY_STD
    return np.ascontiguousarray(base)


def _stats(img: np.ndarray) -> dict[str, Any]:
    return {
        "shape": list(img.shape),
        "min": round(float(img.min()), 4),
        "max": round(float(img.max()), 4),
        "mean": round(float(img.mean()), 4),
    }


def _to_uint8(img: np.ndarray) -> np.ndarray:
    plane = img[..., 0] if img.ndim == 3 else img
    low, high = float(plane.min()), float(plane.max())
    if plane.dtype != np.uint8 and not (low >= 0.0 and high <= 1.0):
        plane = (plane - low) / (high - low) if high > low else np.zeros_like(plane)
    if plane.dtype == np.uint8:
        return plane.copy()
    quantised: np.ndarray = np.rint(np.clip(plane, 0.0, 1.0) * 255).astype(np.uint8)
    return quantised


def _crop_debug(img: np.ndarray, crop: CropResult) -> np.ndarray:
    """RGB picture: working-size image, lung mask tinted, box green (red on fallback)."""
    small = cv2.resize(_to_uint8(img), crop.mask.shape[::-1], interpolation=cv2.INTER_AREA)
    rgb = np.repeat(small[..., None], 3, axis=2)
    rgb[..., 2] = np.where(crop.mask, np.maximum(rgb[..., 2], 160), rgb[..., 2])
    sy, sx = small.shape[0] / img.shape[0], small.shape[1] / img.shape[1]
    x0, y0, x1, y1 = crop.box
    colour = (255, 0, 0) if crop.fallback else (0, 255, 0)
    cv2.rectangle(rgb, (int(x0 * sx), int(y0 * sy)), (int(x1 * sx) - 1, int(y1 * sy) - 1), colour, 1)
    return rgb


class _Stages:
    """Times each step; when collecting, also keeps its summary and debug picture."""

    def __init__(self, collect: bool) -> None:
        self.collect = collect
        self.reports: list[StageReport] = []
        self.box: tuple[int, int, int, int] | None = None  # the crop, in source pixels

    def run(self, name: str, fn: Callable[..., np.ndarray], *args: Any) -> np.ndarray:
        start = time.perf_counter()
        result = fn(*args)
        elapsed = (time.perf_counter() - start) * 1000.0
        if self.collect:
            self.reports.append(StageReport(name, elapsed, _stats(result), _to_uint8(result)))
        return result

    def crop(
        self, img: np.ndarray, config: PreprocessConfig
    ) -> tuple[np.ndarray, tuple[LungFieldResult, tuple[int, int, int, int]] | None]:
        """The cropped image and, with a lung model, the lung field with the crop box."""
        start = time.perf_counter()
        found: tuple[LungFieldResult, tuple[int, int, int, int]] | None = None
        if not config.lung_model:
            crop = lung_crop_box(img, work_size=config.lung_crop_work_size, margin=config.lung_crop_margin)
            box, summary = crop.box, crop.summary()
        else:
            field = lung_field(img, model=config.lung_model, sha256=config.lung_model_sha256 or None)
            box = field_box(field, img.shape, config.lung_crop_margin)
            found, summary = (field, box), {**field.summary(), "box": list(box)}
        x0, y0, x1, y1 = box
        self.box = box
        cropped = img[y0:y1, x0:x1]
        elapsed = (time.perf_counter() - start) * 1000.0
        if self.collect:
            debug = _crop_debug(img, crop) if found is None else _field_debug(img, found[0], box)
            self.reports.append(StageReport("lung_crop", elapsed, {**_stats(cropped), **summary}, debug))
        return cropped, found

    def mask(
        self, img: np.ndarray, found: tuple[LungFieldResult, tuple[int, int, int, int]], config: PreprocessConfig
    ) -> np.ndarray:
        field, box = found
        return self.run(
            "lung_mask", lambda: apply_lung_mask(img, field.mask(box, img.shape[:2]), config.lung_mask_dilation)
        )


def field_box(field: LungFieldResult, shape: tuple[int, ...], margin: float) -> tuple[int, int, int, int]:
    """The lung field's box widened by ``margin`` of its size on each side, inside the image."""
    height, width = shape[:2]
    x0, y0, x1, y1 = field.box
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    return (
        max(0, int(np.floor(x0 - mx))),
        max(0, int(np.floor(y0 - my))),
        min(width, int(np.ceil(x1 + mx))),
        min(height, int(np.ceil(y1 + my))),
    )


def apply_lung_mask(img: np.ndarray, mask: np.ndarray, dilation: float) -> np.ndarray:
    """``img`` (resized crop) with everything outside the dilated ``mask`` (same shape) set to 0."""
    radius = round(dilation * max(img.shape[:2]))
    keep: np.ndarray = mask.astype(np.uint8)
    if radius > 0:
        keep = np.asarray(
            cv2.dilate(keep, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
        )
    masked: np.ndarray = img * keep.astype(img.dtype)
    return masked


def _field_debug(img: np.ndarray, field: LungFieldResult, box: tuple[int, int, int, int]) -> np.ndarray:
    """RGB picture: the image, the lung field outlined, the crop box green (red on fallback)."""
    scale = 256 / max(img.shape)
    size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
    rgb = np.repeat(cv2.resize(_to_uint8(img), size, interpolation=cv2.INTER_AREA)[..., None], 3, axis=2)
    small = field.mask(size=(size[1], size[0])).astype(np.uint8)
    contours, _ = cv2.findContours(small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(rgb, contours, -1, (255, 200, 0), 1)
    x0, y0, x1, y1 = (int(v * scale) for v in box)
    cv2.rectangle(rgb, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), (255, 0, 0) if field.fallback else (0, 255, 0), 1)
    return rgb


def _run(
    pixels: np.ndarray, config: PreprocessConfig, collect: bool
) -> tuple[np.ndarray, list[StageReport], dict[str, Any]]:
    stages = _Stages(collect)
    img = as_unit_float(pixels)
    out, mask = stages.crop(img, config) if config.lung_crop else (img, None)
    out = stages.run("resize", resize_fit, out, config.input_size)
    height, width = out.shape[:2]
    size = config.input_size
    geometry = {
        "source_size": [int(img.shape[1]), int(img.shape[0])],
        "crop_box": list(stages.box or (0, 0, img.shape[1], img.shape[0])),
        # where the resized crop sits in the padded input square (pad_square's rule)
        "content_box": [
            (size - width) // 2,
            (size - height) // 2,
            (size - width) // 2 + width,
            (size - height) // 2 + height,
        ],
        "input_size": size,
    }
    if config.clahe:
        out = stages.run("clahe", apply_clahe, out, config.clahe_clip_limit, config.clahe_tile_grid)
    if config.lung_mask and mask is not None:
        out = stages.mask(out, mask, config)
    out = stages.run("pad", pad_square, out, config.input_size)
    out = stages.run("normalise", normalise, out, config.normalisation, config.channels)
    return np.ascontiguousarray(out, dtype=np.float32), stages.reports, geometry


def preprocess_with_lung_field(
    pixels: np.ndarray, config: PreprocessConfig, *, lung_model: str, lung_model_sha256: str | None = None
) -> tuple[np.ndarray, np.ndarray, bool]:
    """The model input, the lung field in input coordinates (bool, input_size square,
    undilated) and whether the lung field was found.

    The lung field comes from ``config.lung_model`` when the config has one, else from
    ``lung_model`` mapped through the config's own crop, so it can score where any
    version's heatmap falls (the Grad-CAM lung-mass figure of ``evaluate_model``).
    """
    image = preprocess(pixels, config)
    img = as_unit_float(pixels)
    name = config.lung_model or lung_model
    field = lung_field(
        img, model=name, sha256=(config.lung_model_sha256 if config.lung_model else lung_model_sha256) or None
    )
    if not config.lung_crop:
        box = (0, 0, img.shape[1], img.shape[0])
    elif config.lung_model:
        box = field_box(field, img.shape, config.lung_crop_margin)
    else:
        box = lung_crop_box(img, work_size=config.lung_crop_work_size, margin=config.lung_crop_margin).box
    x0, y0, x1, y1 = box
    resized = resize_fit(img[y0:y1, x0:x1], config.input_size)
    crop = field.mask(box, resized.shape[:2]).astype(np.uint8)
    return image, pad_square(crop, config.input_size).astype(bool), not field.fallback


def preprocess(pixels: np.ndarray, config: PreprocessConfig | None = None) -> np.ndarray:
    """2-D [0, 1] image -> (input_size, input_size, channels) float32. Deterministic."""
    return _run(pixels, config or PreprocessConfig(), collect=False)[0]


def preprocess_with_geometry(
    pixels: np.ndarray, config: PreprocessConfig | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """As :func:`preprocess`, plus where the input came from: ``crop_box`` (x0, y0, x1, y1)
    in source pixels, ``content_box`` the same region inside the padded input square,
    ``source_size`` [w, h] and ``input_size``. A heatmap's ``content_box`` region maps
    onto ``crop_box`` of the source image (the viewer registers it onto the film)."""
    image, _, geometry = _run(pixels, config or PreprocessConfig(), collect=False)
    return image, geometry


def preprocess_with_stages(
    pixels: np.ndarray, config: PreprocessConfig | None = None
) -> tuple[np.ndarray, list[StageReport]]:
    """As :func:`preprocess`, plus one :class:`StageReport` per stage that ran."""
    image, reports, _ = _run(pixels, config or PreprocessConfig(), collect=True)
    return image, reports


def save_stages(reports: list[StageReport], out_dir: str | Path) -> list[Path]:
    """Write each stage's debug image as ``NN_<name>.png``; returns the paths."""
    from PIL import Image

    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, report in enumerate(reports, start=1):
        path = target / f"{index:02d}_{report.name}.png"
        Image.fromarray(report.debug_image).save(path)
        paths.append(path)
    return paths
