"""From labelled items to a complete candidate artifact directory (Django-free).

Two ways to choose when to stop, the temperature and the operating threshold:

* **On unseen sources** (the run spec lists ``selection.holdout_folds``, e.g.
  ``[["nih", "hannover"], ["jsrt", "ieee8023", "cxnet"]]``): one model per fold is trained
  without the fold's sources and early-stopped on them; the pooled predictions of those
  models on sources they never saw give the temperature and the threshold, and the
  median best epoch fixes how long the final model, trained on every source, runs.
  A new hospital is a source the model never saw; a split of the same collections
  flatters (see README, "The shipped model").
* **On the validation split** (no folds): early stopping, temperature and threshold on
  the patient-disjoint validation split, as before this rule existed.

Either way the candidate is then evaluated on the validation and test splits (and the
unseen-source predictions are reported per source with AUC confidence intervals), plots
and a model card are written, and the artifact (weights, TFLite export with a parity
check, configs, sha256s) is written by ``training.trainers.export``. TensorFlow is
imported inside functions only.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from classifier.inference.scores import binary_logit, columns, served_probabilities
from training.evaluation import (
    binary_metrics,
    evaluate_predictions,
    fit_platt,
    fit_temperature,
    plot_confusion_matrix,
    plot_reliability,
    plot_roc,
    plot_training_curves,
    roc_auc,
    threshold_for_sensitivity,
)
from training.evaluation.calibration import apply_temperature
from training.trainers.model_card import cause_validation, model_card

Progress = Callable[[dict[str, Any]], None]


class TrainingItem(Protocol):
    """What the pipeline needs of an example (``training.services.Item``, ``shared_data.Record``)."""

    @property
    def key(self) -> str: ...
    @property
    def path(self) -> Path: ...
    @property
    def label(self) -> str: ...
    @property
    def source(self) -> str: ...


@dataclass
class CandidateBuild:
    history: dict[str, list[float]]
    snapshot: dict[str, Any]
    metrics: dict[str, Any]


@dataclass
class Arrays:
    x: np.ndarray  # uint8 (n, h, w, c)
    y: np.ndarray  # soft targets (n, k)
    items: list[Any]

    def subset(self, mask: np.ndarray) -> Arrays:
        rows = np.nonzero(mask)[0]
        return Arrays(self.x[rows], self.y[rows], [self.items[i] for i in rows])

    @property
    def labels(self) -> list[str]:
        return [item.label for item in self.items]

    @property
    def sources(self) -> list[str]:
        return [item.source for item in self.items]


def load_arrays(items: Sequence[Any], labels: list[str], config: Any, cache_dir: Path) -> Arrays:
    """Preprocessed uint8 images (through the disk cache) and soft targets of ``items``."""
    from training.trainers.data import PreprocessedCache
    from training.trainers.targets import targets

    result = PreprocessedCache(cache_dir, workers=2).load([str(item.path) for item in items], config)
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

    The rule of versions trained with ``balancing="class_weights"`` (the shipped v2); runs
    with ``balancing="source_label"`` use ``training.trainers.balance`` instead.
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


def logits_of(model: Any, x_uint8: np.ndarray) -> np.ndarray:
    """Model logits (float64) for uint8 images, in batches of 64."""
    out = [model.predict_on_batch(x_uint8[i : i + 64].astype(np.float32) / 255.0) for i in range(0, len(x_uint8), 64)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 0))


def _fit(
    spec: Any, run_spec: dict[str, Any], train: Arrays, val: Arrays, workdir: Path, progress: Progress | None
) -> Any:
    """Train one model on ``train``, early-stopping on ``val``; returns the TrainOutcome."""
    from training.trainers.balance import cell_probabilities
    from training.trainers.train import train as train_model

    x, y, sample_p = train.x, train.y, None
    groups_of = run_spec.get("balance_groups") or {}
    if spec.balancing == "source_label":
        sample_p = cell_probabilities(
            [groups_of.get(s, s) for s in train.sources],
            train.sources,
            train.labels,
            group_weights=run_spec.get("group_weights"),
        )
    elif groups_of:
        rows = group_balance(train.items, groups_of, seed=spec.seed)
        x, y = x[rows], y[rows]
    return train_model(
        spec,
        x_train=x,
        y_train=y,
        x_val=val.x,
        y_val=val.y,
        workdir=workdir,
        progress=progress,
        sample_p=sample_p,
        sources=train.sources if spec.source_adversarial else None,
    )


def schema_rows(image_labels: Sequence[str], labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Which images have a label of the schema ``labels`` (PNEUMONIA, cause unknown, has
    not), and those images' class indices."""
    mask = np.array([label in labels for label in image_labels], dtype=bool)
    return mask, np.array([labels.index(label) for label in image_labels if label in labels], dtype=np.int64)


def _in_schema(arrays: Arrays, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return schema_rows(arrays.labels, labels)


def equal_source_weights(sources: Sequence[str], image_labels: Sequence[str]) -> np.ndarray:
    """One weight per image so that every source counts equally among the abnormal images
    and among the normal ones (513 web COVID-19 images no more than 22 Pneumocystis ones)."""
    keys = [(source, label != "NORMAL") for source, label in zip(sources, image_labels, strict=True)]
    counts = Counter(keys)
    return np.array([1.0 / counts[key] for key in keys], dtype=np.float64)


def source_weights(arrays: Arrays) -> np.ndarray:
    """:func:`equal_source_weights` of the arrays' images."""
    return equal_source_weights([item.source for item in arrays.items], [item.label for item in arrays.items])


def _calibrate(
    logits: np.ndarray, arrays: Arrays, labels: list[str], target: float, *, per_source: bool = False
) -> tuple[dict[str, float], dict, float]:
    """The served calibration of ``logits`` (``classifier.inference.scores``), the threshold
    for ``target`` sensitivity on its p(abnormal), and that threshold a hair lower: served
    scores are float32, so a case sitting exactly on the boundary must not flip to "not
    flagged" through rounding.

    The calibration: a temperature for the suggested cause, fitted on the abnormal images
    of known cause over the abnormal logits only, and a logistic calibration of the binary
    logit on every image. With ``per_source`` every source counts equally among the
    abnormal and among the normal images (:func:`source_weights`), in the logistic fit and
    in the sensitivity the threshold is chosen for.
    """
    normal, abnormal = columns(labels)
    in_schema, idx = _in_schema(arrays, labels)
    cause_logits = logits[in_schema][idx != normal][:, abnormal]
    cause_idx = np.array([abnormal.index(i) for i in idx[idx != normal]], dtype=np.int64)
    temperature = float(fit_temperature(cause_logits, cause_idx)) if cause_idx.size else 1.0
    y_abn = np.array([label != "NORMAL" for label in arrays.labels])
    weights = source_weights(arrays) if per_source else None
    # Both classes are needed for the logistic fit; a one-class set keeps the model's own odds.
    scale, bias = (
        fit_platt(binary_logit(logits, labels), y_abn, weights=weights) if 0 < y_abn.sum() < len(y_abn) else (1.0, 0.0)
    )
    calibration = {"temperature": temperature, "abnormal_scale": scale, "abnormal_bias": bias}
    probs = served_probabilities(logits, labels, calibration)
    chosen = threshold_for_sensitivity(y_abn, 1.0 - probs[:, normal], target=target, weights=weights)
    chosen["weighting"] = "each source equally" if per_source else "each image equally"
    return calibration, chosen, max(0.0, float(chosen["threshold"]) - 1e-6)


def unseen_source_report(
    arrays: Arrays, probs: np.ndarray, labels: list[str], threshold: float, *, n_bootstrap: int = 1000
) -> dict[str, Any]:
    """Pooled and per-source figures of predictions on sources the predicting model never saw.

    Per source: n, AUC with a bootstrap 95 % CI where both classes exist, sensitivity
    and specificity at ``threshold`` where defined, 4-class accuracy.
    """
    pooled = evaluate_predictions(arrays.labels, probs, labels, threshold=threshold, n_bootstrap=n_bootstrap)
    y = np.array([label != "NORMAL" for label in arrays.labels])
    score = 1.0 - probs[:, labels.index("NORMAL")]
    per_source: dict[str, Any] = {}
    for source in sorted(set(arrays.sources)):
        mask = np.array([s == source for s in arrays.sources])
        figures = binary_metrics(y[mask], score[mask], threshold, n_bootstrap=n_bootstrap)
        sub = arrays.subset(mask)
        in_schema, idx = _in_schema(sub, labels)
        accuracy = float((probs[mask][in_schema].argmax(1) == idx).mean()) if idx.size else None
        per_source[source] = {
            "n": int(mask.sum()),
            "n_abnormal": int(y[mask].sum()),
            "auc": figures["auc"],
            "auc_ci": (figures.get("ci") or {}).get("auc"),
            "sensitivity": figures["sensitivity"],
            "specificity": figures["specificity"],
            "accuracy_4class": accuracy,
        }
    return {"pooled": pooled, "per_source": per_source}


@dataclass
class Selection:
    """What the source-held-out folds decided."""

    epochs: int
    calibration: dict[str, float]
    threshold: float
    chosen: dict[str, Any]
    report: dict[str, Any]
    folds: list[dict[str, Any]]
    arrays: Arrays
    logits: np.ndarray


def select_on_unseen_sources(
    spec: Any,
    run_spec: dict[str, Any],
    pool: Arrays,
    folds: list[list[str]],
    workdir: Path,
    progress: Progress | None = None,
) -> Selection:
    """Train one model per fold without the fold's sources, early-stopped on them.

    ``pool`` holds every image that may train or validate (not the test split). Each
    fold's held-out images are predicted by the fold model only, so the pooled logits
    are all of models that never saw that source.
    """
    labels = list(spec.labels)
    held_logits, held_rows, reports = [], [], []
    for number, fold in enumerate(folds):
        held = np.array([s in fold for s in pool.sources])
        if not held.any() or held.all():
            raise ValueError(f"fold {fold} holds out {'no' if not held.any() else 'every'} image")
        started = time.monotonic()
        outcome = _fit(
            spec,
            run_spec,
            pool.subset(~held),
            pool.subset(held),
            workdir / f"fold-{number + 1}",
            # The final model on every source is one more fit after the folds.
            _staged(
                progress,
                f"fold {number + 1} of {len(folds)} (without {', '.join(fold)})",
                fit=number + 1,
                fits=len(folds) + 1,
            ),
        )
        import keras

        model = keras.saving.load_model(outcome.model_path, compile=False)
        held_logits.append(logits_of(model, pool.x[held]))
        held_rows.append(np.nonzero(held)[0])
        held_arrays = pool.subset(held)
        fold_probs = apply_temperature(held_logits[-1], 1.0)
        reports.append(
            {
                "holdout": fold,
                # The fold model's own ranking of its held-out images (pooling scores of
                # different models mixes their scales, so the pooled AUC is lower).
                "auc": roc_auc(
                    np.array([label != "NORMAL" for label in held_arrays.labels]),
                    1.0 - fold_probs[:, labels.index("NORMAL")],
                ),
                "best_epoch": outcome.best_epoch,
                "epochs_run": outcome.epochs_run,
                "seconds": round(time.monotonic() - started, 1),
                "n_train": int((~held).sum()),
                "n_holdout": int(held.sum()),
            }
        )
    rows = np.concatenate(held_rows)
    arrays = Arrays(pool.x[rows], pool.y[rows], [pool.items[i] for i in rows])
    logits = np.concatenate(held_logits)
    calibration, chosen, threshold = _calibrate(logits, arrays, labels, run_spec["target_sensitivity"], per_source=True)
    probs = served_probabilities(logits, labels, calibration)
    epochs = int(np.median([r["best_epoch"] for r in reports]))
    return Selection(
        epochs=max(1, epochs),
        calibration=calibration,
        threshold=threshold,
        chosen=chosen,
        report=unseen_source_report(arrays, probs, labels, threshold),
        folds=reports,
        arrays=arrays,
        logits=logits,
    )


def _staged(progress: Progress | None, stage: str, *, fit: int = 1, fits: int = 1) -> Progress | None:
    """Tag epoch records with their stage and which of the run's model fits they belong to,
    so the run page's progress covers every fit, not only the current one."""
    if progress is None:
        return None
    return lambda record: progress({**record, "stage": stage, "fit": fit, "fits": fits})


def _final_spec(spec: Any, epochs: int) -> Any:
    """The spec for the model trained on every source: ``epochs`` in total, no early stop,
    and the last epoch kept (not the one the sample's validation split scores best)."""
    patience = epochs + spec.fine_tune_epochs + 1
    if spec.fine_tune_epochs and epochs > spec.epochs:
        return replace(
            spec, fine_tune_epochs=epochs - spec.epochs, early_stopping_patience=patience, restore_best_epoch=False
        )
    # Too few epochs to reach fine-tuning: no fine-tuning epoch to average over either.
    return replace(
        spec,
        epochs=epochs,
        fine_tune_epochs=0,
        early_stopping_patience=patience,
        restore_best_epoch=False,
        weight_averaging=False,
    )


def build_candidate(
    *,
    spec: dict[str, Any],
    splits: dict[str, list[Any]],
    workdir: Path,
    artifact_dir: Path,
    cache_dir: Path,
    progress: Progress | None = None,
) -> CandidateBuild:
    """Train and describe one candidate; ``artifact_dir`` must not exist yet.

    ``splits``: "train" and "val" (required) and "test" lists of items (key, path,
    label, source). Progress records carry a ``stage`` ("fold 1 of 2 ...", "final model",
    "export", "evaluation") besides the epoch figures.
    """
    import keras

    from classifier.imaging.preprocess import PreprocessConfig
    from training.trainers.export import write_artifact
    from training.trainers.train import TrainSpec

    train_spec, config = TrainSpec.from_dict(spec["train"]), PreprocessConfig.from_dict(spec["preprocess"])
    labels = list(train_spec.labels)
    data = {name: load_arrays(items, labels, config, cache_dir) for name, items in splits.items() if items}
    pool = _concat(data["train"], data["val"])
    present = set(pool.sources)
    # A fold is usable when it holds out some, but not all, of the sources present.
    folds = [
        f for f in ((spec.get("selection") or {}).get("holdout_folds") or []) if present & set(f) and present - set(f)
    ]
    selection = None
    if folds:
        selection = select_on_unseen_sources(train_spec, spec, pool, folds, workdir / "selection", progress)
        outcome = _fit(
            _final_spec(train_spec, selection.epochs),
            spec,
            data["train"],
            data["val"],
            workdir / "final",
            _staged(progress, "final model (every source)", fit=len(folds) + 1, fits=len(folds) + 1),
        )
    else:
        outcome = _fit(train_spec, spec, data["train"], data["val"], workdir, _staged(progress, "training"))
    _report(progress, "evaluation", outcome)
    model = keras.saving.load_model(outcome.model_path, compile=False)
    logits = {name: logits_of(model, arrays.x) for name, arrays in data.items()}
    if selection is not None:
        # The operating point on every image no model of this run trained on: the fold models'
        # predictions on the sources they never saw, plus the final model's on the validation
        # patients of sources no fold held out; each source counts equally.
        held = {source for fold in folds for source in fold}
        rest = np.array([source not in held for source in data["val"].sources], dtype=bool)
        combined = _concat(selection.arrays, data["val"].subset(rest))
        combined_logits = np.concatenate([selection.logits, logits["val"][rest]])
        calibration, chosen, threshold = _calibrate(
            combined_logits, combined, labels, spec["target_sensitivity"], per_source=True
        )
        chosen["chosen_on"] = "unseen sources (fold models) + validation patients of sources never held out"
    else:
        calibration, chosen, threshold = _calibrate(logits["val"], data["val"], labels, spec["target_sensitivity"])
    probs = {name: served_probabilities(value, labels, calibration) for name, value in logits.items()}
    metrics: dict[str, Any] = {
        name: evaluate_predictions(arrays.labels, probs[name], labels, threshold=threshold, sources=arrays.sources)
        for name, arrays in data.items()
        if name != "train"
    }
    metrics["training"] = {
        "seconds": round(outcome.seconds, 1),
        "epochs_run": outcome.epochs_run,
        "best_epoch": outcome.best_epoch,
        "stopped_early": outcome.stopped_early,
    }
    metrics["threshold_selection"] = {"chosen_on": "validation split", **chosen}
    if selection is not None:
        # At the served calibration and threshold, so the card's figures are the product's.
        report = unseen_source_report(
            selection.arrays, served_probabilities(selection.logits, labels, calibration), labels, threshold
        )
        metrics["unseen_sources"] = {**report, "folds": selection.folds, "final_epochs": selection.epochs}
    metrics["gradcam_lung_mass"] = gradcam_lung_mass(model, data["val"], probs["val"], labels, config)
    snap = snapshot(splits)
    metrics["cause_validation"] = cause_validation(snap["counts"], spec.get("balance_groups") or {})
    thresholds = {"abnormal": threshold, **calibration, "target_sensitivity": spec["target_sensitivity"]}
    card = model_card(spec=spec, metrics=metrics, snap=snap, thresholds=thresholds)
    _report(progress, "export", outcome)
    val = data["val"]
    write_artifact(
        artifact_dir,
        model=model,
        preprocess_config=config,
        labels=labels,
        thresholds=thresholds,
        metrics=metrics,
        model_card_md=card,
        extra={
            "hyperparameters": {"architecture": train_spec.architecture, "run_spec": spec},
            "data_snapshot": {"sha256": snap["sha256"], "counts": snap["counts"]},
        },
        parity_x=val.x[:8].astype(np.float32) / 255.0,
        quantize=spec.get("export_quantization", "none"),
    )
    plotted = (
        (selection.arrays, served_probabilities(selection.logits, labels, calibration))
        if selection
        else (val, probs["val"])
    )
    add_plots(artifact_dir, outcome.history, plotted[0], plotted[1], labels, threshold)
    return CandidateBuild(history=outcome.history, snapshot=snap, metrics=metrics)


def gradcam_lung_mass(
    model: Any, arrays: Arrays, probs: np.ndarray, labels: list[str], config: Any, *, limit: int = 200
) -> dict[str, Any]:
    """Share of Grad-CAM mass inside the lung field on (up to ``limit``) abnormal images, for
    the class the product explains (the most probable abnormal one); the lung field is
    the default lung-field network's, mapped into the model's input."""
    from classifier.imaging.decode import decode_file
    from classifier.imaging.lungfield import DEFAULT_MODEL, model_sha256
    from classifier.imaging.preprocess import preprocess_with_lung_field
    from classifier.inference.gradcam import gradcam_batch
    from training.evaluation.attention import lung_mass_share, summarise_lung_mass

    abnormal = [i for i, label in enumerate(labels) if label != "NORMAL"]
    rows = [i for i, label in enumerate(arrays.labels) if label != "NORMAL"][:limit]
    sha = model_sha256(DEFAULT_MODEL)
    shares: list[float | None] = []
    for start in range(0, len(rows), 16):
        chunk = rows[start : start + 16]
        x = arrays.x[chunk].astype(np.float32) / 255.0
        maps = gradcam_batch(model, x, [max(abnormal, key=lambda k: probs[i][k]) for i in chunk])
        for i, heat in zip(chunk, maps, strict=True):
            _, lung, found = preprocess_with_lung_field(
                decode_file(str(arrays.items[i].path)).pixels, config, lung_model=DEFAULT_MODEL, lung_model_sha256=sha
            )
            shares.append(lung_mass_share(heat, lung) if found else None)
    return {**summarise_lung_mass(shares), "lung_model": DEFAULT_MODEL}


def _report(progress: Progress | None, stage: str, outcome: Any) -> None:
    if progress is not None:
        progress({"stage": stage, "epoch": outcome.epochs_run, "epochs": outcome.epochs_run})


def _concat(a: Arrays, b: Arrays) -> Arrays:
    return Arrays(np.concatenate([a.x, b.x]), np.concatenate([a.y, b.y]), a.items + b.items)


def add_plots(
    artifact_dir: Path, history: dict, arrays: Arrays, probs: np.ndarray, labels: list[str], threshold: float
) -> None:
    """Write the plots into the artifact and list them in its manifest (ROC, confusion and
    reliability of ``arrays``: the unseen-source predictions when the run had folds)."""
    plots = artifact_dir / "plots"
    y_abn = np.array([label != "NORMAL" for label in arrays.labels])
    p_abn = 1.0 - probs[:, labels.index("NORMAL")]
    report = evaluate_predictions(arrays.labels, probs, labels, threshold=threshold, n_bootstrap=0)
    multiclass = report["multiclass"]
    written = [
        plot_training_curves(history, plots / "training_curves.png"),
        plot_roc(y_abn, p_abn, plots / "roc.png", operating_threshold=threshold, auc=report["binary"]["auc"]),
        plot_confusion_matrix(
            np.asarray(multiclass["confusion_matrix"]),
            multiclass["row_labels"],
            multiclass["col_labels"],
            plots / "confusion_matrix.png",
        ),
        plot_reliability(y_abn, p_abn, plots / "reliability.png"),
    ]
    manifest_path = artifact_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for path in written:
        manifest["files"][path.relative_to(artifact_dir).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
