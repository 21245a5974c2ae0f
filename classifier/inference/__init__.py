"""Django-free model inference: verified artifact loading, runtimes, Grad-CAM, pipeline.

Importing this package never imports TensorFlow or LiteRT; they load on first use in
the worker process.  Entry point: ``get_pipeline(artifact_dir, runtime).run(data)``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ArtifactIntegrityError",
    "InferencePipeline",
    "InferenceResult",
    "Predictor",
    "get_pipeline",
    "load_predictor",
]

_EXPORTS = {
    "get_pipeline": "classifier.inference.pipeline",
    "InferencePipeline": "classifier.inference.pipeline",
    "InferenceResult": "classifier.inference.pipeline",
    "load_predictor": "classifier.inference.runtime",
    "ArtifactIntegrityError": "classifier.inference.runtime",
    "Predictor": "classifier.inference.runtime",
}


def __getattr__(name: str) -> Any:
    # Lazy re-exports keep `import classifier.inference` cheap (modules are TF-free at
    # import time anyway, but pipeline pulls in classifier.imaging).
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(name)
