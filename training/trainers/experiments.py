"""Django-free experiment CLI over the shared data, through the same stack as training runs.

    python -m training.trainers.experiments run    [--recipe default] [--set key=value] --out r.json [--artifact DIR]
    python -m training.trainers.experiments select [--recipe ...] [--set ...] --out r.json
    python -m training.trainers.experiments loso   --holdout nih [--recipe ...] [--set ...] --out r.json
    python -m training.trainers.experiments points --workdir W [--recipe ...] [--set ...] --out r.json

Splits: ``cxr/`` keeps its recorded train/val/test; ``cxr-train/`` and ``cxr-adult/`` are
training data (as the data README asks). Everything goes through ``training.trainers.candidate``
(loading, balancing, training, calibration, thresholds, metrics, artifact), the target
rule of ``training.trainers.targets`` and the metrics of ``training.evaluation``:

* ``run``: ``build_candidate`` exactly as a training run (source-held-out selection when the
  recipe has folds), reporting val, test and unseen-source figures; ``--artifact`` keeps it.
* ``select``: only the recipe's source-held-out folds, reporting the pooled and per-source
  figures of models on collections they never saw (the ablation measure).
* ``points``: no training; the fold models a ``select`` run left in ``--workdir`` (same
  recipe and ``--set``) re-scored on their held-out sources, and operating-point rules
  compared there (:func:`operating_point_rules`).
* ``loso``: train without one source for the recipe's fixed number of epochs (no early
  stopping on the held-out source), calibrate on the validation split of the other
  sources, and score every image of the held-out source.

``--set key=value`` (value JSON, else a string) edits the TrainSpec; ``pp.<key>`` the
preprocessing config; ``selection``/``balance_groups``/``group_weights`` the run spec.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from training.evaluation import apply_temperature, fit_temperature, roc_auc, threshold_for_sensitivity
from training.trainers.candidate import (
    _calibrate,
    _fit,
    build_candidate,
    equal_source_weights,
    load_arrays,
    logits_of,
    schema_rows,
    select_on_unseen_sources,
    unseen_source_report,
)
from training.trainers.data import temp_cache_dir
from training.trainers.recipes import DEFAULT_BALANCE_GROUPS, Recipe, get_recipe
from training.trainers.shared_data import Record, load_records
from training.trainers.train import TrainSpec

RUN_SPEC_KEYS = ("selection", "balance_groups", "group_weights")


def apply_overrides(recipe: Recipe, pairs: list[str]) -> tuple[Recipe, dict[str, Any]]:
    """The recipe with ``key=value`` edits applied, and run-spec edits apart."""
    spec, pp, run = recipe.spec.to_dict(), dict(recipe.preprocess), {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if key.startswith("pp."):
            pp[key[3:]] = value
        elif key.startswith("augment."):
            spec["augment"] = {**(spec["augment"] or {}), key[len("augment.") :]: value}
        elif key in RUN_SPEC_KEYS:
            run[key] = value
        elif key == "drop_squashed_copies":
            recipe = replace(recipe, drop_squashed_copies=bool(value))
        else:
            spec[key] = value
    if "input_size" in spec:
        pp["input_size"] = spec["input_size"]
    pp["channels"] = spec["channels"]
    if "selection" in run:
        recipe = replace(recipe, selection=run.pop("selection"))
    return replace(recipe, spec=TrainSpec.from_dict(spec), preprocess=pp), run


def run_spec(recipe: Recipe, extra: dict[str, Any]) -> dict[str, Any]:
    """The complete run spec a training run of ``recipe`` would store (no Django)."""
    return {
        "train": recipe.spec.to_dict(),
        "preprocess": recipe.preprocess,
        "target_sensitivity": 0.95,
        "views": [],
        "balance_groups": dict(extra.get("balance_groups", DEFAULT_BALANCE_GROUPS)),
        "group_weights": dict(extra.get("group_weights", {})),
        "selection": recipe.selection,
        "export_quantization": recipe.export_quantization,
        "val_fraction": 0.15,
    }


def splits_of(recipe: Recipe, records: list[Record]) -> dict[str, list[Record]]:
    usable = [r for r in records if not (recipe.drop_squashed_copies and r.squashed_copy)]
    return {name: [r for r in usable if r.split == name] for name in ("train", "val", "test")}


def _fmt(value: Any) -> str:
    return "  -  " if value is None else f"{value:.3f}"


def print_report(title: str, report: dict[str, Any]) -> None:
    pooled = report["pooled"]
    print(
        f"{title}: n={pooled['n']} auc={_fmt(pooled['auc'])} sens={_fmt(pooled['sensitivity'])} "
        f"spec={_fmt(pooled['specificity'])} acc4={_fmt(pooled['multiclass']['accuracy'])} "
        f"ece={_fmt(pooled['calibration']['ece'])}/{_fmt(pooled['calibration']['ece_abnormal'])} "
        f"thr={pooled['threshold']:.3f}"
    )
    for source, f in report["per_source"].items():
        ci = f"({f['auc_ci'][0]:.3f}-{f['auc_ci'][1]:.3f})" if f.get("auc_ci") else ""
        print(
            f"   {source:9s} n={f['n']:4d} abn={f['n_abnormal']:4d} auc={_fmt(f['auc'])}{ci} "
            f"sens={_fmt(f['sensitivity'])} spec={_fmt(f['specificity'])} acc4={_fmt(f['accuracy_4class'])}"
        )


def _progress(record: dict[str, Any]) -> None:
    if "loss" in record:
        # Runs with the source-adversarial head have no validation loss, only the AUC.
        figures = " ".join(
            f"{name}={_fmt(record.get(key))}"
            for name, key in (
                ("loss", "loss"),
                ("val_loss", "val_loss"),
                ("val_acc", "val_accuracy"),
                ("val_auc", "val_auc"),
            )
            if record.get(key) is not None
        )
        print(
            f"  [{record.get('stage', '')}] epoch {record['epoch']}/{record['epochs']} {figures} "
            f"({record['seconds']:.0f}s, eta {record['eta_seconds']:.0f}s)",
            flush=True,
        )


def command_run(recipe: Recipe, extra: dict, records: list[Record], workdir: Path, artifact: Path | None) -> dict:
    spec = run_spec(recipe, extra)
    out_dir = artifact or workdir / "artifact"
    started = time.monotonic()
    build = build_candidate(
        spec=spec,
        splits=splits_of(recipe, records),
        workdir=workdir,
        artifact_dir=out_dir,
        cache_dir=temp_cache_dir(),
        progress=_progress,
    )
    metrics = build.metrics
    for split in ("val", "test"):
        if split in metrics:
            per = {
                s: {
                    "n": f["n"],
                    "n_abnormal": f["n_pos"],
                    "auc": f["auc"],
                    "auc_ci": None,
                    "sensitivity": f["sensitivity"],
                    "specificity": f["specificity"],
                    "accuracy_4class": f["multiclass_accuracy"],
                }
                for s, f in metrics[split]["per_source"].items()
            }
            print_report(split, {"pooled": metrics[split], "per_source": per})
    if "unseen_sources" in metrics:
        print_report("unseen sources", metrics["unseen_sources"])
    print(f"time: {time.monotonic() - started:.0f}s; artifact {out_dir}")
    return {"recipe": recipe.to_dict(), "spec": spec, "metrics": metrics, "seconds": time.monotonic() - started}


def command_select(recipe: Recipe, extra: dict, records: list[Record], workdir: Path) -> dict:
    from classifier.imaging.preprocess import PreprocessConfig

    spec = run_spec(recipe, extra)
    splits = splits_of(recipe, records)
    config, labels = PreprocessConfig.from_dict(recipe.preprocess), list(recipe.spec.labels)
    started = time.monotonic()
    pool = load_arrays(splits["train"] + splits["val"], labels, config, temp_cache_dir())
    selection = select_on_unseen_sources(
        recipe.spec, spec, pool, spec["selection"]["holdout_folds"], workdir, _progress
    )
    print_report("unseen sources", selection.report)
    print(f"folds: {selection.folds}; time {time.monotonic() - started:.0f}s")
    return {
        "recipe": recipe.to_dict(),
        "spec": spec,
        "report": selection.report,
        "folds": selection.folds,
        "epochs": selection.epochs,
        "seconds": time.monotonic() - started,
    }


def command_loso(recipe: Recipe, extra: dict, records: list[Record], workdir: Path, holdout: str) -> dict:
    import keras

    from classifier.imaging.preprocess import PreprocessConfig
    from classifier.inference.scores import served_probabilities

    spec = run_spec(recipe, extra)
    config, labels = PreprocessConfig.from_dict(recipe.preprocess), list(recipe.spec.labels)
    splits = splits_of(recipe, records)
    started = time.monotonic()
    cache = temp_cache_dir()
    train = load_arrays([r for r in splits["train"] if r.source != holdout], labels, config, cache)
    val = load_arrays([r for r in splits["val"] if r.source != holdout], labels, config, cache)
    held = load_arrays([r for r in records if r.source == holdout], labels, config, cache)
    fixed = replace(recipe.spec, early_stopping_patience=recipe.spec.total_epochs + 1)
    outcome = _fit(fixed, spec, train, val, workdir, _progress)
    model = keras.saving.load_model(outcome.model_path, compile=False)
    calibration, chosen, threshold = _calibrate(logits_of(model, val.x), val, labels, spec["target_sensitivity"])
    probs = served_probabilities(logits_of(model, held.x), labels, calibration)
    report = unseen_source_report(held, probs, labels, threshold)
    print_report(f"held out {holdout}", report)
    print(f"time {time.monotonic() - started:.0f}s (train {outcome.seconds:.0f}s, {outcome.epochs_run} epochs)")
    return {
        "recipe": recipe.to_dict(),
        "spec": spec,
        "holdout": holdout,
        "report": report,
        "threshold_selection": chosen,
        "calibration": calibration,
        "seconds": time.monotonic() - started,
        "n_train": len(train.items),
    }


@dataclass
class FoldScores:
    """One fold model's logits on the sources it never saw, with each image's label and source."""

    logits: np.ndarray
    labels: list[str]
    sources: list[str]


def _fit_t(logits: np.ndarray, labels: list[str], schema: list[str]) -> float:
    mask, idx = schema_rows(labels, schema)
    return float(fit_temperature(logits[mask], idx))


def operating_point_rules(folds: list[FoldScores], schema: list[str], target: float) -> dict[str, Any]:
    """Specificity and sensitivity per source and pooled, at ``target`` sensitivity (each
    source counting equally), under five ways of choosing the operating point on fold
    models' predictions for sources they never saw:

    * ``pooled``: one 4-class temperature and one threshold on the pooled scores (what
      ``training.trainers.candidate`` did before the binary calibration);
    * ``binary_logit``: ranked by the model's own binary logit, logsumexp(abnormal
      logits) - normal logit, which a 4-class temperature reorders; one pooled threshold
      (what runs do now: the logistic calibration of that logit keeps its order);
    * ``fold_temperature``: a temperature per fold model, then one pooled threshold;
    * ``fold_threshold``: each fold its own threshold on its own held-out sources;
    * ``fold_ranks``: each fold's scores replaced by their ranks within the fold, then one
      pooled threshold (shows how much pooling different models' scales costs).

    Returns {rule: {"threshold": float | [per fold], "pooled_auc", "pooled": {sensitivity,
    specificity}, "per_source": {source: {sensitivity?, specificity?}}}}.
    """
    normal = schema.index("NORMAL")
    labels = np.array([label for fold in folds for label in fold.labels])
    sources = np.array([source for fold in folds for source in fold.sources])
    abnormal = labels != "NORMAL"
    weights = equal_source_weights(sources.tolist(), labels.tolist())

    def p_abnormal(logits: np.ndarray, temperature: float) -> np.ndarray:
        return 1.0 - apply_temperature(logits, temperature)[:, normal]

    def figures(scores: np.ndarray, thresholds: np.ndarray, threshold: Any) -> dict[str, Any]:
        flagged = scores >= thresholds
        per_source: dict[str, dict[str, float]] = {}
        for source in sorted(set(sources.tolist())):
            mask = sources == source
            entry = per_source.setdefault(source, {})
            if (mask & abnormal).any():
                entry["sensitivity"] = float(flagged[mask & abnormal].mean())
            if (mask & ~abnormal).any():
                entry["specificity"] = float((~flagged[mask & ~abnormal]).mean())
        return {
            "threshold": threshold,
            "pooled_auc": roc_auc(abnormal, scores) if np.ndim(threshold) == 0 else None,
            "pooled": {
                "sensitivity": float(flagged[abnormal].mean()) if abnormal.any() else None,
                "specificity": float((~flagged[~abnormal]).mean()) if (~abnormal).any() else None,
            },
            "per_source": per_source,
        }

    def pooled_threshold(scores: np.ndarray) -> float:
        return float(threshold_for_sensitivity(abnormal, scores, target=target, weights=weights)["threshold"])

    all_logits = np.concatenate([fold.logits for fold in folds])
    results: dict[str, Any] = {}
    temperature = _fit_t(all_logits, labels.tolist(), schema)
    scores = p_abnormal(all_logits, temperature)
    cut = pooled_threshold(scores)
    results["pooled"] = {**figures(scores, np.full(len(scores), cut), cut), "temperature": temperature}
    scores = p_abnormal(all_logits, 1.0)
    cut = pooled_threshold(scores)
    results["binary_logit"] = figures(scores, np.full(len(scores), cut), cut)
    temperatures = [_fit_t(fold.logits, fold.labels, schema) for fold in folds]
    scores = np.concatenate([p_abnormal(fold.logits, t) for fold, t in zip(folds, temperatures, strict=True)])
    cut = pooled_threshold(scores)
    results["fold_temperature"] = {**figures(scores, np.full(len(scores), cut), cut), "temperature": temperatures}
    cuts, per_row = [], []
    for fold in folds:
        fold_abnormal = np.array([label != "NORMAL" for label in fold.labels])
        fold_cut = float(
            threshold_for_sensitivity(
                fold_abnormal,
                p_abnormal(fold.logits, 1.0),
                target=target,
                weights=equal_source_weights(fold.sources, fold.labels),
            )["threshold"]
        )
        cuts.append(fold_cut)
        per_row.append(np.full(len(fold.labels), fold_cut))
    results["fold_threshold"] = figures(p_abnormal(all_logits, 1.0), np.concatenate(per_row), cuts)
    ranks = []
    for fold in folds:
        raw = p_abnormal(fold.logits, 1.0)
        ranks.append(np.argsort(np.argsort(raw)) / max(len(raw) - 1, 1))
    scores = np.concatenate(ranks)
    cut = pooled_threshold(scores)
    results["fold_ranks"] = figures(scores, np.full(len(scores), cut), cut)
    return results


def command_points(recipe: Recipe, extra: dict, records: list[Record], workdir: Path) -> dict:
    import keras

    from classifier.imaging.preprocess import PreprocessConfig

    spec = run_spec(recipe, extra)
    splits = splits_of(recipe, records)
    config, labels = PreprocessConfig.from_dict(recipe.preprocess), list(recipe.spec.labels)
    pool = load_arrays(splits["train"] + splits["val"], labels, config, temp_cache_dir())
    folds = []
    for number, fold in enumerate(spec["selection"]["holdout_folds"]):
        held = np.array([source in fold for source in pool.sources])
        model = keras.saving.load_model(workdir / f"fold-{number + 1}" / "model.keras", compile=False)
        folds.append(
            FoldScores(
                logits_of(model, pool.x[held]),
                [label for label, h in zip(pool.labels, held, strict=True) if h],
                [source for source, h in zip(pool.sources, held, strict=True) if h],
            )
        )
    rules = operating_point_rules(folds, labels, float(spec["target_sensitivity"]))
    for name, rule in rules.items():
        per = ", ".join(
            f"{s} {' '.join(f'{k[:4]} {v:.3f}' for k, v in f.items())}" for s, f in rule["per_source"].items()
        )
        auc = "-" if rule["pooled_auc"] is None else f"{rule['pooled_auc']:.3f}"
        print(
            f"{name}: threshold {rule['threshold']}, pooled AUC {auc}, sensitivity "
            f"{rule['pooled']['sensitivity']:.3f}, specificity {rule['pooled']['specificity']:.3f}; {per}"
        )
    return {"recipe": recipe.to_dict(), "spec": spec, "workdir": str(workdir), "rules": rules}


def main(argv: list[str] | None = None) -> None:
    from classifier.imaging.datapaths import data_dir

    parser = argparse.ArgumentParser(prog="python -m training.trainers.experiments")
    parser.add_argument("command", choices=("run", "select", "loso", "points"))
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--holdout", help="loso: the source left out (patient_id prefix)")
    parser.add_argument("--workdir", type=Path, help="reuse to resume a crashed run; points: the select run's")
    parser.add_argument("--artifact", type=Path, help="run: write the model artifact here")
    parser.add_argument("--out", type=Path, required=True, help="JSON results file")
    args = parser.parse_args(argv)
    if args.command == "loso" and not args.holdout:
        parser.error("loso needs --holdout")
    if args.command == "points" and not args.workdir:
        parser.error("points needs --workdir: the select run's, holding fold-N/model.keras")
    recipe, extra = apply_overrides(get_recipe(args.recipe), args.set)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cxr-run-"))
    records = load_records(data_dir(), with_sizes=recipe.drop_squashed_copies)
    print(f"recipe {recipe.name} workdir {workdir}", flush=True)
    if args.command == "run":
        results = command_run(recipe, extra, records, workdir, args.artifact)
    elif args.command == "select":
        results = command_select(recipe, extra, records, workdir)
    elif args.command == "points":
        results = command_points(recipe, extra, records, workdir)
    else:
        results = command_loso(recipe, extra, records, workdir, args.holdout)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
