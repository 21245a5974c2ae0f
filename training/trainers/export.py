"""Export a trained Keras model to TFLite and publish an immutable artifact directory.

The directory layout is the contract in docs/contracts.md.  ``write_artifact`` builds
the directory under a temporary sibling name and renames it into place, so a reader
never sees a half-written artifact, and it refuses to touch an existing non-empty
directory (artifacts are immutable; a new model is a new directory).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

# Dynamic-range quantisation is kept only when softmax outputs stay this close to Keras.
QUANT_PARITY_TOLERANCE = 1e-2
FLOAT_PARITY_TOLERANCE = 1e-4


def _as_model(model_or_path: Any) -> Any:
    import keras

    if isinstance(model_or_path, (str, Path)):
        return keras.saving.load_model(model_or_path)
    return model_or_path


def export_tflite(model_or_path: Any, out_path: str | Path, *, quantize: str = "none") -> Path:
    """Convert to a TFLite flatbuffer with a dynamic batch dimension.

    ``quantize``: "none" (float32, the default) or "dynamic" (dynamic-range int8
    weights, float activations).  Callers decide whether "dynamic" is acceptable with
    ``tflite_parity``; ``write_artifact`` does that automatically.
    """
    import tensorflow as tf

    if quantize not in ("none", "dynamic"):
        raise ValueError("quantize must be 'none' or 'dynamic'")
    model = _as_model(model_or_path)
    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32, name="image")

    @tf.function(input_signature=[spec])
    def serve(x: Any) -> Any:
        return model(x, training=False)

    # No trackable object on purpose: with the (compiled, trained) model passed as the
    # trackable, TF 2.21 kept weights as resource variables and the flatbuffer read
    # uninitialised variables (NaN logits).  Without it the weights are frozen.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()])
    if quantize == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    out_path = Path(out_path)
    out_path.write_bytes(converter.convert())
    return out_path


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def tflite_logits(tflite_path: str | Path, x: np.ndarray) -> np.ndarray:
    """Run a TFLite model on a float32 batch (used for parity checks)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path))
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x.astype(np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


def tflite_parity(keras_model: Any, tflite_path: str | Path, x: np.ndarray) -> float:
    """Max absolute difference between Keras and TFLite softmax probabilities on x."""
    keras_logits = np.asarray(keras_model.predict(x.astype(np.float32), verbose=0))
    lite_logits = tflite_logits(tflite_path, x)
    return float(np.max(np.abs(_softmax(keras_logits) - _softmax(lite_logits))))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _export_checked(model: Any, out: Path, quantize: str, parity_x: np.ndarray | None) -> dict:
    """Export; keep dynamic quantisation only if parity holds, else fall back to float32."""
    if quantize == "dynamic" and parity_x is not None:
        export_tflite(model, out, quantize="dynamic")
        diff = tflite_parity(model, out, parity_x)
        if diff <= QUANT_PARITY_TOLERANCE:
            return {"quantization": "dynamic_range", "parity_max_abs_prob_diff": diff}
    export_tflite(model, out)
    info: dict = {"quantization": "none (float32)"}
    if parity_x is not None:
        info["parity_max_abs_prob_diff"] = tflite_parity(model, out, parity_x)
        if info["parity_max_abs_prob_diff"] > FLOAT_PARITY_TOLERANCE:
            raise RuntimeError(f"TFLite parity failed: {info['parity_max_abs_prob_diff']:.2e}")
    return info


def write_artifact(
    directory: str | Path,
    *,
    model: Any,
    preprocess_config: Any,
    labels: list[str],
    thresholds: dict,
    metrics: dict,
    model_card_md: str,
    extra: dict | None = None,
    quantize: str = "none",
    parity_x: np.ndarray | None = None,
) -> dict:
    """Write the contract layout into ``directory`` (must not exist or be empty).

    ``model`` is a keras.Model or a path to a ``.keras`` file.  ``thresholds`` must
    contain "abnormal" (and "temperature", default 1.0 added).  ``parity_x``, a few
    preprocessed float32 images, enables the Keras/TFLite parity check (recorded in the
    manifest).  Returns the manifest dict (also written as manifest.json).
    """
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(
            f"artifact directory {directory} exists and is not empty; artifacts are immutable, write a new directory"
        )
    if "abnormal" not in thresholds:
        raise ValueError("thresholds must contain 'abnormal'")
    model = _as_model(model)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        manifest = _fill(
            staging,
            model,
            preprocess_config,
            labels,
            thresholds,
            metrics,
            model_card_md,
            extra or {},
            quantize,
            parity_x,
        )
        staging.chmod(0o755)  # mkdtemp makes 0700; workers may run as another user
        if directory.exists():
            directory.rmdir()  # empty (checked above); rename needs it gone
        os.rename(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _fill(
    out: Path,
    model: Any,
    preprocess_config: Any,
    labels: list[str],
    thresholds: dict,
    metrics: dict,
    card: str,
    extra: dict,
    quantize: str,
    parity_x: np.ndarray | None,
) -> dict:
    model.save(out / "model.keras")
    tflite_info = _export_checked(model, out / "model.tflite", quantize, parity_x)
    thresholds = {"temperature": 1.0, **thresholds}
    documents = {
        "preprocess.json": preprocess_config.to_dict(),
        "labels.json": list(labels),
        "thresholds.json": thresholds,
        "metrics.json": metrics,
    }
    for name, data in documents.items():
        (out / name).write_text(json.dumps(data, indent=2, sort_keys=True, default=float))
    (out / "model_card.md").write_text(card)
    files = sorted(p.name for p in out.iterdir() if p.is_file())
    manifest = {
        "files": {name: sha256_file(out / name) for name in files},
        "created_at": datetime.now(UTC).isoformat(),
        "labels": list(labels),
        "input_shape": list(model.input_shape[1:]),
        "tflite": tflite_info,
        **extra,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    return manifest
