"""Inference benchmark on the real sample: the worker path against the source systems' baseline.

    python benchmarks/inference.py [--limit N] [--batch-size 8]

Prints, for the active (shipped) model on ../shared/data/cxr (CXR_DATA_DIR overrides):
- end to end, file on disk -> stored prediction row with heatmap (the worker's code:
  upload service, then prediction_run), p50/p95 per stage and in total, images/s;
- the same with batching (several images waiting, one worker);
- the model stage with the TFLite runtime and with Keras (the setting's two choices);
- the baseline of the source demos: a Keras model loaded in the process and
  model.predict called once per image (Pillow resize, no heatmap), images/s;
- peak resident memory. Runs on a throwaway SQLite database and var directory.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("CXR_VAR_DIR", tempfile.mkdtemp(prefix="cxr-bench-"))
os.environ.pop("DATABASE_URL", None)
os.environ.pop("CELERY_BROKER_URL", None)
os.environ["DJANGO_SETTINGS_MODULE"] = "cxrsite.settings"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def row(name: str, values: list[float]) -> str:
    return f"  {name:<12} p50 {pct(values, 50):8.1f} ms   p95 {pct(values, 95):8.1f} ms   (n={len(values)})"


def files(limit: int | None) -> list[Path]:
    from classifier.imaging import data_dir

    found = sorted(p for p in (data_dir() / "cxr").rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    return found[:limit] if limit else found


def worker_path(paths: list[Path], batch_size: int) -> tuple[dict[str, list[float]], float]:
    """Upload + run each image as the worker does; returns per-stage timings and images/s."""
    from django.conf import settings

    import classifier.predictions as predictions
    from classifier.models import Prediction
    from classifier.services import StudyFields, image_upload

    predictions._enqueue_on_commit = lambda pk: None  # the benchmark is the worker; no broker hop
    settings.CXR = {**settings.CXR, "INFERENCE_BATCH_SIZE": batch_size}
    stages: dict[str, list[float]] = {}
    started = time.perf_counter()
    pending = []
    for n, path in enumerate(paths):
        t0 = time.perf_counter()
        outcome = image_upload(data=path.read_bytes(), filename=path.name, uploaded_by=None,
                               fields=StudyFields(mrn=f"B{batch_size}-{n}", accession_number=f"B{batch_size}-{n}"))
        upload_ms = (time.perf_counter() - t0) * 1000
        pending.append((outcome.prediction.pk, upload_ms, t0))
        if len(pending) >= batch_size or n == len(paths) - 1:
            predictions.prediction_run(prediction_id=pending[0][0])
            for pk, upload_ms, t0 in pending:
                p = Prediction.objects.get(pk=pk)
                for stage, ms in p.timings_ms.items():
                    stages.setdefault(stage, []).append(ms)
                stages.setdefault("upload", []).append(upload_ms)
                stages.setdefault("end_to_end", []).append((time.perf_counter() - t0) * 1000)
            pending = []
    return stages, len(paths) / (time.perf_counter() - started)


def model_stage(paths: list[Path], artifact_dir: str, runtime: str) -> list[float]:
    from classifier.inference.pipeline import InferencePipeline

    pipeline = InferencePipeline(artifact_dir, runtime=runtime, heatmap=False)
    pipeline.run(paths[0].read_bytes())  # warm-up
    return [pipeline.run(p.read_bytes()).timings_ms["model"] for p in paths]


def baseline(paths: list[Path], artifact_dir: str, size: int) -> float:
    """The source demos: keras model in-process, PIL resize, model.predict per image."""
    import keras
    from PIL import Image

    model = keras.saving.load_model(Path(artifact_dir) / "model.keras", compile=False)
    model.predict(np.zeros((1, size, size, 1), np.float32), verbose=0)
    started = time.perf_counter()
    for path in paths:
        image = Image.open(path).convert("L").resize((size, size))
        x = np.asarray(image, np.float32)[None, :, :, None] / 255.0
        model.predict(x, verbose=0)
    return len(paths) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from training.registry import active_version

    version = active_version()
    if version is None:
        sys.exit("no active model: the shipped model is registered on migrate")
    paths = files(args.limit)
    print(f"model {version} ({version.architecture}, {version.input_size}px), {len(paths)} images, "
          f"{os.cpu_count()} CPUs")
    stages, rate = worker_path(paths, batch_size=1)
    print(f"worker path, one image at a time (file -> prediction row with heatmap): {rate:.1f} images/s")
    for name in ("upload", "decode", "preprocess", "model", "heatmap", "store", "total", "end_to_end"):
        print(row(name, stages.get(name, [])))
    batched, batched_rate = worker_path(paths, batch_size=args.batch_size)
    print(f"worker path, batches of {args.batch_size}: {batched_rate:.1f} images/s; model per image "
          f"p50 {pct(batched['model'], 50):.1f} ms")
    tflite = model_stage(paths, version.artifact_dir, "tflite")
    keras_ms = model_stage(paths, version.artifact_dir, "keras")
    print("model stage by runtime (batch of 1):")
    print(row("tflite", tflite))
    print(row("keras", keras_ms))
    base = baseline(paths, version.artifact_dir, version.input_size)
    print(f"baseline (Keras in-process, model.predict per image, no heatmap): {base:.1f} images/s")
    print(f"throughput ratio, worker path with heatmap / baseline: {rate / base:.2f}x "
          f"(batched: {batched_rate / base:.2f}x)")
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
