"""How far a training run is, over every phase: model fits, evaluation, export, gate.

The run row's ``progress`` holds the latest record the trainer reported (epoch figures
tagged with their ``stage`` and ``fit``/``fits``, or a stage-only record); this module
turns it into one percentage and a sentence, for the run page and its polling endpoint.
Training epochs fill the bar to 80 %; evaluation, export and the gate take the rest, so
the last epoch is not 100 % while the candidate is still being evaluated.
"""

from __future__ import annotations

from typing import Any

from training.models import TrainingRun

TRAINING_SHARE = 80
PHASES = {
    "evaluation": (80, "Evaluating on the validation split (calibration, operating threshold, metrics)"),
    "export": (88, "Exporting the runtime model, checking parity and registering the version"),
    "gate": (95, "Gate: comparing the candidate with the active model on the same validation files"),
}


def _number(value: Any, default: int) -> int:
    return int(value) if isinstance(value, (int, float)) and value > 0 else default


def run_progress(run: TrainingRun) -> dict[str, Any]:
    """``percent`` (0-100) and ``phase`` (a sentence) of ``run``."""
    record = run.progress or {}
    stage = str(record.get("stage") or "")
    if run.status == TrainingRun.Status.QUEUED:
        return {"percent": 0, "phase": "Waiting for the training worker"}
    if run.status == TrainingRun.Status.SUCCEEDED:
        return {"percent": 100, "phase": "Finished"}
    if stage in PHASES:
        percent, phase = PHASES[stage]
    elif record.get("epochs"):
        fits, fit = _number(record.get("fits"), 1), _number(record.get("fit"), 1)
        epochs, epoch = _number(record.get("epochs"), 1), _number(record.get("epoch"), 0)
        done = (min(fit, fits) - 1 + min(epoch, epochs) / epochs) / fits
        percent = int(TRAINING_SHARE * done)
        phase = f"Training{f' ({stage})' if stage and stage != 'training' else ''}: epoch {epoch} of {epochs}"
        if fits > 1:
            phase += f", model {min(fit, fits)} of {fits}"
    else:
        percent, phase = 0, "Loading and preprocessing the images"
    if run.status == TrainingRun.Status.FAILED:
        phase = f"Failed during: {phase[0].lower()}{phase[1:]}"
    return {"percent": percent, "phase": phase}
