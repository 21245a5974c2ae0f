"""From labelled items to a complete candidate artifact directory.

train (resumable) -> temperature scaling on validation -> operating threshold on
validation for the target sensitivity -> validation/test/per-source metrics -> plots ->
model card -> artifact (weights, TFLite export with a parity check, configs, sha256s).
TensorFlow is imported inside functions only.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from training.evaluation import (evaluate_predictions, fit_temperature, plot_confusion_matrix, plot_reliability,
                                 plot_roc, plot_training_curves, threshold_for_sensitivity)
from training.evaluation.calibration import apply_temperature


@dataclass
class CandidateBuild:
    history: dict[str, list[float]]
    snapshot: dict[str, Any]
    metrics: dict[str, Any]


@dataclass
class Arrays:
    x: np.ndarray          # uint8 (n, h, w, c)
    y: np.ndarray          # soft targets (n, k)
    items: list[Any]       # the training.services.runs.Item of each row


def _load(items: Sequence[Any], labels: list[str], config: Any) -> Arrays:
    from training.targets import targets
    from training.trainers.data import PreprocessedCache

    cache = PreprocessedCache(Path(settings.VAR_DIR) / "preprocessed-cache", workers=2)
    result = cache.load([str(item.path) for item in items], config)
    kept = [items[i] for i in result.indices]
    return Arrays(x=result.images, y=targets(labels, [item.label for item in kept]), items=kept)


def snapshot(splits: dict[str, list[Any]]) -> dict[str, Any]:
    """Which images trained and validated this version, and a hash of that list."""
    keys = {name: sorted(item.key for item in items) for name, items in splits.items()}
    digest = hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()
    counts = {name: dict(Counter(f"{item.source}/{item.label}" for item in items)) for name, items in splits.items()}
    return {"sha256": digest, "image_keys": keys, "counts": counts}


def group_balance(items: Sequence[Any], groups: dict[str, str], *, seed: int) -> np.ndarray:
    """Row indices that balance normal vs abnormal within each domain group, by oversampling.

    ``groups`` maps a source to a group (e.g. pediatric vs adult collections); unmapped
    sources are their own group. In the public data every adult image is far more often
    abnormal than normal, so without this a model can learn "adult anatomy -> disease";
    within each group the two binary classes get equal weight. Groups with only one
    binary class are kept as they are.
    """
    rng = np.random.default_rng(seed)
    cells: dict[tuple[str, bool], list[int]] = {}
    for index, item in enumerate(items):
        cells.setdefault((groups.get(item.source, item.source), item.label != "NORMAL"), []).append(index)
    rows: list[int] = []
    for group in sorted({g for g, _ in cells}):
        normal, abnormal = cells.get((group, False), []), cells.get((group, True), [])
        if not normal or not abnormal:
            rows += normal + abnormal
            continue
        target = max(len(normal), len(abnormal))
        for cell in (normal, abnormal):
            rows += cell * (target // len(cell)) + list(rng.choice(cell, target % len(cell), replace=False))
    return np.sort(np.asarray(rows, dtype=np.int64))


def _logits(model: Any, x_uint8: np.ndarray) -> np.ndarray:
    out = [model.predict_on_batch(x_uint8[i:i + 64].astype(np.float32) / 255.0) for i in range(0, len(x_uint8), 64)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 0))


def build_candidate(*, spec: dict[str, Any], splits: dict[str, list[Any]], workdir: Path, artifact_dir: Path,
                    progress: Callable[[dict], None] | None = None) -> CandidateBuild:
    """Train and describe one candidate; ``artifact_dir`` must not exist yet."""
    import keras

    from classifier.imaging.preprocess import PreprocessConfig
    from training.trainers.export import write_artifact
    from training.trainers.train import TrainSpec, train

    train_spec, config = TrainSpec.from_dict(spec["train"]), PreprocessConfig.from_dict(spec["preprocess"])
    labels = list(train_spec.labels)
    data = {name: _load(items, labels, config) for name, items in splits.items() if items}
    rows = np.arange(len(data["train"].items))
    if spec.get("balance_groups"):
        rows = group_balance(data["train"].items, spec["balance_groups"], seed=train_spec.seed)
    outcome = train(train_spec, x_train=data["train"].x[rows], y_train=data["train"].y[rows], x_val=data["val"].x,
                    y_val=data["val"].y, workdir=workdir, progress=progress)
    model = keras.saving.load_model(outcome.model_path, compile=False)
    logits = {name: _logits(model, arrays.x) for name, arrays in data.items()}
    val = data["val"]
    in_schema = np.array([item.label in labels for item in val.items])
    y_idx = np.array([labels.index(item.label) for item in val.items if item.label in labels])
    temperature = fit_temperature(logits["val"][in_schema], y_idx)
    probs = {name: apply_temperature(value, temperature) for name, value in logits.items()}
    normal = labels.index("NORMAL")
    y_abn = np.array([item.label != "NORMAL" for item in val.items])
    chosen = threshold_for_sensitivity(y_abn, 1.0 - probs["val"][:, normal], target=spec["target_sensitivity"])
    # A hair below the chosen validation score: served scores are float32, so a case sitting
    # exactly on the boundary must not flip to "not flagged" through rounding.
    threshold = max(0.0, float(chosen["threshold"]) - 1e-6)
    metrics = {name: evaluate_predictions([item.label for item in arrays.items], probs[name], labels,
                                          threshold=threshold, sources=[item.source for item in arrays.items])
               for name, arrays in data.items() if name != "train"}
    metrics["training"] = {"seconds": round(outcome.seconds, 1), "epochs_run": outcome.epochs_run,
                           "best_epoch": outcome.best_epoch, "stopped_early": outcome.stopped_early}
    metrics["threshold_selection"] = chosen
    snap = snapshot(splits)
    thresholds = {"abnormal": threshold, "temperature": float(temperature),
                  "target_sensitivity": spec["target_sensitivity"]}
    card = model_card(spec=spec, metrics=metrics, snap=snap, thresholds=thresholds)
    write_artifact(artifact_dir, model=model, preprocess_config=config, labels=labels, thresholds=thresholds,
                   metrics=metrics, model_card_md=card,
                   extra={"hyperparameters": {"architecture": train_spec.architecture, "run_spec": spec},
                          "data_snapshot": {"sha256": snap["sha256"], "counts": snap["counts"]}},
                   parity_x=val.x[:8].astype(np.float32) / 255.0)
    _add_plots(artifact_dir, outcome.history, val, probs["val"], labels, threshold, metrics["val"])
    return CandidateBuild(history=outcome.history, snapshot=snap, metrics=metrics)


def _add_plots(artifact_dir: Path, history: dict, val: Arrays, probs: np.ndarray, labels: list[str],
               threshold: float, val_metrics: dict) -> None:
    """Write the plots into the artifact and list them in its manifest."""
    plots = artifact_dir / "plots"
    y_abn = np.array([item.label != "NORMAL" for item in val.items])
    p_abn = 1.0 - probs[:, labels.index("NORMAL")]
    multiclass = val_metrics["multiclass"]
    written = [
        plot_training_curves(history, plots / "training_curves.png"),
        plot_roc(y_abn, p_abn, plots / "roc.png", operating_threshold=threshold, auc=val_metrics["binary"]["auc"]),
        plot_confusion_matrix(np.asarray(multiclass["confusion_matrix"]), multiclass["row_labels"],
                              multiclass["col_labels"], plots / "confusion_matrix.png"),
        plot_reliability(y_abn, p_abn, plots / "reliability.png"),
    ]
    manifest_path = artifact_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for path in written:
        manifest["files"][path.relative_to(artifact_dir).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True))


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def model_card(*, spec: dict, metrics: dict, snap: dict, thresholds: dict) -> str:
    """A short, honest model card in Markdown."""
    lines = ["# Chest X-ray triage model", "",
             "**Decision support, not a diagnosis.** Every result must be read by a clinician.", "",
             "## Intended use",
             "Prioritise adult and pediatric frontal chest radiographs (PA/AP) for reading, and flag likely "
             "pneumonia (bacterial, viral, COVID-19). Not for lateral views, CT, or as a stand-alone diagnosis.", "",
             "## Data", f"Training snapshot sha256 `{snap['sha256'][:16]}`; images per split (source/label):", ""]
    for split, counts in snap["counts"].items():
        lines.append(f"- {split}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    lines += ["", "## Operating point",
              f"Abnormal if p(abnormal) >= {thresholds['abnormal']:.4f}, chosen on validation for sensitivity "
              f">= {thresholds['target_sensitivity']}; temperature {thresholds['temperature']:.3f}.", "",
              "## Metrics (binary: abnormal vs normal)", "",
              "| split | n | sensitivity | specificity | AUC | 4-class accuracy | ECE |", "|---|---|---|---|---|---|---|"]
    for split in ("val", "test"):
        if split in metrics:
            b, m = metrics[split]["binary"], metrics[split]["multiclass"]
            lines.append(f"| {split} | {metrics[split]['n']} | {_fmt(b['sensitivity'])} | {_fmt(b['specificity'])} | "
                         f"{_fmt(b['auc'])} | {_fmt(m['accuracy'])} | {_fmt(metrics[split]['calibration']['ece'])} |")
    lines += ["", "Per source (validation and test), binary sensitivity / specificity:", ""]
    for split in ("val", "test"):
        for source, figures in sorted((metrics.get(split, {}).get("per_source") or {}).items()):
            lines.append(f"- {split} {source}: n={figures.get('n')}, sens {_fmt(figures.get('sensitivity'))}, "
                         f"spec {_fmt(figures.get('specificity'))}")
    lines += ["", "## Limits",
              "- Trained on public collections where source, age and view are confounded with the label; "
              "figures on the sample's own splits flatter the model. Held-out, other-hospital performance is lower.",
              "- Bacterial and viral pneumonia come only from one pediatric hospital; adult non-COVID pneumonia "
              "only from NIH images with report-mined labels.",
              "- Probabilities are temperature-calibrated on validation data of the same sources.", ""]
    return "\n".join(lines)
