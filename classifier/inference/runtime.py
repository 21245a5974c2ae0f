"""Model runtimes behind one small protocol, loaded from a verified artifact directory.

``load_predictor`` checks every file in ``manifest.json`` against its sha256 before
loading, so a tampered or half-copied artifact fails loudly instead of serving a
different model than the registry recorded.  TensorFlow / LiteRT are imported inside
functions only (this module is importable from the web process).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from classifier.inference.manifest import ArtifactIntegrityError, verify_manifest

if TYPE_CHECKING:
    from classifier.inference.cam import PooledHead

__all__ = ["RUNTIMES", "ArtifactIntegrityError", "Predictor", "features_head", "load_predictor", "verify_manifest"]

RUNTIMES = ("tflite", "keras")


@runtime_checkable
class Predictor(Protocol):
    labels: list[str]
    input_shape: tuple[int, int, int]

    def predict_logits(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N, H, W, C) in [0, 1] -> float32 logits (N, len(labels))."""
        ...

    def predict_with_features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits and the Grad-CAM feature map of the same pass (loaded with ``features=True``)."""
        ...


def features_head(predictor: Predictor) -> PooledHead | None:
    """The predictor's closed-form Grad-CAM head, or None (then Grad-CAM needs a tape).

    A predictor with a head also has ``predict_with_features(batch) -> (logits,
    feature map)``, one forward pass giving both.
    """
    return getattr(predictor, "head", None)


class TFLitePredictor:
    """LiteRT interpreter (XNNPACK default delegate).  Thread-safe via a lock: one
    interpreter serves one call at a time, which matches one Celery worker process.

    With ``features=True`` and a pooled-dense head (``classifier.inference.cam``), the
    interpreter runs the same file with the Grad-CAM feature map added as a second
    output, and ``head`` is set; otherwise ``head`` is None.
    """

    def __init__(
        self, model_path: str | Path, labels: list[str], num_threads: int | None = None, *, features: bool = False
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        from classifier.inference.cam import tflite_with_features

        self.labels = list(labels)
        content = Path(model_path).read_bytes()
        exposed = tflite_with_features(content) if features else None
        self.head: PooledHead | None = exposed[1] if exposed else None
        self._interpreter = Interpreter(model_content=exposed[0] if exposed else content, num_threads=num_threads)
        self._input = self._interpreter.get_input_details()[0]
        outputs = self._interpreter.get_output_details()
        self._output = outputs[0]
        self._features = outputs[1] if exposed else None
        height, width, channels = (int(d) for d in self._input["shape"][1:])
        self.input_shape = (height, width, channels)
        self._batch = -1
        self._lock = threading.Lock()

    def _invoke(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.shape[1:] != self.input_shape:
            raise ValueError(f"expected (N, {self.input_shape}), got {batch.shape}")
        with self._lock:
            if batch.shape[0] != self._batch:  # re-plan only when the batch size changes
                self._interpreter.resize_tensor_input(self._input["index"], list(batch.shape))
                self._interpreter.allocate_tensors()
                self._batch = batch.shape[0]
            self._interpreter.set_tensor(self._input["index"], batch)
            self._interpreter.invoke()
            logits = self._interpreter.get_tensor(self._output["index"]).copy()
            features = (
                self._interpreter.get_tensor(self._features["index"]).copy() if self._features is not None else None
            )
            return logits, features

    def predict_logits(self, batch: np.ndarray) -> np.ndarray:
        return self._invoke(batch)[0]

    def predict_with_features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits and the Grad-CAM feature map (N, h, w, K) from one forward pass."""
        logits, features = self._invoke(batch)
        if features is None:
            raise RuntimeError("this predictor was built without features (head is None)")
        return logits, features


class KerasPredictor:
    """Keras runtime; also exposes ``model`` for Grad-CAM (and ``head`` when the model's
    head has the closed form, see ``classifier.inference.cam``)."""

    def __init__(self, model_path: str | Path, labels: list[str], *, features: bool = False) -> None:
        import keras

        from classifier.inference.cam import PooledHead
        from classifier.inference.gradcam import default_layer

        self.labels = list(labels)
        self.model = keras.saving.load_model(model_path, compile=False)
        height, width, channels = (int(d) for d in self.model.input_shape[1:])
        self.input_shape = (height, width, channels)
        self._call: Any = None  # tf.function, traced on first use
        self._call_features: Any = None
        self._layer = default_layer(self.model)
        self.head: PooledHead | None = PooledHead.from_keras(self.model, self._layer) if features else None

    def predict_with_features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits and the Grad-CAM feature map (N, h, w, K) from one forward pass."""
        import keras
        import tensorflow as tf

        if self.head is None:
            raise RuntimeError("this predictor was built without features (head is None)")
        if self._call_features is None:
            both = keras.Model(self.model.input, [self.model.output, self.model.get_layer(self._layer).output])
            self._call_features = tf.function(lambda x: both(x, training=False), reduce_retracing=True)
        logits, features = self._call_features(tf.constant(np.ascontiguousarray(batch, dtype=np.float32)))
        return np.asarray(logits), np.asarray(features)

    def predict_logits(self, batch: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        if self._call is None:
            # A traced call avoids model.predict's per-call dataset overhead (~10x on
            # single images); reduce_retracing shares one graph across batch sizes.
            self._call = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return np.asarray(self._call(tf.constant(batch)))


def load_predictor(
    artifact_dir: str | Path, runtime: str = "tflite", num_threads: int | None = None, *, features: bool = False
) -> Predictor:
    """Verify the artifact (sha256 of every file) and load its model for ``runtime``.

    ``features=True`` asks for the closed-form Grad-CAM head where the model has one
    (see ``features_head``)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    artifact_dir = Path(artifact_dir)
    verify_manifest(artifact_dir)
    labels = json.loads((artifact_dir / "labels.json").read_text())
    if runtime == "tflite":
        return TFLitePredictor(artifact_dir / "model.tflite", labels, num_threads, features=features)
    return KerasPredictor(artifact_dir / "model.keras", labels, features=features)
