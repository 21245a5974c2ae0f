"""Inference benchmark on the real sample: the worker path against the source systems' baseline.

    python benchmarks/inference.py [--limit N] [--batch-size 8] [--processes N]

Prints, for the active (shipped) model on ../shared/data/cxr (CXR_DATA_DIR overrides):
- latency: end to end, file on disk -> stored prediction row with heatmap (the upload
  service, then the worker's prediction_run at once), p50/p95 per stage and in total;
- throughput: all files uploaded, then one worker process drains the queue (batches of
  ``--batch-size``, CXR_INFERENCE_THREADS threads), images/s; also upload + worker
  done one after the other in one process, the most conservative figure; and one
  worker with ``--processes`` pool processes (as ``celery worker -c N``);
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
from typing import Any

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


def _upload(path: Path, tag: str) -> tuple[int, float]:
    from classifier.services.studies import StudyFields
    from classifier.services.uploads import image_upload

    t0 = time.perf_counter()
    outcome = image_upload(
        data=path.read_bytes(), filename=path.name, uploaded_by=None, fields=StudyFields(mrn=tag, accession_number=tag)
    )
    return outcome.prediction.pk, (time.perf_counter() - t0) * 1000


def _worker_setup(batch_size: int) -> None:
    from django.conf import settings

    import classifier.services.predictions as predictions

    predictions._enqueue_on_commit = lambda pk: None  # the benchmark is the worker; no broker hop
    settings.CXR = {**settings.CXR, "INFERENCE_BATCH_SIZE": batch_size}


def latency(paths: list[Path]) -> tuple[dict[str, list[float]], float]:
    """Each file uploaded, then run by the worker code at once (batch of one): per-stage
    and end-to-end timings (file on disk -> prediction row with heatmap), images/s."""
    import classifier.services.predictions as predictions
    from classifier.models import Prediction

    _worker_setup(1)
    stages: dict[str, list[float]] = {}
    started = time.perf_counter()
    for n, path in enumerate(paths):
        t0 = time.perf_counter()
        pk, upload_ms = _upload(path, f"L-{n}")
        predictions.prediction_run(prediction_id=pk)
        end_to_end = (time.perf_counter() - t0) * 1000
        for stage, ms in Prediction.objects.get(pk=pk).timings_ms.items():
            stages.setdefault(stage, []).append(ms)
        stages.setdefault("upload", []).append(upload_ms)
        stages.setdefault("end_to_end", []).append(end_to_end)
    return stages, len(paths) / (time.perf_counter() - started)


def _upload_all(paths: list[Path], tag: str) -> tuple[list[int], float]:
    """Upload every file (the web process's work); returns the prediction ids and images/s."""
    started = time.perf_counter()
    ids = [_upload(path, f"{tag}-{n}")[0] for n, path in enumerate(paths)]
    return ids, len(ids) / (time.perf_counter() - started)


def _check_done(ids: list[int]) -> None:
    from classifier.models import Prediction

    done = Prediction.objects.filter(pk__in=ids, status=Prediction.Status.DONE).count()
    if done != len(ids):
        sys.exit(f"only {done} of {len(ids)} predictions finished")


def throughput(paths: list[Path], batch_size: int) -> tuple[float, float]:
    """Upload every file, then let this process drain the queue as one worker process
    does in production: one task per upload, each claiming up to ``batch_size`` waiting
    rows (most tasks then find their row done).  Returns (upload, worker) images/s."""
    import classifier.services.predictions as predictions

    _worker_setup(batch_size)
    ids, upload_rate = _upload_all(paths, f"T{batch_size}")
    started = time.perf_counter()
    for pk in ids:
        predictions.prediction_run(prediction_id=pk)
    rate = len(ids) / (time.perf_counter() - started)
    _check_done(ids)
    return upload_rate, rate


def _pool_process(ids: list[int], batch_size: int, ready: Any, go: Any, peaks: Any) -> None:
    """One pool process of a prefork worker: set up and warm up like worker_process_init,
    then run its share of the tasks."""
    import django

    django.setup()
    from django.conf import settings

    import classifier.services.predictions as predictions
    from classifier.inference.pipeline import get_pipeline
    from training.registry import active_version

    _worker_setup(batch_size)
    settings.CXR = {**settings.CXR, "INFERENCE_THREADS": 1}
    get_pipeline(active_version().artifact_dir, runtime=settings.CXR["INFERENCE_RUNTIME"], threads=1).warm_up()
    ready.release()
    go.wait()
    for pk in ids:
        predictions.prediction_run(prediction_id=pk)
    peaks.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def throughput_pool(paths: list[Path], batch_size: int, processes: int) -> tuple[float, float]:
    """One worker with ``processes`` pool processes (``celery worker -c N``; one thread
    each), the broker's round-robin replaced by an even split of the task ids.
    Returns (images/s, peak resident MiB of the largest pool process)."""
    import multiprocessing

    from django.db import connections

    _worker_setup(batch_size)
    ids, _ = _upload_all(paths, f"P{processes}")
    connections.close_all()
    context = multiprocessing.get_context("spawn")  # fresh interpreters, as prefork children are
    ready, go, peaks = context.Semaphore(0), context.Event(), context.Queue()
    children = [
        context.Process(target=_pool_process, args=(ids[i::processes], batch_size, ready, go, peaks))
        for i in range(processes)
    ]
    for child in children:
        child.start()
    for _ in children:
        ready.acquire()
    started = time.perf_counter()
    go.set()
    for child in children:
        child.join()
    rate = len(ids) / (time.perf_counter() - started)
    if any(child.exitcode for child in children):
        sys.exit("a pool process failed")
    _check_done(ids)
    return rate, max(peaks.get() for _ in children)


def model_stage(paths: list[Path], artifact_dir: str, runtime: str) -> list[float]:
    from classifier.inference.pipeline import InferencePipeline

    pipeline = InferencePipeline(artifact_dir, runtime=runtime, heatmap=False, threads=1)
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
    parser.add_argument(
        "--processes",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="pool processes for the prefork-worker throughput (default: CPUs)",
    )
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
    print(
        f"model {version} ({version.architecture}, {version.input_size}px), {len(paths)} images, {os.cpu_count()} CPUs"
    )
    from django.conf import settings

    print(f"inference threads per worker process: {settings.CXR['INFERENCE_THREADS']} (CXR_INFERENCE_THREADS)")
    stages, rate = latency(paths)
    print(f"latency, one image at a time (file -> prediction row with heatmap): {rate:.1f} images/s")
    for name in ("upload", "decode", "preprocess", "model", "heatmap", "encode", "store", "total", "end_to_end"):
        print(row(name, stages.get(name, [])))
    upload_rate, worker_rate = throughput(paths, batch_size=args.batch_size)
    both = 1 / (1 / upload_rate + 1 / worker_rate)
    print(
        f"throughput, one worker process draining the queue in batches of {args.batch_size}: {worker_rate:.1f} images/s"
    )
    print(
        f"  uploads (web process work, stored + checksummed + queued): {upload_rate:.1f} images/s; "
        f"upload and worker in one process, one after the other: {both:.1f} images/s"
    )
    pool_rate, pool_peak = throughput_pool(paths, args.batch_size, args.processes)
    print(
        f"throughput, one worker with {args.processes} pool processes (celery -c {args.processes}, "
        f"1 thread each): {pool_rate:.1f} images/s; peak resident memory per pool process "
        f"{pool_peak:.0f} MiB"
    )
    tflite = model_stage(paths, version.artifact_dir, "tflite")
    keras_ms = model_stage(paths, version.artifact_dir, "keras")
    print("model stage by runtime (batch of 1):")
    print(row("tflite", tflite))
    print(row("keras", keras_ms))
    base = baseline(paths, version.artifact_dir, version.input_size)
    print(f"baseline (Keras in-process, model.predict per image, no heatmap): {base:.1f} images/s")
    print(
        f"throughput ratio with heatmap / baseline: one worker process {worker_rate / base:.2f}x, "
        f"one worker with {args.processes} pool processes {pool_rate / base:.2f}x "
        f"(upload + worker in one process: {both / base:.2f}x; one image at a time: {rate / base:.2f}x)"
    )
    print(
        f"peak resident memory of this process (worker path + Keras for the baseline): "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
