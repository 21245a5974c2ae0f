"""Inference as a pipeline of named, timed stages: decode -> preprocess -> model ->
heatmap (plus total).

One ``InferencePipeline`` per (artifact directory, runtime) per process, built lazily
by ``get_pipeline``: a new artifact directory is a new model version and is loaded on
first use, without a restart.  Pipelines are safe to share between threads (runtimes
serialise their own calls).  Decoding errors propagate unchanged as
``classifier.imaging.errors.ImagingError`` (a permanent failure for the caller).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from classifier.inference.runtime import features_head, load_predictor
from classifier.inference.scores import NORMAL_LABEL, served_probabilities

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class InferenceResult:
    """One image's prediction.  ``p_abnormal = 1 - p(NORMAL)``; ``flag`` is
    ``p_abnormal >= threshold``.  ``heatmap_class`` is the class Grad-CAM explains:
    the most probable abnormal class, so the map always shows abnormality evidence."""

    probabilities: dict[str, float]
    label: str
    p_abnormal: float
    flag: bool
    threshold: float
    timings_ms: dict[str, float]
    preprocessed: np.ndarray  # (H, W) uint8, what the model saw
    display_png: bytes | None = None  # ``preprocessed`` as PNG (with a heatmap)
    heatmap_raw: np.ndarray | None = None  # (H, W) float32 in [0, 1]
    heatmap_png: bytes | None = None
    heatmap_class: str | None = None
    model_sha256: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    geometry: dict[str, Any] = field(default_factory=dict)  # crop/content boxes: preprocess_with_geometry
    film: tuple[bytes, dict[str, Any]] | None = None  # the original values for a viewer: imaging.display


@dataclass
class _Prepared:
    image: np.ndarray
    metadata: dict[str, Any]
    geometry: dict[str, Any]
    film: tuple[bytes, dict[str, Any]] | None


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + (time.perf_counter() - start) * 1000.0


def _display_uint8(plane: np.ndarray, normalisation: str) -> np.ndarray:
    """The model input as a viewable uint8 image, undoing the value normalisation."""
    if normalisation == "minus_one_one":
        plane = (plane + 1.0) / 2.0
    elif normalisation != "zero_one":  # e.g. imagenet z-scores: stretch for display
        low, high = float(plane.min()), float(plane.max())
        plane = (plane - low) / (high - low) if high > low else np.zeros_like(plane)
    return np.clip(np.rint(plane * 255.0), 0, 255).astype(np.uint8)


class InferencePipeline:
    """Runs an artifact directory's model on raw image bytes.

    ``threads`` > 1 decodes, preprocesses and PNG-encodes the images of a batch in that
    many threads (Pillow, OpenCV and NumPy release the GIL in their heavy loops) and
    gives the TFLite interpreter as many threads; results and per-image timings are the
    same as with one thread.
    """

    def __init__(
        self,
        artifact_dir: str | Path,
        *,
        runtime: str = "tflite",
        heatmap: bool = True,
        threads: int = 1,
        screen: bool = True,
    ) -> None:
        from classifier.imaging.preprocess import PreprocessConfig

        self.artifact_dir = Path(artifact_dir)
        self.runtime = runtime
        self.heatmap = heatmap
        # Refuse blank and non-radiograph inputs (classifier.imaging.screening) before the model.
        self.screen = screen
        self.threads = max(1, threads)
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="inference") if self.threads > 1 else None
        # load_predictor verifies every sha256 before anything is used.
        self.predictor = load_predictor(self.artifact_dir, runtime, self.threads, features=heatmap)
        # Closed-form Grad-CAM from the served forward pass when the head allows it;
        # otherwise a GradientTape pass through the Keras model (loaded lazily).
        self.head = features_head(self.predictor)
        manifest = json.loads((self.artifact_dir / "manifest.json").read_text())
        self.model_sha256 = manifest["files"].get("model.tflite" if runtime == "tflite" else "model.keras", "")
        self.config = PreprocessConfig.from_dict(json.loads((self.artifact_dir / "preprocess.json").read_text()))
        thresholds = json.loads((self.artifact_dir / "thresholds.json").read_text())
        self.threshold = float(thresholds["abnormal"])
        # Temperature and, for newer versions, the binary calibration (classifier.inference.scores).
        self.calibration = thresholds
        self.labels = list(self.predictor.labels)
        self._keras_model: Any = getattr(self.predictor, "model", None)
        self._keras_lock = threading.Lock()

    @property
    def keras_model(self) -> Any:
        """The Keras model for Grad-CAM, loaded on first use (already hash-verified)."""
        with self._keras_lock:
            if self._keras_model is None:
                import keras

                self._keras_model = keras.saving.load_model(self.artifact_dir / "model.keras", compile=False)
            return self._keras_model

    def warm_up(self) -> None:
        """Load and trace everything now (first Grad-CAM otherwise costs seconds):
        call once in a worker process after fork, e.g. from worker_process_init."""
        blank = np.zeros((2, *self.predictor.input_shape), np.float32)
        self.predictor.predict_logits(blank[:1])
        if self.heatmap and self.head is not None:
            self.predictor.predict_with_features(blank[:1])
            self.predictor.predict_with_features(blank)
        elif self.heatmap:
            from classifier.inference.gradcam import gradcam_batch

            # Two batch sizes, so the traced function relaxes to any batch size at once.
            gradcam_batch(self.keras_model, blank[:1], [None])
            gradcam_batch(self.keras_model, blank, [None, None])

    def _map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``[fn(i) for i in items]``, across the pool when there is one; the first
        exception is raised in item order, as the loop would."""
        if self._pool is None:
            return [fn(item) for item in items]
        return list(self._pool.map(fn, items))

    def _prepare(self, data: bytes, timings: dict[str, float], film: bool) -> _Prepared:
        from classifier.imaging.decode import decode_bytes
        from classifier.imaging.display import encode
        from classifier.imaging.preprocess import preprocess_with_geometry
        from classifier.imaging.screening import screen_radiograph

        with _timed(timings, "decode"):
            decoded = decode_bytes(data)
            if self.screen:
                screen_radiograph(decoded)  # blank, noise, photos: a reason, not a confident result
        with _timed(timings, "preprocess"):
            image, geometry = preprocess_with_geometry(decoded.pixels, self.config)
        encoded = None
        if film:
            with _timed(timings, "film"):
                encoded = encode(decoded.display_source())
        return _Prepared(image.astype(np.float32), decoded.metadata, geometry, encoded)

    def run(self, data: bytes) -> InferenceResult:
        """Predict one image; raises ImagingError if it cannot be decoded."""
        return self.run_many([data], batch_size=1)[0]

    def run_many(
        self, items: list[bytes], batch_size: int = 8, *, films: Sequence[bool] | None = None
    ) -> list[InferenceResult]:
        """Predict several images, ``batch_size`` per model call.  Per-image timings;
        the model stage is the batch time divided evenly.  Raises on the first image
        that fails to decode (callers wanting per-image errors call ``run``).
        ``films[i]`` also encodes image i's original values for the viewer (``film``)."""
        wanted = list(films) if films is not None else [False] * len(items)
        results: list[InferenceResult] = []
        for start in range(0, len(items), batch_size):
            end = start + batch_size
            results.extend(self._run_batch(items[start:end], wanted[start:end]))
        return results

    def _run_batch(self, items: list[bytes], films: list[bool]) -> list[InferenceResult]:
        timings = [dict[str, float]() for _ in items]
        prepared = self._map(lambda args: self._prepare(*args), list(zip(items, timings, films, strict=True)))
        batch = np.stack([p.image for p in prepared])
        start = time.perf_counter()
        features = None
        if self.heatmap and self.head is not None:
            logits, features = self.predictor.predict_with_features(batch)
        else:
            logits = self.predictor.predict_logits(batch)
        probs = served_probabilities(logits, self.labels, self.calibration).astype(np.float32)
        model_ms = (time.perf_counter() - start) * 1000.0 / len(items)
        results = []
        for item, p, t in zip(prepared, probs, timings, strict=True):
            t["model"] = model_ms
            result = self._result(item.image, item.metadata, p, t)
            result.geometry, result.film = item.geometry, item.film
            results.append(result)
        if self.heatmap:
            self._add_heatmaps(results, batch, probs, logits, features)
        for t in timings:
            # Per image in a batch, wall time is ambiguous: total = sum of its stages.
            t["total"] = sum(t.values())
        return results

    def _result(
        self, image: np.ndarray, metadata: dict[str, Any], probs: np.ndarray, timings: dict[str, float]
    ) -> InferenceResult:
        probabilities = {label: float(p) for label, p in zip(self.labels, probs, strict=True)}
        p_abnormal = 1.0 - probabilities.get(NORMAL_LABEL, 0.0)
        display = _display_uint8(image[..., 0], self.config.normalisation)
        result = InferenceResult(
            probabilities=probabilities,
            label=self.labels[int(np.argmax(probs))],
            p_abnormal=p_abnormal,
            flag=p_abnormal >= self.threshold,
            threshold=self.threshold,
            timings_ms=timings,
            preprocessed=display,
            model_sha256=self.model_sha256,
            metadata=metadata,
        )
        return result

    def _add_heatmaps(
        self,
        results: list[InferenceResult],
        batch: np.ndarray,
        probs: np.ndarray,
        logits: np.ndarray,
        features: np.ndarray | None,
    ) -> None:
        """Grad-CAM of each image's most probable abnormal class for the whole batch:
        closed form from the forward pass's feature map when the head allows it (and
        the head reproduces the served logits), else one GradientTape pass."""
        from classifier.inference.gradcam import gradcam_batch, overlay_png, png_bytes

        start = time.perf_counter()
        abnormal = [i for i, label in enumerate(self.labels) if label != NORMAL_LABEL]
        indices = [max(abnormal, key=lambda i: p[i]) if abnormal else int(np.argmax(p)) for p in probs]
        if features is not None and self.head is not None and self.head.matches(features, logits):
            heatmaps = self.head.cam(features, np.asarray(indices), batch.shape[1:3])
        else:
            if features is not None:
                log.error(
                    "model %s: the Grad-CAM head does not reproduce the logits; using the gradient pass",
                    self.model_sha256[:12],
                )
            heatmaps = gradcam_batch(self.keras_model, batch, indices)
        per_image = (time.perf_counter() - start) * 1000.0 / len(results)

        def encode(item: tuple[InferenceResult, np.ndarray, int]) -> None:
            result, heat, index = item
            started = time.perf_counter()
            result.heatmap_raw = heat
            result.heatmap_class = self.labels[index]
            result.heatmap_png = overlay_png(result.preprocessed, heat)
            result.display_png = png_bytes(result.preprocessed)
            result.timings_ms["heatmap"] = per_image
            result.timings_ms["encode"] = (time.perf_counter() - started) * 1000.0

        self._map(encode, list(zip(results, heatmaps, indices, strict=True)))


_PIPELINES: dict[tuple[str, str, bool, int], InferencePipeline] = {}
_PIPELINES_LOCK = threading.Lock()


def get_pipeline(
    artifact_dir: str | Path, runtime: str = "tflite", *, heatmap: bool = True, threads: int = 1
) -> InferencePipeline:
    """The process-wide pipeline for (artifact dir, runtime, heatmap, threads), built on
    first use.

    Artifact directories are immutable, so a cached pipeline never goes stale; call
    this in the worker child process, not before fork (TF state does not survive it).
    """
    key = (str(Path(artifact_dir).resolve()), runtime, heatmap, threads)
    with _PIPELINES_LOCK:
        pipeline = _PIPELINES.get(key)
        if pipeline is None:
            pipeline = InferencePipeline(artifact_dir, runtime=runtime, heatmap=heatmap, threads=threads)
            _PIPELINES[key] = pipeline
        return pipeline


def clear_pipelines() -> None:
    """Drop cached pipelines (tests; or to free memory of retired versions)."""
    with _PIPELINES_LOCK:
        _PIPELINES.clear()
