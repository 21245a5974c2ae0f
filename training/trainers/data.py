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
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from multiprocessing import current_process, get_context
from pathlib import Path
from typing import Any

import numpy as np

# "source_label": draws each epoch from per-image probabilities given by the caller
# (training.trainers.balance), the rest rebalance by class inside ``make_dataset``.
BALANCING_MODES: tuple[str, ...] = ("class_weights", "undersample", "oversample", "none", "source_label")


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
            return "preprocess output is outside [0, 1]; the cache needs a [0, 1] normalisation"
        tmp = f"{out_path}.{os.getpid()}.tmp.npy"
        np.save(tmp, to_uint8(image))
        os.replace(tmp, out_path)  # atomic: a crash never leaves a half-written entry
        return None
    except Exception as exc:
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
        errors = self._compute([str(paths[i]) for i in todo], [entries[i] for i in todo], config.to_dict())
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
            return [_process_one(*a) for a in zip(*args, strict=True)]
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
    aspect: float = 0.12  # anisotropic scale: squashed copies look like others
    shift: float = 0.08
    brightness: float = 0.12
    contrast: float = 0.25
    gamma: float = 0.3
    border_erase_prob: float = 0.5  # black strips at the edges: borders vary per source
    border_erase_max: float = 0.12
    cutout_prob: float = 0.25  # one random box, mimics burned-in text/markers
    cutout_max: float = 0.2
    blur_prob: float = 0.25
    noise_max: float = 0.03
    lowres_prob: float = 0.25  # down/up-sampling: pixel size must not matter
    horizontal_flip: bool = False
    # Source signatures (off unless a recipe asks): JPEG re-compression, sharpening as
    # some scanners' processing does, and burned-in text/markers anywhere in the image.
    jpeg_prob: float = 0.0
    jpeg_quality_min: int = 30
    sharpen_prob: float = 0.0
    text_prob: float = 0.0
    # Fourier amplitude mix (off unless a recipe asks): with this probability an image's
    # amplitude spectrum moves a uniform share up to ``amp_mix_max`` towards another batch
    # image's, its phase kept.  Contrast per spatial frequency (scanner response, grid,
    # noise, processing) is a hospital's signature; anatomy and opacities live mostly in
    # the phase (Xu et al., CVPR 2021, "amplitude mix"; Yang & Soatto, CVPR 2020).
    amp_mix_prob: float = 0.0
    amp_mix_max: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AugmentConfig:
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
    picked = [g if len(g) == target else rng.choice(g, target, replace=len(g) < target) for g in groups]
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


def make_dataset(
    x_uint8: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    augment: AugmentConfig | None,
    shuffle: bool,
    seed: int,
    balancing: str = "none",
    num_classes: int | None = None,
) -> Any:
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
    bank = None
    if augment is not None and augment.text_prob > 0:
        bank = tf.constant(text_bank(x_uint8.shape[1], x_uint8.shape[3], seed=seed))

    def _prepare(x, *rest):
        x = tf.cast(x, tf.float32) / 255.0
        if augment is not None:
            x = augment_batch(x, augment, bank)
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
        images=x,
        transforms=transform,
        output_shape=[h, w],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )


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


def text_bank(size: int, channels: int, count: int = 96, seed: int = 0) -> np.ndarray:
    """``count`` uint8 masks (count, size, size, channels) of scanner-style burned-in text:
    side markers, view and time labels and arrows, at random places and sizes."""
    import cv2

    rng = np.random.default_rng(seed)
    words = (
        "L",
        "R",
        "AP",
        "PA",
        "PORTABLE",
        "SUPINE",
        "ERECT",
        "UPRIGHT",
        "DAY 5",
        "14:32",
        "B",
        "A",
        "1",
        "2",
        "SEMI-ERECT",
        "INSP",
        "->",
        "ICU",
        "CHEST",
        "LEFT",
    )
    bank = np.zeros((count, size, size), np.uint8)
    for mask in bank:
        for _ in range(rng.integers(1, 4)):
            scale = rng.uniform(0.25, 0.9) * size / 224
            origin = (int(rng.uniform(0, 0.85) * size), int(rng.uniform(0.08, 1.0) * size))
            cv2.putText(
                mask, str(rng.choice(words)), origin, cv2.FONT_HERSHEY_SIMPLEX, scale, 1, max(1, round(2 * scale))
            )
    return np.repeat(bank[..., None], channels, axis=3)


def _source_signatures(x: Any, cfg: AugmentConfig, bank: Any | None) -> Any:
    """JPEG re-compression, sharpening and burned-in text (each with its probability)."""
    import tensorflow as tf

    b = tf.shape(x)[0]
    if cfg.sharpen_prob > 0:
        amount = tf.reshape(_uniform(b, 0.3, 1.5), [-1, 1, 1, 1])
        sharp = x + amount * (x - tf.nn.avg_pool2d(x, 3, 1, "SAME"))
        x = tf.where(_sample_mask(b, cfg.sharpen_prob), tf.clip_by_value(sharp, 0.0, 1.0), x)
    if cfg.jpeg_prob > 0:
        quality = tf.random.uniform([b], cfg.jpeg_quality_min, 95, dtype=tf.int32)
        coded = tf.map_fn(
            lambda args: tf.image.adjust_jpeg_quality(args[0], args[1]), (x, quality), fn_output_signature=tf.float32
        )
        x = tf.where(_sample_mask(b, cfg.jpeg_prob), tf.reshape(coded, tf.shape(x)), x)
    if cfg.text_prob > 0 and bank is not None:
        pick = tf.random.uniform([b], 0, bank.shape[0], dtype=tf.int32)
        text = tf.cast(tf.gather(bank, pick), tf.bool) & _sample_mask(b, cfg.text_prob)
        value = tf.cast(tf.reshape(tf.random.uniform([b]) < 0.8, [-1, 1, 1, 1]), tf.float32)
        x = tf.where(text, value * tf.ones_like(x), x)
    return x


def _amplitude_mix(x: Any, cfg: AugmentConfig) -> Any:
    """Each selected image's 2-D amplitude spectrum mixed with the next batch image's
    (batches are drawn across sources, so the partner is usually another hospital's film);
    the phase, and so the anatomy's layout, is the image's own."""
    import tensorflow as tf

    b = tf.shape(x)[0]
    spectrum = tf.signal.fft2d(tf.cast(tf.transpose(x, [0, 3, 1, 2]), tf.complex64))
    amplitude, phase = tf.abs(spectrum), tf.math.angle(spectrum)
    share = tf.reshape(_uniform(b, 0.0, cfg.amp_mix_max), [-1, 1, 1, 1])
    mixed = (1.0 - share) * amplitude + share * tf.roll(amplitude, 1, axis=0)
    image = tf.math.real(tf.signal.ifft2d(tf.complex(mixed * tf.cos(phase), mixed * tf.sin(phase))))
    image = tf.clip_by_value(tf.transpose(image, [0, 2, 3, 1]), 0.0, 1.0)
    return tf.where(_sample_mask(b, cfg.amp_mix_prob), image, x)


def augment_batch(x: Any, cfg: AugmentConfig, bank: Any | None = None) -> Any:
    """Augment a float32 batch (B, H, W, C) in [0, 1]; returns the same shape/range.

    ``bank``: text masks from :func:`text_bank` (needed when ``cfg.text_prob`` > 0).
    """
    import tensorflow as tf

    b = tf.shape(x)[0]
    if cfg.amp_mix_prob > 0:
        x = _amplitude_mix(x, cfg)
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
    x = _source_signatures(tf.clip_by_value(x, 0.0, 1.0), cfg, bank)
    x = _erase(tf.clip_by_value(x, 0.0, 1.0), cfg)
    return tf.clip_by_value(x, 0.0, 1.0)


def make_sampled_dataset(
    x_uint8: np.ndarray,
    y: np.ndarray,
    order: np.ndarray,
    *,
    batch_size: int,
    augment: AugmentConfig | None,
    seed: int,
    y_aux: np.ndarray | None = None,
) -> Any:
    """Batches of (float32 images, soft labels) in the order of ``order`` (epochs, epoch_size);
    with ``y_aux`` (per image) the targets are the pair (labels, aux) of a two-output model.

    Each epoch row is cut into ``epoch_size // batch_size`` full batches, so
    ``fit(steps_per_epoch=epoch_size // batch_size)`` consumes exactly one row per epoch
    (Keras keeps one iterator across epochs when ``steps_per_epoch`` is given).
    """
    import tensorflow as tf

    steps = order.shape[1] // batch_size
    flat = order[:, : steps * batch_size].reshape(-1, batch_size)
    y = y.astype(np.float32)
    bank = None
    if augment is not None and augment.text_prob > 0:
        bank = tf.constant(text_bank(x_uint8.shape[1], x_uint8.shape[3], seed=seed))

    aux = None if y_aux is None else y_aux.astype(np.float32)

    def batches() -> Any:
        for rows in flat:
            yield x_uint8[rows], (y[rows] if aux is None else (y[rows], aux[rows]))

    label_spec = tf.TensorSpec((batch_size, y.shape[1]), tf.float32)
    target_spec: Any = (
        label_spec if aux is None else (label_spec, tf.TensorSpec((batch_size, aux.shape[1]), tf.float32))
    )
    spec = (tf.TensorSpec((batch_size, *x_uint8.shape[1:]), tf.uint8), target_spec)
    ds = tf.data.Dataset.from_generator(batches, output_signature=spec)

    def _prepare(xb: Any, yb: Any) -> Any:
        xb = tf.cast(xb, tf.float32) / 255.0
        if augment is not None:
            xb = augment_batch(xb, augment, bank)
        return xb, yb

    return ds.map(_prepare, num_parallel_calls=2, deterministic=True).prefetch(2)


def temp_cache_dir() -> Path:
    """A default cache location outside the repository (data never goes into it)."""
    return Path(os.environ.get("CXR_CACHE_DIR", Path(tempfile.gettempdir()) / "cxr-cache"))
