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
