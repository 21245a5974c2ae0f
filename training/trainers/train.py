"""Resumable, deterministic Keras training loop.

``train(spec, ...)`` writes into ``workdir``::

    checkpoint/last.keras     model + optimizer state after the last finished epoch
    checkpoint/best.weights.h5 weights of the best epoch (lowest val loss)
    checkpoint/state.json     epoch counter, phase, history, best epoch, spec
    model.keras               final model (best weights), written at the end

Called again with the same workdir after a crash, it resumes after the last finished
epoch (same spec required).  Resumed runs are deterministic per run but do not
reproduce the random stream of an uninterrupted run bit for bit.
One process per workdir: concurrent calls on the same workdir are not supported.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from training.trainers.balance import sample_epochs
from training.trainers.data import BALANCING_MODES, AugmentConfig, as_onehot, make_dataset, make_sampled_dataset

DEFAULT_LABELS = ("NORMAL", "PNEUMONIA_BACTERIAL", "PNEUMONIA_VIRAL", "COVID19")
Progress = Callable[[dict], None]


@dataclass(frozen=True)
class TrainSpec:
    """Everything that determines a training run (JSON round-trips via to/from_dict)."""

    architecture: str = "cxr_net"
    input_size: int = 224
    channels: int = 1
    labels: tuple[str, ...] = DEFAULT_LABELS
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 2e-3
    lr_decay_rate: float = 0.9
    lr_decay_steps: int = 150  # optimizer steps per decay_rate factor
    early_stopping_patience: int = 4
    # "val_loss", or "val_auc": abnormal-vs-normal AUC of the validation images (the
    # ranking a threshold is later chosen on; loss also punishes miscalibration, which
    # temperature scaling repairs afterwards).
    early_stopping_metric: str = "val_loss"
    balancing: str = "class_weights"
    epoch_samples: int = 0  # images drawn per epoch with "source_label" (0 = the training set size)
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    weights: str | None = None
    allow_download: bool = False
    freeze_backbone: bool = True
    fine_tune_epochs: int = 0  # extra epochs after unfreezing (backbones only)
    fine_tune_layers: int = 40
    fine_tune_learning_rate: float = 1e-4
    dropout: float = 0.3
    label_smoothing: float = 0.05
    weight_decay: float = 1e-4
    # > 0: train with the conditional source-adversarial head of
    # training.trainers.adversarial, its reversed gradient scaled by this (0 = no head).
    source_adversarial: float = 0.0
    # Weight of the cause-given-abnormal term of the loss (training.trainers.losses):
    # 1.0 is the plain 4-class cross-entropy; below 1 the abnormal-vs-normal term
    # dominates what the backbone learns, since the cause is nearly the source here.
    cause_loss_weight: float = 1.0
    # Fine-tuning keeps a running average of the weights after each epoch, and the
    # average (not the last epoch's weights) is what is scored, stopped on and returned
    # (stochastic weight averaging; Izmailov et al. 2018, and for unseen domains
    # Cha et al. 2021, SWAD). BN statistics are frozen while fine-tuning, so the
    # average needs no re-estimation.
    weight_averaging: bool = False
    # False: return the last epoch (with weight_averaging, the mean of every fine-tuning
    # epoch) instead of the best-scoring one. The final model of a source-held-out run
    # trains for the folds' median epoch count; picking among its epochs by the sample's
    # validation split would select on familiar hospitals again.
    restore_best_epoch: bool = True
    seed: int = 1234

    def __post_init__(self) -> None:
        if self.early_stopping_metric not in ("val_loss", "val_auc"):
            raise ValueError("early_stopping_metric must be val_loss or val_auc")
        if self.balancing not in BALANCING_MODES:
            raise ValueError(f"balancing must be one of {BALANCING_MODES}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if self.epoch_samples < 0 or (self.epoch_samples and self.epoch_samples < self.batch_size):
            raise ValueError("epoch_samples must be 0 (the training set size) or at least batch_size")
        if self.source_adversarial < 0:
            raise ValueError("source_adversarial must be >= 0")
        if not 0.0 <= self.cause_loss_weight <= 1.0:
            raise ValueError("cause_loss_weight must be within [0, 1]")
        if self.weight_averaging and (self.fine_tune_epochs < 1 or self.early_stopping_metric != "val_auc"):
            # The average is scored by the validation AUC (Keras' val_loss is the raw model's).
            raise ValueError("weight_averaging needs fine_tune_epochs >= 1 and early_stopping_metric='val_auc'")
        if self.source_adversarial and (self.balancing != "source_label" or self.early_stopping_metric != "val_auc"):
            # The head's targets ride on the sampled pipeline, and the validation images
            # carry no source targets, so stopping follows the validation AUC.
            raise ValueError("source_adversarial needs balancing='source_label' and early_stopping_metric='val_auc'")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.input_size, self.input_size, self.channels)

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.fine_tune_epochs

    def to_dict(self) -> dict:
        data = asdict(self)
        data["labels"] = list(self.labels)
        data["augment"] = self.augment.to_dict() if self.augment else None
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TrainSpec:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown TrainSpec keys: {sorted(unknown)}")
        data = dict(data)
        if "labels" in data:
            data["labels"] = tuple(data["labels"])
        if data.get("augment") is not None:
            data["augment"] = AugmentConfig.from_dict(data["augment"])
        return cls(**data)


@dataclass
class TrainOutcome:
    model_path: Path
    history: dict[str, list[float]]
    epochs_run: int
    seconds: float
    best_epoch: int  # 1-based: the epoch returned (the best-scoring one unless restore_best_epoch is False)
    stopped_early: bool = False


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _compile(model: Any, spec: TrainSpec, learning_rate: float, num_sources: int = 0) -> None:
    import keras

    schedule = keras.optimizers.schedules.ExponentialDecay(
        learning_rate, decay_steps=spec.lr_decay_steps, decay_rate=spec.lr_decay_rate
    )
    loss: Any = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=spec.label_smoothing)
    if spec.cause_loss_weight != 1.0:
        from training.trainers.losses import CauseWeightedLoss

        normal = spec.labels.index("NORMAL") if "NORMAL" in spec.labels else 0
        loss = CauseWeightedLoss(spec.cause_loss_weight, normal, spec.label_smoothing)
    metrics: Any = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    if spec.source_adversarial:
        from training.trainers.adversarial import ConditionalSourceLoss

        loss = [loss, ConditionalSourceLoss(len(spec.labels), num_sources)]
        metrics = [metrics, []]
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=spec.weight_decay), loss=loss, metrics=metrics
    )


def _new_state(spec: TrainSpec) -> dict:
    return {
        "epoch": 0,
        "phase": "train",
        "history": {},
        "best_val_loss": math.inf,
        "best_epoch": 0,
        "wait": 0,
        "seconds": 0.0,
        "stopped_early": False,
        "spec": spec.to_dict(),
    }


def _load_or_build(spec: TrainSpec, ckpt: Path, num_sources: int = 0) -> tuple[Any, dict]:
    """Resume from ``ckpt`` when it holds a checkpoint, else build a fresh model (with
    the source-adversarial head over ``num_sources`` sources when the spec asks)."""
    import keras

    from training.trainers.architectures import build_model

    if spec.source_adversarial:
        from training.trainers import adversarial  # registers the head's layer and loss
    if spec.cause_loss_weight != 1.0:
        from training.trainers import losses  # noqa: F401  (registers the loss for last.keras)
    state_path = ckpt / "state.json"
    if state_path.exists() and (ckpt / "last.keras").exists():
        state = json.loads(state_path.read_text())
        if state["spec"] != spec.to_dict():
            raise ValueError(f"{ckpt.parent} holds a checkpoint of a different TrainSpec; use a new workdir")
        return keras.saving.load_model(ckpt / "last.keras"), state
    model = build_model(
        spec.architecture,
        input_shape=spec.input_shape,
        num_classes=len(spec.labels),
        weights=spec.weights,
        allow_download=spec.allow_download,
        dropout=spec.dropout,
        freeze_backbone=spec.freeze_backbone,
    )
    if spec.source_adversarial:
        model = adversarial.with_source_head(
            model, num_classes=len(spec.labels), num_sources=num_sources, scale=spec.source_adversarial
        )
    _compile(model, spec, spec.learning_rate, num_sources)
    return model, _new_state(spec)


def _val_auc(model: Any, x_val: np.ndarray, y_val: np.ndarray, labels: tuple[str, ...]) -> float:
    """Abnormal-vs-normal AUC on the validation images (0.5 when only one class is there)."""
    from training.evaluation.metrics import roc_auc

    normal = labels.index("NORMAL") if "NORMAL" in labels else 0

    def batch_logits(x: np.ndarray) -> np.ndarray:
        out = model(x.astype(np.float32) / 255.0, training=False)
        return np.asarray(out[0] if isinstance(out, list | tuple) else out)  # [0]: not the source head

    logits = np.concatenate([batch_logits(x_val[i : i + 64]) for i in range(0, len(x_val), 64)])
    z = logits - logits.max(axis=1, keepdims=True)
    p_normal = np.exp(z[:, normal]) / np.exp(z).sum(axis=1)
    auc = roc_auc(y_val[:, normal] < 0.5, 1.0 - p_normal)
    return 0.5 if auc is None else float(auc)


def _epoch_callback(
    spec: TrainSpec,
    ckpt: Path,
    state: dict,
    progress: Progress | None,
    phase_end: int,
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> Any:
    """Keras callback: record history, checkpoint, early-stop, report progress."""
    import keras

    class EpochCheckpoint(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self._t0 = time.monotonic()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = {k: float(v) for k, v in (logs or {}).items()}
            for key, value in logs.items():
                state["history"].setdefault(key, []).append(value)
            state["epoch"] = epoch + 1
            state["seconds"] += time.monotonic() - self._t0
            current = None
            if spec.weight_averaging and state["phase"] == "fine_tune":
                # Score, and keep as best, the running average; train on from this epoch's weights.
                current = self.model.get_weights()
                self.model.set_weights(_update_average(ckpt, state, current))
            if spec.early_stopping_metric == "val_auc" and val is not None:
                logs["val_auc"] = _val_auc(self.model, val[0], val[1], spec.labels)
                state["history"].setdefault("val_auc", []).append(logs["val_auc"])
                val_loss = -logs["val_auc"]  # lower is better, as for the loss
            else:
                val_loss = logs.get("val_loss", logs.get("loss", math.inf))
            if val_loss < state["best_val_loss"] - 1e-4:
                state.update(best_val_loss=val_loss, best_epoch=epoch + 1, wait=0)
                self.model.save_weights(ckpt / "best.weights.h5")
            else:
                state["wait"] += 1
            if current is not None:
                self.model.set_weights(current)
            if state["wait"] >= spec.early_stopping_patience and epoch + 1 < phase_end:
                state["stopped_early"] = True
                self.model.stop_training = True
            # Checkpoint before reporting: a crash in the reporter must not lose the epoch.
            self.model.save(ckpt / "last.tmp.keras")
            os.replace(ckpt / "last.tmp.keras", ckpt / "last.keras")
            _write_json(ckpt / "state.json", state)
            if progress is not None:
                progress(_progress_record(spec, state, logs))

    return EpochCheckpoint()


def _update_average(ckpt: Path, state: dict, current: list[np.ndarray]) -> list[np.ndarray]:
    """Fold ``current`` into the running mean of the fine-tuning epochs' weights; returns
    the mean. The mean of n epochs is kept in ``ckpt/average-<n>.npz`` and the count in
    ``state``, so a run resumed after a crash at any point continues the same mean."""
    n = int(state.get("average_count", 0))
    if n == 0:
        mean = [np.array(w, copy=True) for w in current]
    else:
        mean = [m + (c - m) / (n + 1) for m, c in zip(_load_average(ckpt, state), current, strict=True)]
    np.savez(ckpt / "average.tmp.npz", *mean)  # arr_0, arr_1, ... in get_weights() order
    os.replace(ckpt / "average.tmp.npz", ckpt / f"average-{n + 1}.npz")
    (ckpt / f"average-{n - 1}.npz").unlink(missing_ok=True)  # average-<n> stays until state.json says n + 1
    state["average_count"] = n + 1
    return mean


def _load_average(ckpt: Path, state: dict) -> list[np.ndarray]:
    """The running mean of the fine-tuning epochs so far, in ``get_weights()`` order."""
    with np.load(ckpt / f"average-{int(state['average_count'])}.npz") as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def _progress_record(spec: TrainSpec, state: dict, logs: dict) -> dict:
    done = state["epoch"]
    per_epoch = state["seconds"] / max(done, 1)
    return {
        "epoch": done,
        "epochs": spec.total_epochs,
        "phase": state["phase"],
        "loss": logs.get("loss"),
        "val_loss": logs.get("val_loss"),
        "accuracy": logs.get("accuracy"),
        "val_accuracy": logs.get("val_accuracy"),
        "val_auc": logs.get("val_auc"),
        "best_epoch": state["best_epoch"],
        "seconds": round(state["seconds"], 1),
        "eta_seconds": round(per_epoch * (spec.total_epochs - done), 1),
    }


TrainData = Callable[[int, int], tuple[Any, int | None]]  # (first, end epoch) -> (dataset, steps per epoch)


def _run_phase(
    model: Any,
    spec: TrainSpec,
    state: dict,
    ckpt: Path,
    end: int,
    data: tuple[TrainData, Any, tuple[np.ndarray, np.ndarray]],
    progress: Progress | None,
) -> None:
    if state["epoch"] >= end or state["stopped_early"]:
        return
    callback = _epoch_callback(spec, ckpt, state, progress, end, data[2])
    train_ds, steps = data[0](state["epoch"], end)
    model.fit(
        train_ds,
        validation_data=data[1],
        initial_epoch=state["epoch"],
        steps_per_epoch=steps,
        epochs=end,
        callbacks=[callback],
        shuffle=False,
        verbose=0,
    )


def _start_fine_tune(model: Any, spec: TrainSpec, state: dict, ckpt: Path, num_sources: int = 0) -> None:
    """Unfreeze the top of the backbone from the best head weights, with a fresh
    optimizer at a low learning rate; early-stopping patience restarts."""
    from training.trainers.architectures import unfreeze

    if (ckpt / "best.weights.h5").exists():
        model.load_weights(ckpt / "best.weights.h5")
    unfreeze(model, spec.fine_tune_layers)
    _compile(model, spec, spec.fine_tune_learning_rate, num_sources)
    state.update(phase="fine_tune", wait=0, stopped_early=False, epoch=spec.epochs)


def train(
    spec: TrainSpec,
    *,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    workdir: Path,
    progress: Progress | None = None,
    sample_p: np.ndarray | None = None,
    sources: list[str] | None = None,
) -> TrainOutcome:
    """Train (or resume training) ``spec`` on uint8 images; returns the best model.

    ``x_*`` are uint8 (N, H, W, C) from ``PreprocessedCache``; ``y_*`` int class ids or
    soft labels (N, K) in ``spec.labels`` order.  ``progress`` is called after every
    epoch (after the checkpoint is on disk) with a JSON-serialisable dict.
    ``sample_p`` (per training image, summing to 1; see ``training.trainers.balance``) is
    required by ``balancing="source_label"``: each epoch draws ``epoch_samples`` images.
    ``sources`` (per training image) is required by ``spec.source_adversarial``; the
    returned model never has the adversarial head.
    """
    import keras

    workdir = Path(workdir)
    ckpt = workdir / "checkpoint"
    ckpt.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(spec.seed)
    k = len(spec.labels)
    y_onehot = as_onehot(y_train, k)
    head_targets, num_sources = None, 0
    if spec.source_adversarial:
        from training.trainers.adversarial import source_targets

        if sources is None or len(sources) != len(x_train):
            raise ValueError("source_adversarial needs sources, one per training image")
        names, source_ids = np.unique(np.asarray(sources), return_inverse=True)
        num_sources = len(names)
        head_targets = source_targets(y_onehot, source_ids, num_sources)
    model, state = _load_or_build(spec, ckpt, num_sources)
    if spec.balancing == "source_label":
        if sample_p is None or len(sample_p) != len(x_train):
            raise ValueError("balancing='source_label' needs sample_p, one probability per training image")
        size = spec.epoch_samples or len(x_train)
        order = sample_epochs(sample_p, epoch_size=size, epochs=spec.total_epochs, seed=spec.seed)

        def train_data(first: int, end: int) -> tuple[Any, int | None]:
            ds = make_sampled_dataset(
                x_train,
                y_onehot,
                order[first:end],
                batch_size=spec.batch_size,
                augment=spec.augment,
                seed=spec.seed + first,
                y_aux=head_targets,
            )
            return ds, size // spec.batch_size
    else:

        def train_data(first: int, end: int) -> tuple[Any, int | None]:
            return make_dataset(
                x_train,
                y_onehot,
                batch_size=spec.batch_size,
                augment=spec.augment,
                shuffle=True,
                seed=spec.seed,
                balancing=spec.balancing,
            ), None

    val_arrays = (x_val, as_onehot(y_val, k))
    val_ds = None  # the source head has no targets for validation images (it stops on the AUC)
    if not spec.source_adversarial:
        val_ds = make_dataset(
            x_val, val_arrays[1], batch_size=spec.batch_size, augment=None, shuffle=False, seed=spec.seed
        )
    if state["phase"] == "train":
        _run_phase(model, spec, state, ckpt, spec.epochs, (train_data, val_ds, val_arrays), progress)
        if spec.fine_tune_epochs > 0:
            _start_fine_tune(model, spec, state, ckpt, num_sources)
    if state["phase"] == "fine_tune":
        _run_phase(model, spec, state, ckpt, spec.total_epochs, (train_data, val_ds, val_arrays), progress)
    return _finish(model, spec, state, ckpt, workdir)


def _finish(model: Any, spec: TrainSpec, state: dict, ckpt: Path, workdir: Path) -> TrainOutcome:
    returned_epoch = state["epoch"]
    if spec.restore_best_epoch and (ckpt / "best.weights.h5").exists():
        model.load_weights(ckpt / "best.weights.h5")  # restore the best epoch
        returned_epoch = state["best_epoch"]
    elif not spec.restore_best_epoch and spec.weight_averaging and state.get("average_count"):
        model.set_weights(_load_average(ckpt, state))  # the mean up to the last epoch
    if spec.source_adversarial:
        from training.trainers.adversarial import strip_source_head

        model = strip_source_head(model)  # what is saved, exported and served: image -> logits
    model_path = workdir / "model.keras"
    model.save(model_path)
    _write_json(
        workdir / "history.json",
        {"history": state["history"], "best_epoch": returned_epoch, "spec": spec.to_dict()},
    )
    return TrainOutcome(
        model_path=model_path,
        history=state["history"],
        epochs_run=state["epoch"],
        seconds=state["seconds"],
        best_epoch=returned_epoch,
        stopped_early=state["stopped_early"],
    )
