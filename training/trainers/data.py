"""Training data: a disk cache of preprocessed images and the tf.data input pipeline.

``PreprocessedCache`` runs ``classifier.imaging`` (decode + preprocess) once per
(file content, preprocessing config) and stores the result as uint8, so repeated
experiments skip the slow decode/lung-crop/CLAHE work.  ``make_dataset`` turns the uint8
arrays into augmented, class-balanced batches of float32 images in [0, 1] -- the same
range ``preprocess`` returns at inference time.

TensorFlow is imported inside functions only; the cache workers never import it.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from multiprocessing import current_process, get_context
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

Balancing = Literal["class_weights", "undersample", "oversample", "none"]
BALANCING_MODES: tuple[str, ...] = ("class_weights", "undersample", "oversample", "none")


def config_hash(config: Any) -> str:
    """Stable short hash of a PreprocessConfig (anything with ``to_dict()``)."""
    blob = json.dumps(config.to_dict(), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Quantise a [0, 1] float image to uint8 (the cache format; 1/255 steps)."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def _process_one(path: str, config_dict: dict, out_path: str) -> str | None:
    """Worker: decode + preprocess one file into ``out_path`` (.npy). Returns an error
    message or None.  Runs in a spawned process, so it imports imaging lazily."""
    from classifier.imaging.decode import decode_file
    from classifier.imaging.preprocess import PreprocessConfig, preprocess

    try:
        config = PreprocessConfig.from_dict(config_dict)
        image = preprocess(decode_file(path).pixels, config)
        if image.min() < -1e-3 or image.max() > 1 + 1e-3:
            return ("preprocess output is outside [0, 1]; the cache needs a [0, 1] "
                    "normalisation")
        tmp = f"{out_path}.{os.getpid()}.tmp.npy"
        np.save(tmp, to_uint8(image))
        os.replace(tmp, out_path)  # atomic: a crash never leaves a half-written entry
        return None
    except Exception as exc:  # noqa: BLE001 - a bad image is reported, not fatal
        return f"{type(exc).__name__}: {exc}"


@dataclass
class CacheResult:
    """``images[i]`` belongs to ``paths[indices[i]]``; failed paths are listed apart."""

    images: np.ndarray
    indices: np.ndarray
    failures: list[tuple[str, str]] = field(default_factory=list)


class PreprocessedCache:
    """On-disk cache of preprocessed images, keyed by (file sha256, config hash).

    Safe for concurrent readers and writers: entries are written atomically and an
    entry is only ever replaced by an identical one.
    """

    def __init__(self, cache_dir: str | Path, *, workers: int = 2) -> None:
        self.cache_dir = Path(cache_dir)
        self.workers = workers

    def _entry(self, digest: str, chash: str) -> Path:
        return self.cache_dir / chash / digest[:2] / f"{digest}.npy"

    def load(self, paths: Sequence[str | Path], config: Any) -> CacheResult:
        """Return the preprocessed uint8 images (N, H, W, C) for ``paths``.

        Missing entries are computed in ``workers`` spawned processes.  Images that
        fail to decode or preprocess are returned in ``failures`` as (path, reason).
        """
        chash = config_hash(config)
        entries = [self._entry(file_sha256(p), chash) for p in paths]
        todo = [i for i, e in enumerate(entries) if not e.exists()]
        errors = self._compute([str(paths[i]) for i in todo], [entries[i] for i in todo],
                               config.to_dict())
        failures = [(str(paths[i]), errors[k]) for k, i in enumerate(todo) if errors[k]]
        failed = {p for p, _ in failures}
        ok = [i for i in range(len(paths)) if str(paths[i]) not in failed]
        if not ok:
            shape = (0, config.input_size, config.input_size, config.channels)
            return CacheResult(np.zeros(shape, np.uint8), np.array([], int), failures)
        images = np.stack([np.load(entries[i]) for i in ok])
        return CacheResult(images, np.asarray(ok), failures)

    def _compute(self, paths: list[str], outs: list[Path], config_dict: dict) -> list:
        if not paths:
            return []
        for out in outs:
            out.parent.mkdir(parents=True, exist_ok=True)
        args = (paths, [config_dict] * len(paths), [str(o) for o in outs])
        # A Celery prefork child is a daemon process and may not start children of its own.
        if self.workers <= 1 or len(paths) < 8 or current_process().daemon:
            return [_process_one(*a) for a in zip(*args)]
        # spawn, not fork: the parent may already hold TensorFlow/OpenMP threads.
        with ProcessPoolExecutor(self.workers, mp_context=get_context("spawn")) as pool:
            return list(pool.map(_process_one, *args, chunksize=16))


@dataclass(frozen=True)
class AugmentConfig:
    """Anatomically valid augmentation; all magnitudes are maxima of uniform draws.

    Horizontal flip is off by default: it would put the heart on the right, which a
    real (non-situs-inversus) film never shows, and teaches the model nothing useful.
    """

    rotation_deg: float = 10.0
    zoom: float = 0.12
    aspect: float = 0.12             # anisotropic scale: squashed copies look like others
    shift: float = 0.08
    brightness: float = 0.12
    contrast: float = 0.25
    gamma: float = 0.3
    border_erase_prob: float = 0.5   # black strips at the edges: borders vary per source
    border_erase_max: float = 0.12
    cutout_prob: float = 0.25        # one random box, mimics burned-in text/markers
    cutout_max: float = 0.2
    blur_prob: float = 0.25
    noise_max: float = 0.03
    lowres_prob: float = 0.25        # down/up-sampling: pixel size must not matter
    horizontal_flip: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "AugmentConfig":
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown AugmentConfig keys: {sorted(unknown)}")
        return cls(**data)


def balance_indices(labels: np.ndarray, mode: str, seed: int) -> np.ndarray:
    """Indices of a class-balanced sample: undersample to the rarest class or oversample
    (with replacement) to the commonest; other modes return all indices."""
    if mode not in BALANCING_MODES:
        raise ValueError(f"balancing must be one of {BALANCING_MODES}, got {mode!r}")
    idx = np.arange(len(labels))
    if mode not in ("undersample", "oversample"):
        return idx
    rng = np.random.default_rng(seed)
    groups = [idx[labels == c] for c in np.unique(labels)]
    target = (min if mode == "undersample" else max)(len(g) for g in groups)
    picked = [g if len(g) == target else rng.choice(g, target, replace=len(g) < target)
              for g in groups]
    return np.sort(np.concatenate(picked))


def class_weight_vector(y_onehot: np.ndarray) -> np.ndarray:
    """Per-sample weights that give every class the same total weight (mean 1)."""
    totals = y_onehot.sum(axis=0)
    per_class = np.where(totals > 0, len(y_onehot) / (len(totals) * np.maximum(totals, 1e-9)), 0)
    weights = y_onehot @ per_class
    return (weights / weights.mean()).astype(np.float32)


def as_onehot(y: np.ndarray, num_classes: int | None) -> np.ndarray:
    """Accept int labels (N,) or soft/one-hot labels (N, K); return float32 (N, K)."""
    y = np.asarray(y)
    if y.ndim == 2:
        return y.astype(np.float32)
    k = num_classes or int(y.max()) + 1
    return np.eye(k, dtype=np.float32)[y.astype(int)]


def make_dataset(x_uint8: np.ndarray, y: np.ndarray, *, batch_size: int,
                 augment: AugmentConfig | None, shuffle: bool, seed: int,
                 balancing: str = "none", num_classes: int | None = None) -> Any:
    """A ``tf.data.Dataset`` of (float32 images in [0, 1], one-hot labels[, weights]).

    ``y`` may be int labels or soft labels (N, K).  ``balancing="class_weights"`` adds
    a third element (per-sample weights); "undersample"/"oversample" resample indices
    once (by argmax class); "none" leaves the data alone.  Augmentation runs on whole
    batches (cheap vectorised ops) after batching.
    """
    import tensorflow as tf

    y1 = as_onehot(y, num_classes)
    idx = balance_indices(y1.argmax(1), balancing, seed)
    x_sel, y_sel = x_uint8[idx], y1[idx]
    parts: tuple = (x_sel, y_sel)
    if balancing == "class_weights":
        parts = (x_sel, y_sel, class_weight_vector(y_sel))
    ds = tf.data.Dataset.from_tensor_slices(parts)
    if shuffle:
        ds = ds.shuffle(len(idx), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)

    def _prepare(x, *rest):
        x = tf.cast(x, tf.float32) / 255.0
        if augment is not None:
            x = augment_batch(x, augment)
        return (x, *rest)

    ds = ds.map(_prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _uniform(b: Any, lo: float, hi: float) -> Any:
    import tensorflow as tf

    return tf.random.uniform([b], lo, hi)


def _affine(x: Any, cfg: AugmentConfig) -> Any:
    """Random rotation, zoom, aspect stretch and shift about the centre, one resampling."""
    import math

    import tensorflow as tf

    b, h, w = tf.shape(x)[0], x.shape[1], x.shape[2]
    theta = _uniform(b, -1.0, 1.0) * cfg.rotation_deg * math.pi / 180.0
    scale = 1.0 + _uniform(b, -cfg.zoom, cfg.zoom)
    tx, ty = _uniform(b, -cfg.shift, cfg.shift) * w, _uniform(b, -cfg.shift, cfg.shift) * h
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    stretch = 1.0 + _uniform(b, -cfg.aspect, cfg.aspect)
    sx, sy = scale * stretch, scale / stretch
    a0, a1 = tf.cos(theta) / sx, tf.sin(theta) / sx
    b0, b1 = -tf.sin(theta) / sy, tf.cos(theta) / sy
    a2 = cx - a0 * cx - a1 * cy - tx
    b2 = cy - b0 * cx - b1 * cy - ty
    zeros = tf.zeros_like(a0)
    transform = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=x, transforms=transform, output_shape=[h, w], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT")


def _sample_mask(b: Any, prob: float) -> Any:
    import tensorflow as tf

    return tf.reshape(tf.random.uniform([b]) < prob, [-1, 1, 1, 1])


def _degrade(x: Any, cfg: AugmentConfig) -> Any:
    """Blur, resolution loss and noise, so image size/format/sharpness carry no label."""
    import tensorflow as tf

    b, h, w = tf.shape(x)[0], x.shape[1], x.shape[2]
    # 3x3 box blur: a fifth of the cost of a 5x5 Gaussian depthwise conv on CPU.
    blurred = tf.nn.avg_pool2d(x, 3, 1, "SAME")
    x = tf.where(_sample_mask(b, cfg.blur_prob), blurred, x)
    factor = tf.random.uniform([], 0.3, 0.7)  # one factor per batch keeps shapes static
    small = tf.image.resize(x, tf.cast([h * factor, w * factor], tf.int32), "area")
    x = tf.where(_sample_mask(b, cfg.lowres_prob), tf.image.resize(small, [h, w]), x)
    sigma = tf.reshape(_uniform(b, 0.0, cfg.noise_max), [-1, 1, 1, 1])
    return x + tf.random.normal(tf.shape(x)) * sigma


def _erase(x: Any, cfg: AugmentConfig) -> Any:
    """Black border strips (per-source borders) and one random box (burned-in text)."""
    import tensorflow as tf

    b, h, w = tf.shape(x)[0], x.shape[1], x.shape[2]
    yy = tf.reshape(tf.linspace(0.0, 1.0, h), [1, h, 1, 1])
    xx = tf.reshape(tf.linspace(0.0, 1.0, w), [1, 1, w, 1])

    def edge() -> Any:
        on = tf.cast(tf.random.uniform([b]) < cfg.border_erase_prob, tf.float32)
        return tf.reshape(_uniform(b, 0.0, cfg.border_erase_max) * on, [-1, 1, 1, 1])

    keep = (yy >= edge()) & (yy <= 1 - edge()) & (xx >= edge()) & (xx <= 1 - edge())
    x = x * tf.cast(keep, tf.float32)
    cy, cx = (tf.reshape(_uniform(b, 0.0, 1.0), [-1, 1, 1, 1]) for _ in range(2))
    half = tf.reshape(_uniform(b, 0.02, cfg.cutout_max / 2), [-1, 1, 1, 1])
    box = (tf.abs(yy - cy) < half) & (tf.abs(xx - cx) < half) & _sample_mask(b, cfg.cutout_prob)
    fill = tf.reshape(_uniform(b, 0.0, 1.0), [-1, 1, 1, 1])
    return tf.where(box, fill, x)


def augment_batch(x: Any, cfg: AugmentConfig) -> Any:
    """Augment a float32 batch (B, H, W, C) in [0, 1]; returns the same shape/range."""
    import tensorflow as tf

    b = tf.shape(x)[0]
    x = _affine(x, cfg)
    if cfg.horizontal_flip:
        x = tf.where(_sample_mask(b, 0.5), tf.reverse(x, axis=[2]), x)
    gamma = tf.reshape(tf.exp(_uniform(b, -cfg.gamma, cfg.gamma)), [-1, 1, 1, 1])
    x = tf.pow(tf.clip_by_value(x, 1e-6, 1.0), gamma)
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    contrast = tf.reshape(1.0 + _uniform(b, -cfg.contrast, cfg.contrast), [-1, 1, 1, 1])
    shift = tf.reshape(_uniform(b, -cfg.brightness, cfg.brightness), [-1, 1, 1, 1])
    x = (x - mean) * contrast + mean + shift
    x = _degrade(x, cfg)
    x = _erase(tf.clip_by_value(x, 0.0, 1.0), cfg)
    return tf.clip_by_value(x, 0.0, 1.0)


def temp_cache_dir() -> Path:
    """A default cache location outside the repository (data never goes into it)."""
    return Path(os.environ.get("CXR_CACHE_DIR", Path(tempfile.gettempdir()) / "cxr-cache"))
