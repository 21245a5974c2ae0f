"""Benchmark decoding and preprocessing over the real sample; prints numbers, asserts nothing.

Usage (from the project root)::

    .venv/bin/python benchmarks/preprocess.py [--limit N] [--data-dir PATH] [--tracemalloc]

Reports p50/p95/max milliseconds per stage (decode; for DICOM also parse, pixel
decode and LUTs separately; then each preprocessing stage) and per image, the lung
crop fallback rate, and peak memory (process max RSS; with --tracemalloc, the peak
Python/numpy allocation of one image's decode + preprocess, which slows the run).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classifier.imaging import PreprocessConfig, decode_bytes, preprocess, preprocess_with_stages
from classifier.imaging.datapaths import data_dir
from classifier.imaging.dicom import apply_luts, read_dataset
from classifier.imaging.limits import DEFAULT_LIMITS


def sample_files(root: Path, limit: int | None) -> list[Path]:
    """Every cxr/ image (or an evenly spaced ``limit`` of them) plus all DICOMs."""
    images = sorted(p for p in (root / "cxr").rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if limit is not None and limit < len(images):
        images = [images[i] for i in np.linspace(0, len(images) - 1, limit).astype(int)]
    return images + sorted((root / "dicom").glob("*.dcm"))


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def time_dicom_parts(data: bytes, times: dict[str, list[float]]) -> None:
    """Parse, pixel decode and LUTs timed apart (the decode path, step by step)."""
    start = time.perf_counter()
    ds = read_dataset(data, DEFAULT_LIMITS)
    times["dicom: parse + checks"].append(_ms(start))
    start = time.perf_counter()
    stored = ds.pixel_array
    times["dicom: pixel decode"].append(_ms(start))
    start = time.perf_counter()
    apply_luts(stored, ds)
    times["dicom: LUTs"].append(_ms(start))


def run(files: list[Path], config: PreprocessConfig) -> tuple[dict[str, list[float]], dict[str, int]]:
    times: dict[str, list[float]] = defaultdict(list)
    fallbacks: dict[str, int] = defaultdict(int)
    for path in files:
        data = path.read_bytes()
        start = time.perf_counter()
        decoded = decode_bytes(data)
        times[f"decode ({decoded.format})"].append(_ms(start))
        if decoded.format == "DICOM":
            time_dicom_parts(data, times)
        _, reports = preprocess_with_stages(decoded.pixels, config)
        for report in reports:
            times[report.name].append(report.elapsed_ms)
            if report.name == "lung_crop":
                fallbacks[str(report.summary.get("reason") or "crop used")] += 1
        start = time.perf_counter()
        decoded = decode_bytes(data)
        preprocess(decoded.pixels, config)
        times["per image: decode + preprocess"].append(_ms(start))
    return times, fallbacks


def traced_peak_mib(path: Path, config: PreprocessConfig) -> float:
    tracemalloc.start()
    preprocess(decode_bytes(path.read_bytes()).pixels, config)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def report(
    times: dict[str, list[float]], fallbacks: dict[str, int], files: list[Path], config: PreprocessConfig, trace: bool
) -> None:
    print(f"{len(files)} files, config {config.to_dict()}")
    print(f"{'stage':34s} {'n':>5s} {'p50 ms':>9s} {'p95 ms':>9s} {'max ms':>9s}")
    for name, values in times.items():
        arr = np.asarray(values)
        print(f"{name:34s} {arr.size:5d} {np.percentile(arr, 50):9.2f} {np.percentile(arr, 95):9.2f} {arr.max():9.2f}")
    total = sum(fallbacks.values()) or 1
    print(
        "lung crop outcome: "
        + ", ".join(f"{k} {v} ({100 * v / total:.0f}%)" for k, v in sorted(fallbacks.items(), key=lambda kv: -kv[1]))
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS (whole process): {rss:.0f} MiB")
    if trace:
        largest = max(files, key=lambda p: p.stat().st_size)
        print(f"tracemalloc peak for largest file {largest.name}: {traced_peak_mib(largest, config):.1f} MiB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="use N evenly spaced cxr images")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: data_dir()")
    parser.add_argument("--tracemalloc", action="store_true", help="also trace peak allocation")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # pydicom's warnings about odd but readable files
    root = args.data_dir or data_dir()
    files = sample_files(root, args.limit)
    config = PreprocessConfig()
    times, fallbacks = run(files, config)
    report(times, fallbacks, files, config, args.tracemalloc)


if __name__ == "__main__":
    main()
