"""Training loop: learns, checkpoints every epoch, resumes after a crash, stops early."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from training.trainers.train import TrainSpec, train


def separable_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class 1 has a bright square in the top-left corner; class 0 does not."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 90, size=(n, 32, 32, 1)).astype(np.uint8)
    y = np.arange(n) % 2
    x[y == 1, 4:14, 4:14, :] = 230
    return x, y


SPEC = TrainSpec(
    architecture="s0_cnn",
    input_size=32,
    channels=1,
    labels=("A", "B"),
    epochs=2,
    batch_size=16,
    learning_rate=3e-3,
    augment=None,
    balancing="none",
    early_stopping_patience=5,
    seed=7,
)


def _fit(spec: TrainSpec, workdir, progress=None):
    x, y = separable_data(96, 0)
    xv, yv = separable_data(32, 1)
    return train(spec, x_train=x, y_train=y, x_val=xv, y_val=yv, workdir=workdir, progress=progress)


def test_train_reduces_loss_and_reports_progress(tmp_path) -> None:
    records: list[dict] = []
    outcome = _fit(SPEC, tmp_path, records.append)
    assert outcome.history["loss"][1] < outcome.history["loss"][0]
    assert outcome.epochs_run == 2 and outcome.model_path.exists()
    assert [r["epoch"] for r in records] == [1, 2]
    assert {"epochs", "loss", "val_loss", "accuracy", "val_accuracy", "eta_seconds"} <= set(records[0])
    json.dumps(records)


def test_train_resumes_from_last_checkpoint_after_crash(tmp_path) -> None:
    spec = replace(SPEC, epochs=3)

    def crash_after_first_epoch(record: dict) -> None:
        if record["epoch"] == 1:
            raise KeyboardInterrupt("simulated crash")

    with pytest.raises(KeyboardInterrupt):
        _fit(spec, tmp_path, crash_after_first_epoch)
    seen: list[int] = []
    outcome = _fit(spec, tmp_path, lambda r: seen.append(r["epoch"]))
    assert seen == [2, 3]  # continued, not restarted
    assert len(outcome.history["loss"]) == 3 and outcome.epochs_run == 3


def test_resume_refuses_a_different_spec(tmp_path) -> None:
    _fit(replace(SPEC, epochs=1), tmp_path)
    with pytest.raises(ValueError, match="different TrainSpec"):
        _fit(replace(SPEC, epochs=1, learning_rate=1e-4), tmp_path)


def test_early_stopping_restores_best_epoch(tmp_path) -> None:
    # A huge learning rate makes validation loss worse after the first epoch or so.
    spec = replace(SPEC, epochs=8, early_stopping_patience=1, learning_rate=0.5)
    outcome = _fit(spec, tmp_path)
    assert outcome.epochs_run < 8 and outcome.stopped_early
    val = outcome.history["val_loss"]
    assert outcome.best_epoch == int(np.argmin(val)) + 1


def test_train_spec_round_trips_through_dict() -> None:
    spec = TrainSpec()
    assert TrainSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(ValueError):
        TrainSpec.from_dict({"nonsense": 1})


def test_early_stopping_on_validation_auc_keeps_the_best_ranking_epoch(tmp_path) -> None:
    spec = replace(SPEC, labels=("NORMAL", "B"), epochs=4, early_stopping_metric="val_auc", early_stopping_patience=4)
    outcome = _fit(spec, tmp_path)
    aucs = outcome.history["val_auc"]
    assert len(aucs) == 4 and all(0.0 <= a <= 1.0 for a in aucs)
    assert outcome.best_epoch == int(np.argmax(aucs)) + 1
    with pytest.raises(ValueError):
        replace(SPEC, early_stopping_metric="accuracy")


def test_update_average_is_the_running_mean_and_survives_a_resume(tmp_path) -> None:
    from training.trainers.train import _update_average

    epochs = [[np.full((2, 3), float(e)), np.array([e * 10.0])] for e in (1, 2, 6)]
    state: dict = {}
    for number, weights in enumerate(epochs[:2], start=1):
        mean = _update_average(tmp_path, state, weights)
        assert state["average_count"] == number
    resumed = json.loads(json.dumps(state))  # what state.json gives a resumed run
    mean = _update_average(tmp_path, resumed, epochs[2])
    assert np.allclose(mean[0], 3.0) and np.allclose(mean[1], [30.0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["average-2.npz", "average-3.npz"]


def test_weight_averaging_returns_the_mean_of_the_fine_tuning_epochs(tmp_path) -> None:
    """Fine-tuning with weight_averaging scores and returns the running mean of the
    fine-tuning epochs' weights up to the best one, while training continues from each
    epoch's own weights (read from last.keras after every epoch)."""
    import shutil

    import keras

    spec = replace(
        # The ImageNet weights shipped in training/pretrained (a random Lite0 outputs ~1e-14).
        SPEC,
        architecture="efficientnet_lite0",
        weights="imagenet",
        labels=("NORMAL", "B"),
        epochs=1,
        learning_rate=1e-6,
        fine_tune_epochs=3,
        fine_tune_layers=12,
        fine_tune_learning_rate=1e-3,
        early_stopping_metric="val_auc",
        early_stopping_patience=9,
        weight_averaging=True,
    )
    kept: list = []

    def keep_last(record: dict) -> None:
        copy = tmp_path / f"epoch-{record['epoch']}.keras"
        shutil.copy(tmp_path / "run" / "checkpoint" / "last.keras", copy)
        kept.append(copy)

    outcome = _fit(spec, tmp_path / "run", keep_last)
    assert outcome.epochs_run == 4 and outcome.best_epoch >= 2  # fine-tuning beat the untrained head
    raw = [keras.saving.load_model(p, compile=False).get_weights() for p in kept[1:]]  # fine-tuning epochs 2-4

    def mean_of(epochs: list) -> list:
        return [np.mean(ws, axis=0) for ws in zip(*epochs, strict=True)]

    def same(a: list, b: list) -> bool:
        return all(np.allclose(x, y, atol=1e-6) for x, y in zip(a, b, strict=True))

    with np.load(tmp_path / "run" / "checkpoint" / "average-3.npz") as stored:
        average = [stored[f"arr_{i}"] for i in range(len(raw[0]))]
    # The mean of the three; last.keras holds the epoch's own weights, which training goes on from.
    assert same(average, mean_of(raw)) and not same(average, raw[-1])
    returned = keras.saving.load_model(outcome.model_path, compile=False).get_weights()
    assert same(returned, mean_of(raw[: outcome.best_epoch - 1]))  # the average at the best epoch
    with pytest.raises(ValueError, match="weight_averaging"):
        replace(SPEC, weight_averaging=True)


def test_without_restore_best_epoch_the_last_epoch_is_returned(tmp_path) -> None:
    """The final model of a source-held-out run keeps its last epoch: with a learning rate
    that makes validation loss worse after the first epoch, restoring would pick another."""
    import keras

    spec = replace(SPEC, epochs=2, early_stopping_patience=9, learning_rate=0.5)
    restored = _fit(spec, tmp_path / "restored")
    last = _fit(replace(spec, restore_best_epoch=False), tmp_path / "last")
    assert restored.best_epoch == 1  # the premise: the first epoch scored best
    assert last.best_epoch == 2 and last.epochs_run == 2
    kept = keras.saving.load_model(last.model_path, compile=False).get_weights()
    final = keras.saving.load_model(tmp_path / "last" / "checkpoint" / "last.keras", compile=False).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(kept, final, strict=True))
