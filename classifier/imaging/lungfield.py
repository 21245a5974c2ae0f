"""Lung-field localisation with a small segmentation network, so that disease cannot hide it.

The intensity heuristic of :mod:`lungcrop` finds dark, air-filled lungs; a lung full of
consolidation is bright and the heuristic fails on it (measured on the shared data: it
fell back to the whole image for about half of the pneumonia images and a tenth of the
normals, so "was the image cropped" itself became a label signal). A 0.1 M-parameter
U-Net, trained on the heuristic's confident masks with synthetic opacities painted into
the lungs (``training.trainers.lungfield``), keeps the shape prior of the thorax and marks
white lungs as lung.

The network is a TFLite file shipped in ``classifier/imaging/lungfield/<name>.tflite``
and named, with its sha256, in each model version's preprocessing config; a file is
never replaced, a new one gets a new name. It runs on a 128 x 128 square squash of the
image (the map is squashed back), through LiteRT: no TensorFlow, no Django.

Contract of :func:`lung_field`: never raises on content; returns the lung mask (both
lungs, each the convex hull of its component) on the network's grid with a method to
sample it over any crop of the image, its bounding box in image pixels, and
``fallback=True`` with a reason when the network found no plausible pair of lungs.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "DEFAULT_MODEL",
    "INPUT_SIZE",
    "LungFieldResult",
    "lung_field",
    "lungs_from_probability",
    "model_path",
    "model_sha256",
    "normalise_input",
]

INPUT_SIZE = 128
DEFAULT_MODEL = "lungfield-v1"  # the network evaluation uses to score any version's heatmaps
MODEL_DIR = Path(__file__).resolve().parent / "lungfield"
MIN_SIDE_FRACTION = 0.02  # each lung's share of the image
MAX_TOTAL_FRACTION = 0.7


@dataclass(frozen=True)
class LungFieldResult:
    """The lung field of one image.

    ``small`` is the uint8 0/1 mask on the network's 128 x 128 square squash of the image
    (all ones on fallback); ``shape`` the image's (height, width); ``box`` the field's
    bounding box in image pixels (x0, y0, x1, y1; end exclusive).
    """

    small: np.ndarray
    shape: tuple[int, int]
    box: tuple[int, int, int, int]
    fallback: bool
    reason: str | None

    @property
    def area_fraction(self) -> float:
        return float(self.small.mean()) if self.small.size else 0.0

    def mask(self, box: tuple[int, int, int, int] | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
        """The field as a bool mask over ``box`` of the image (default: all of it), sampled
        at ``size`` = (height, width) (default: the box's own size), nearest neighbour."""
        height, width = self.shape
        x0, y0, x1, y1 = box or (0, 0, width, height)
        out_h, out_w = size or (y1 - y0, x1 - x0)
        rows = ((np.arange(out_h) + 0.5) * (y1 - y0) / out_h + y0) * self.small.shape[0] / height
        cols = ((np.arange(out_w) + 0.5) * (x1 - x0) / out_w + x0) * self.small.shape[1] / width
        rows = np.clip(rows.astype(np.int64), 0, self.small.shape[0] - 1)
        cols = np.clip(cols.astype(np.int64), 0, self.small.shape[1] - 1)
        return self.small[np.ix_(rows, cols)].astype(bool)

    def summary(self) -> dict[str, object]:
        return {
            "box": list(self.box),
            "fallback": self.fallback,
            "reason": self.reason,
            "mask_area_fraction": round(self.area_fraction, 4),
        }


def model_path(name: str) -> Path:
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"invalid lung-field model name {name!r}")
    return MODEL_DIR / f"{name}.tflite"


def model_sha256(name: str) -> str:
    with model_path(name).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def normalise_input(img: np.ndarray) -> np.ndarray:
    """[0, 1] 2-D image -> the network's float32 (128, 128) input: square squash + CLAHE.

    CLAHE takes exposure and processing differences between sources out of the input.
    """
    small = cv2.resize(img.astype(np.float32, copy=False), (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
    u8 = np.clip(np.rint(small * 255.0), 0, 255).astype(np.uint8)
    u8 = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(u8)
    out: np.ndarray = u8.astype(np.float32) / np.float32(255.0)
    return out


class _Runner:
    """One LiteRT interpreter per (thread, model): interpreters are not thread-safe."""

    _local = threading.local()

    @classmethod
    def get(cls, name: str, sha256: str | None) -> _Runner:
        cache: dict[tuple[str, str | None], _Runner] = getattr(cls._local, "cache", None) or {}
        cls._local.cache = cache
        if (name, sha256) not in cache:  # a new sha256 is checked against the file, once
            cache[(name, sha256)] = cls(name, sha256)
        return cache[(name, sha256)]

    def __init__(self, name: str, sha256: str | None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        path = model_path(name)
        content = path.read_bytes()
        if sha256 is not None and hashlib.sha256(content).hexdigest() != sha256:
            raise ValueError(f"lung-field model {name} does not match its recorded sha256")
        self.interpreter = Interpreter(model_content=content, num_threads=1)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]

    def probability(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input, x[None, :, :, None].astype(np.float32))
        self.interpreter.invoke()
        return np.asarray(self.interpreter.get_tensor(self.output)[0, :, :, 0], dtype=np.float32)


def lungs_from_probability(prob: np.ndarray, threshold: float = 0.5) -> tuple[np.ndarray, str | None]:
    """Both lungs from a probability map: the largest component on each side of the
    midline, each replaced by its convex hull (uint8 0/1); a reason when implausible."""
    binary = (prob >= threshold).astype(np.uint8)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(binary, connectivity=8)
    width = prob.shape[1]
    area = stats[:, cv2.CC_STAT_AREA].astype(np.float64) / prob.size
    out = np.zeros(prob.shape, np.uint8)
    sides = []
    for lo, hi in ((0.0, 0.5), (0.5, 1.0)):
        candidates = [i for i in range(1, count) if lo <= centroids[i, 0] / width < hi and area[i] >= MIN_SIDE_FRACTION]
        if candidates:
            sides.append(max(candidates, key=lambda i: area[i]))
    if len(sides) < 2:
        # One component across the midline is a lung field too (e.g. a rotated, cropped film).
        wide = [i for i in range(1, count) if area[i] >= 4 * MIN_SIDE_FRACTION]
        if not wide:
            return out, "no lung field found"
        sides = [max(wide, key=lambda i: area[i])]
    for i in sides:
        points = cv2.findNonZero((labels == i).astype(np.uint8))
        cv2.fillConvexPoly(out, cv2.convexHull(points), 1)
    if out.mean() > MAX_TOTAL_FRACTION:
        return out, "lung field implausibly large"
    return out, None


def lung_field(img: np.ndarray, *, model: str, sha256: str | None = None) -> LungFieldResult:
    """Locate the lung field of a 2-D [0, 1] image (bone bright) with the named network."""
    height, width = img.shape
    full, everything = (0, 0, width, height), np.ones((INPUT_SIZE, INPUT_SIZE), np.uint8)
    if img.size == 0:
        return LungFieldResult(everything, (height, width), full, True, "empty image")
    x = normalise_input(img)
    if float(x.max() - x.min()) < 0.05:  # CLAHE turns a flat image into +-1 grey level of noise
        return LungFieldResult(everything, (height, width), full, True, "uniform image")
    small, reason = lungs_from_probability(_Runner.get(model, sha256).probability(x))
    if reason:
        return LungFieldResult(everything, (height, width), full, True, reason)
    ys, xs = np.nonzero(small.any(axis=1))[0], np.nonzero(small.any(axis=0))[0]
    sy, sx = height / INPUT_SIZE, width / INPUT_SIZE
    box = (
        int(np.floor(xs[0] * sx)),
        int(np.floor(ys[0] * sy)),
        min(width, int(np.ceil((xs[-1] + 1) * sx))),
        min(height, int(np.ceil((ys[-1] + 1) * sy))),
    )
    return LungFieldResult(small, (height, width), box, False, None)
