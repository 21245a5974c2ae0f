"""Microbenchmark of the inference core: prints latencies, asserts nothing.

    python benchmarks/inference_core.py ARTIFACT_DIR [--images N] [--threads T]

Reports p50/p90 per image for: Keras and TFLite model calls (batch 1), Grad-CAM, and
the whole pipeline (decode..heatmap) on real sample images from the shared data.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _percentiles(samples: list[float]) -> str:
    a = np.asarray(samples) * 1000.0
    return f"p50 {np.percentile(a, 50):7.1f} ms  p90 {np.percentile(a, 90):7.1f} ms"


def _time(fn, repeats: int) -> list[float]:
    fn()  # warm-up: tracing / interpreter allocation
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    from classifier.imaging.datapaths import data_dir
    from classifier.inference.gradcam import gradcam
    from classifier.inference.pipeline import InferencePipeline
    from classifier.inference.runtime import load_predictor

    files = sorted((data_dir() / "cxr" / "test").rglob("*.*"))[: args.images]
    blobs = [f.read_bytes() for f in files]
    pipe = InferencePipeline(args.artifact, runtime="tflite", threads=args.threads)
    x = pipe._prepare(blobs[0], {}, False).image[None]
    keras_p = load_predictor(args.artifact, "keras")
    lite_p = load_predictor(args.artifact, "tflite", num_threads=args.threads)
    n = args.images
    print(f"artifact {args.artifact}  input {lite_p.input_shape}  threads {args.threads}")
    print(f"keras  model batch 1   {_percentiles(_time(lambda: keras_p.predict_logits(x), n))}")
    print(f"tflite model batch 1   {_percentiles(_time(lambda: lite_p.predict_logits(x), n))}")
    batch8 = np.repeat(x, 8, axis=0)
    per = [t / 8 for t in _time(lambda: lite_p.predict_logits(batch8), n)]
    print(f"tflite model batch 8   {_percentiles(per)} (per image)")
    print(f"grad-cam               {_percentiles(_time(lambda: gradcam(pipe.keras_model, x[0]), n))}")
    totals = {}
    for blob in blobs:
        for stage, ms in pipe.run(blob).timings_ms.items():
            totals.setdefault(stage, []).append(ms / 1000.0)
    for stage, values in totals.items():
        print(f"pipeline {stage:13s} {_percentiles(values)}")


if __name__ == "__main__":
    main()
