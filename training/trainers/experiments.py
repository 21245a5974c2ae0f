"""Django-free experiment CLI: train a recipe on the shared data and evaluate it.

    python -m training.trainers.experiments run  [--recipe default] [--set epochs=8] --out r.json
    python -m training.trainers.experiments loso --holdout nih [--set ...] --out r.json
    python -m training.trainers.experiments run ... --artifact /path/to/new/artifact

``run`` trains on cxr/train + cxr-train, early-stops on cxr/val and reports val and test.
``loso`` trains without one source (patient_id prefix) and tests on every image of it.
The binary threshold is chosen on validation (sensitivity >= 0.95) and applied to test.
Output is a few lines per split; full figures go to the JSON file given by --out.
"""
from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from training.trainers.data import PreprocessedCache, temp_cache_dir
from training.trainers.recipes import Recipe, get_recipe
from training.trainers.train import TrainSpec

LABELS = ("NORMAL", "PNEUMONIA_BACTERIAL", "PNEUMONIA_VIRAL", "COVID19")
# The generic (cause unknown) pneumonia of cxr-train is split evenly between the two
# pneumonia classes: it is abnormal, and it is the only adult non-COVID abnormal data.
SOFT_LABELS = {"PNEUMONIA": (0.0, 0.5, 0.5, 0.0)}
SOURCES = ("kermany", "nih", "hannover", "ieee8023", "cxnet")
TARGET_SENSITIVITY = 0.95


@dataclass(frozen=True)
class Record:
    path: Path
    label: str
    split: str          # train | val | test (cxr-train rows are "train")
    source: str         # patient_id prefix
    squashed: bool      # a 224x224 re-saved Kermany copy (cxr-train only)


def load_records(root: Path) -> list[Record]:
    """Rows of cxr/manifest.csv and cxr-train/manifest.csv as Records."""
    records = []
    for sub, default_split in (("cxr", None), ("cxr-train", "train")):
        with open(root / sub / "manifest.csv", newline="") as fh:
            for row in csv.DictReader(fh):
                path = root / sub / row["file"]
                source = row["patient_id"].split(":", 1)[0]
                squashed = sub == "cxr-train" and source == "kermany" and _is_224(path)
                records.append(Record(path, row["label"], default_split or row["split"],
                                      source, squashed))
    return records


def _is_224(path: Path) -> bool:
    from PIL import Image

    with Image.open(path) as im:
        return im.size == (224, 224)


def soft_label(label: str) -> np.ndarray:
    if label in SOFT_LABELS:
        return np.asarray(SOFT_LABELS[label], np.float32)
    return np.eye(len(LABELS), dtype=np.float32)[LABELS.index(label)]


def load_arrays(records: list[Record], config: Any, cache: PreprocessedCache
                ) -> tuple[np.ndarray, np.ndarray, list[Record]]:
    """uint8 images, soft labels and the records that decoded (failures printed)."""
    result = cache.load([r.path for r in records], config)
    for path, reason in result.failures:
        print(f"  skipped {path}: {reason}")
    kept = [records[i] for i in result.indices]
    return result.images, np.stack([soft_label(r.label) for r in kept]), kept


def predict_logits(model: Any, x_uint8: np.ndarray, batch: int = 64) -> np.ndarray:
    out = [model(x_uint8[i:i + batch].astype(np.float32) / 255.0, training=False)
           for i in range(0, len(x_uint8), batch)]
    return np.concatenate([np.asarray(o) for o in out])


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def auc(y: np.ndarray, s: np.ndarray) -> float | None:
    """Mann-Whitney AUC with ties counted half; None without both classes."""
    pos, neg = s[y], s[~y]
    if not len(pos) or not len(neg):
        return None
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    allv = np.concatenate([pos, neg])
    for v in np.unique(allv):  # average ranks of ties
        tie = allv == v
        ranks[tie] = ranks[tie].mean()
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def threshold_for_sensitivity(y: np.ndarray, s: np.ndarray, target: float) -> float:
    """Largest threshold whose sensitivity on (y, s) is >= target."""
    pos = np.sort(s[y])[::-1]
    if not len(pos):
        return 0.5
    k = int(np.ceil(target * len(pos)))
    return float(pos[k - 1])


def _rates(y: np.ndarray, s: np.ndarray, thr: float) -> dict:
    flag = s >= thr
    sens = float(flag[y].mean()) if y.any() else None
    spec = float((~flag[~y]).mean()) if (~y).any() else None
    return {"sensitivity": sens, "specificity": spec}


def evaluate(probs: np.ndarray, records: list[Record], thr: float) -> dict:
    """Binary (abnormal = not NORMAL) and 4-class figures, overall and per source."""
    y = np.array([r.label != "NORMAL" for r in records])
    s = 1.0 - probs[:, 0]
    four = np.array([r.label in LABELS for r in records])
    truth = np.array([LABELS.index(r.label) if r.label in LABELS else -1 for r in records])
    out = {"n": len(records), "threshold": thr, "auc": auc(y, s), **_rates(y, s, thr),
           "at_0.5": _rates(y, s, 0.5),
           "spec_at_sens95": _rates(y, s, threshold_for_sensitivity(y, s, 0.95))["specificity"],
           "accuracy_4class": float((probs[four].argmax(1) == truth[four]).mean()) if four.any() else None,
           "per_source": {}}
    for src in SOURCES:
        m = np.array([r.source == src for r in records])
        if m.any():
            acc = probs[m & four].argmax(1) == truth[m & four]
            out["per_source"][src] = {"n": int(m.sum()), "auc": auc(y[m], s[m]),
                                      **_rates(y[m], s[m], thr),
                                      "accuracy_4class": float(acc.mean()) if acc.size else None}
    return out


def _fmt(v: Any) -> str:
    return "  -  " if v is None else f"{v:.3f}"


def print_eval(name: str, ev: dict) -> None:
    print(f"{name:5s} n={ev['n']:4d} thr={ev['threshold']:.3f} sens={_fmt(ev['sensitivity'])} "
          f"spec={_fmt(ev['specificity'])} auc={_fmt(ev['auc'])} "
          f"spec@sens95={_fmt(ev['spec_at_sens95'])} acc4={_fmt(ev['accuracy_4class'])}")
    for src, e in ev["per_source"].items():
        print(f"      {src:9s} n={e['n']:4d} sens={_fmt(e['sensitivity'])} "
              f"spec={_fmt(e['specificity'])} auc={_fmt(e['auc'])} acc4={_fmt(e['accuracy_4class'])}")


def apply_overrides(recipe: Recipe, pairs: list[str]) -> Recipe:
    """``key=value`` (value JSON, else a string); ``pp.<key>`` edits the preprocess
    config, ``drop_squashed_copies``/``pneumonia_as_soft_label`` the recipe, anything
    else the TrainSpec.  input_size is kept in step between spec and preprocess."""
    spec, pp, top = recipe.spec.to_dict(), dict(recipe.preprocess), {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if key.startswith("pp."):
            pp[key[3:]] = value
        elif key in ("drop_squashed_copies", "pneumonia_as_soft_label"):
            top[key] = value
        else:
            spec[key] = value
    if "input_size" in spec:
        pp["input_size"] = spec["input_size"]
    pp["channels"] = spec["channels"]
    return replace(recipe, spec=TrainSpec.from_dict(spec), preprocess=pp, **top)


def _split(records: list[Record], recipe: Recipe, holdout: str | None
           ) -> tuple[list[Record], list[Record], dict[str, list[Record]]]:
    def usable(r: Record) -> bool:
        if recipe.drop_squashed_copies and r.squashed:
            return False
        return recipe.pneumonia_as_soft_label or r.label in LABELS

    train = [r for r in records if r.split == "train" and r.source != holdout and usable(r)]
    val = [r for r in records if r.split == "val" and r.source != holdout]
    if holdout:
        return train, val, {"holdout": [r for r in records if r.source == holdout]}
    return train, val, {"test": [r for r in records if r.split == "test"]}


def _fit_temperature(logits: np.ndarray, records: list[Record]) -> float:
    idx = [i for i, r in enumerate(records) if r.label in LABELS]
    try:
        from training.evaluation.calibration import fit_temperature
    except ImportError:
        return 1.0
    return float(fit_temperature(logits[idx], [LABELS.index(records[i].label) for i in idx]))


def run_experiment(recipe: Recipe, *, workdir: Path, holdout: str | None = None,
                   artifact: Path | None = None) -> dict:
    """Train ``recipe`` (resuming in ``workdir``) and evaluate; returns the results."""
    import keras

    from classifier.imaging.datapaths import data_dir
    from training.trainers.train import train

    t0 = time.monotonic()
    config = recipe.preprocess_config()
    cache = PreprocessedCache(temp_cache_dir())
    train_r, val_r, tests = _split(load_records(data_dir()), recipe, holdout)
    x_tr, y_tr, train_r = load_arrays(train_r, config, cache)
    x_va, y_va, val_r = load_arrays(val_r, config, cache)
    arrays = {name: load_arrays(recs, config, cache) for name, recs in tests.items()}
    prep_s = time.monotonic() - t0
    print(f"data: train={len(train_r)} val={len(val_r)} "
          + " ".join(f"{k}={len(v[2])}" for k, v in arrays.items()) + f" ({prep_s:.0f}s)")
    outcome = train(recipe.spec, x_train=x_tr, y_train=y_tr, x_val=x_va, y_val=y_va,
                    workdir=workdir, progress=_print_progress)
    model = keras.saving.load_model(outcome.model_path, compile=False)
    val_logits = predict_logits(model, x_va)
    temperature = _fit_temperature(val_logits, val_r)
    val_p = _softmax(val_logits / temperature)
    y_val = np.array([r.label != "NORMAL" for r in val_r])
    thr = threshold_for_sensitivity(y_val, 1 - val_p[:, 0], TARGET_SENSITIVITY)
    results = {"recipe": recipe.to_dict(), "holdout": holdout, "temperature": temperature,
               "train_seconds": outcome.seconds, "preprocess_seconds": prep_s,
               "epochs_run": outcome.epochs_run, "best_epoch": outcome.best_epoch,
               "history": outcome.history, "val": evaluate(val_p, val_r, thr)}
    print_eval("val", results["val"])
    for name, (x, _, recs) in arrays.items():
        results[name] = evaluate(_softmax(predict_logits(model, x) / temperature), recs, thr)
        print_eval(name, results[name])
    results["total_seconds"] = time.monotonic() - t0
    print(f"time: preprocess {prep_s:.0f}s, train {outcome.seconds:.0f}s "
          f"({outcome.epochs_run} epochs, best {outcome.best_epoch}), "
          f"total {results['total_seconds']:.0f}s")
    if artifact is not None:
        _publish(artifact, model, recipe, config, results, x_va[:16])
    return results


def _print_progress(p: dict) -> None:
    print(f"  epoch {p['epoch']:2d}/{p['epochs']} loss={p['loss']:.3f} "
          f"val_loss={p['val_loss']:.3f} acc={p['accuracy']:.3f} "
          f"val_acc={p['val_accuracy']:.3f} ({p['seconds']:.0f}s, eta {p['eta_seconds']:.0f}s)",
          flush=True)


def _publish(artifact: Path, model: Any, recipe: Recipe, config: Any, results: dict,
             x_parity: np.ndarray) -> None:
    from training.trainers.export import write_artifact

    thresholds = {"abnormal": results["val"]["threshold"],
                  "temperature": results["temperature"],
                  "target_sensitivity": TARGET_SENSITIVITY, "chosen_on": "cxr/val"}
    metrics = {k: results[k] for k in ("val", "test") if k in results}
    card = (f"# {recipe.name}\n\nTrained by training.trainers.experiments on cxr/train + "
            f"cxr-train; threshold chosen on cxr/val for sensitivity >= "
            f"{TARGET_SENSITIVITY}.\nSample data only: not a clinically validated model.\n")
    manifest = write_artifact(artifact, model=model, preprocess_config=config,
                              labels=list(LABELS), thresholds=thresholds, metrics=metrics,
                              model_card_md=card, parity_x=x_parity.astype(np.float32) / 255,
                              extra={"recipe": recipe.to_dict(),
                                     "train_seconds": results["train_seconds"]})
    print(f"artifact: {artifact} (tflite {manifest['tflite']})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.trainers.experiments")
    parser.add_argument("command", choices=("run", "loso"))
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--holdout", choices=SOURCES)
    parser.add_argument("--workdir", type=Path, help="reuse to resume a crashed run")
    parser.add_argument("--artifact", type=Path, help="also write a model artifact here")
    parser.add_argument("--out", type=Path, required=True, help="JSON results file")
    args = parser.parse_args(argv)
    if args.command == "loso" and not args.holdout:
        parser.error("loso needs --holdout")
    recipe = apply_overrides(get_recipe(args.recipe), args.set)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cxr-run-"))
    print(f"recipe {recipe.name} workdir {workdir}")
    results = run_experiment(recipe, workdir=workdir,
                             holdout=args.holdout if args.command == "loso" else None,
                             artifact=args.artifact)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
