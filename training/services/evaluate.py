"""Evaluating a registered model version on labelled files through the served path.

Every figure here comes from the same InferencePipeline that workers use (decode ->
preprocess with the version's own config -> exported runtime model -> calibrated
softmax), so what is measured is what is deployed.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from classifier.imaging import ImagingError
from classifier.services.predictions import run_each
from training.evaluation import evaluate_predictions
from training.services.datasets import IMAGE_SUFFIXES


@dataclass(frozen=True)
class LabelledFile:
    path: Path
    label: str
    source: str = ""


def files_from_label_folders(root: Path) -> list[LabelledFile]:
    """DIR/<LABEL>/files (deeper folders allowed: the parent folder is the label).

    When a manifest.csv with ``file`` and ``patient_id`` columns sits in DIR or its parent
    (as in the shared sample), the patient_id prefix names the source for per-source figures.
    """
    root = root.resolve()
    sources = _manifest_sources(root)
    return [
        LabelledFile(path=p, label=p.parent.name, source=sources.get(p, ""))
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    ]


def labels_outside_schema(files: Sequence[LabelledFile], schema: Sequence[str]) -> dict[str, int]:
    """Label folder names that are not in ``schema``, with how many files each holds.

    A folder is its files' ground truth, so a misspelt or foreign folder (``NORMALS``, a
    folder of DICOMs) would be scored as abnormal: the caller refuses the set instead."""
    allowed = set(schema)
    unknown: dict[str, int] = {}
    for item in files:
        if item.label not in allowed:
            unknown[item.label] = unknown.get(item.label, 0) + 1
    return dict(sorted(unknown.items()))


def _manifest_sources(root: Path) -> dict[Path, str]:
    for base in (root, root.parent):
        manifest = base / "manifest.csv"
        if manifest.is_file():
            with manifest.open(newline="") as handle:
                return {
                    (base / row["file"]).resolve(): row["patient_id"].split(":", 1)[0]
                    for row in csv.DictReader(handle)
                    if row.get("file") and row.get("patient_id")
                }
    return {}


def snapshot_hash(files: Sequence[LabelledFile]) -> str:
    """A fingerprint of an evaluation set: which files, with which labels."""
    digest = hashlib.sha256()
    for item in sorted(files, key=lambda f: str(f.path)):
        digest.update(f"{item.path.name}|{item.label}\n".encode())
    return digest.hexdigest()


def predict_files(
    artifact_dir: str | Path, files: Sequence[LabelledFile], *, runtime: str = "tflite", batch_size: int = 16
) -> tuple[np.ndarray, list[LabelledFile], list[tuple[str, str]]]:
    """Probabilities (n, k) for the files that decode; failures as (file name, reason)."""
    from classifier.inference.pipeline import InferencePipeline

    pipeline = InferencePipeline(artifact_dir, runtime=runtime, heatmap=False)
    probs, kept, failed = [], [], []
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        payloads = [item.path.read_bytes() for item in chunk]
        for item, result in zip(chunk, run_each(pipeline, payloads, batch_size=batch_size), strict=False):
            if isinstance(result, ImagingError):
                failed.append((item.path.name, result.message))
            else:
                probs.append([result.probabilities[label] for label in pipeline.labels])
                kept.append(item)
    return np.asarray(probs, dtype=np.float64).reshape(-1, len(pipeline.labels)), kept, failed


def gradcam_lung_mass(
    artifact_dir: str | Path, files: Sequence[LabelledFile], *, runtime: str = "tflite", limit: int = 200
) -> dict[str, Any]:
    """Share of the served heatmap's mass inside the lung field, on (up to ``limit``)
    abnormal files: where the model looks when it calls disease. The lung field is the
    default lung-field network's, mapped through the version's own crop (so versions
    with and without a lung-field crop are scored alike)."""
    from classifier.imaging.decode import decode_bytes
    from classifier.imaging.lungfield import DEFAULT_MODEL, model_sha256
    from classifier.imaging.preprocess import preprocess_with_lung_field
    from classifier.inference.pipeline import InferencePipeline
    from training.evaluation.attention import lung_mass_share, summarise_lung_mass

    pipeline = InferencePipeline(artifact_dir, runtime=runtime, heatmap=True)
    sha = model_sha256(DEFAULT_MODEL)
    shares: list[float | None] = []
    for item in [f for f in files if f.label != "NORMAL"][:limit]:
        data = item.path.read_bytes()
        try:
            result = pipeline.run(data)
            _, lung, found = preprocess_with_lung_field(
                decode_bytes(data).pixels, pipeline.config, lung_model=DEFAULT_MODEL, lung_model_sha256=sha
            )
        except ImagingError:
            continue
        shares.append(lung_mass_share(result.heatmap_raw, lung) if found and result.heatmap_raw is not None else None)
    return {**summarise_lung_mass(shares), "lung_model": DEFAULT_MODEL}


def evaluate_files(
    artifact_dir: str | Path,
    files: Sequence[LabelledFile],
    *,
    threshold: float,
    labels: list[str],
    runtime: str = "tflite",
    n_bootstrap: int = 1000,
    lung_mass: bool = False,
) -> dict[str, Any]:
    """Binary, per-class, calibration and per-source figures for ``files`` (with
    ``lung_mass``, also :func:`gradcam_lung_mass` under ``gradcam_lung_mass``)."""
    probs, kept, failed = predict_files(artifact_dir, files, runtime=runtime)
    sources = [item.source or "unknown" for item in kept]
    report = evaluate_predictions(
        [item.label for item in kept],
        probs,
        labels,
        threshold=threshold,
        sources=sources if any(s != "unknown" for s in sources) else None,
        n_bootstrap=n_bootstrap,
    )
    report["failed_files"] = [{"file": name, "reason": reason} for name, reason in failed]
    report["snapshot_sha256"] = snapshot_hash(files)
    if lung_mass:
        report["gradcam_lung_mass"] = gradcam_lung_mass(artifact_dir, kept, runtime=runtime)
    return report
