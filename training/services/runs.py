"""Training runs: start, execute (train -> calibrate -> evaluate -> register -> gate), retrain.

``training_run_execute`` is what the Celery task and ``train_model`` both call. It claims
the run row (one executor per run), writes progress to the row every epoch, and resumes
from the last checkpoint when a crashed run is executed again (same work directory).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from classifier import claims
from classifier.artifact_store import artifact_local_dir
from classifier.models import Label
from classifier.selectors.reviews import reviewed_images
from classifier.services.audit import AuditContext, audit_record
from classifier.storage import local_copies_fetch, local_path
from training import registry
from training.models import Dataset, DatasetImage, ModelVersion, TrainingRun
from training.services.datasets import assign_splits

log = logging.getLogger(__name__)
IMPORT_PAGE = "/training/datasets/import/"


@dataclass(frozen=True)
class Item:
    """One training example, wherever it came from."""

    key: str
    path: Path
    label: str
    patient: str
    split: str
    source: str
    view: str = "unknown"
    stored_name: str = ""  # the media storage's name of ``path`` (fetched before training)


def architecture_names() -> tuple[str, ...]:
    """The architectures a run may name. The trainers' module imports no TensorFlow, but the
    web process reaches it only through this call, never by an import of its own."""
    from training.trainers.architectures import ARCHITECTURES

    return ARCHITECTURES


def training_run_start(
    *,
    spec: dict,
    datasets: list[Dataset] | None = None,
    include_reviews: bool = True,
    created_by: User | None = None,
    trigger: str = TrainingRun.Trigger.MANUAL,
    enqueue: bool = True,
    audit: AuditContext | None = None,
) -> TrainingRun:
    """Create a QUEUED run; with ``enqueue`` it is sent to the training queue on commit.

    Raises ValueError for an invalid spec and TrainingDataMissing (a ValueError) when the
    chosen data cannot fill both the train and the validation split, before any run exists.
    """
    from training.services.runspec import spec_with_defaults

    full_spec = spec_with_defaults(spec)
    problem = training_data_problem(spec=full_spec, datasets=datasets or [], include_reviews=include_reviews)
    if problem is not None:
        raise TrainingDataMissing(problem)
    with transaction.atomic():
        run = TrainingRun.objects.create(
            spec=full_spec, include_reviews=include_reviews, created_by=created_by, trigger=trigger
        )
        run.datasets.set(datasets or [])
        audit_record(actor=created_by, action="training_start", obj=run, audit=audit, detail={"trigger": trigger})
        if enqueue:
            from training.tasks import training_run_task

            transaction.on_commit(lambda: training_run_task.delay(run.pk))
    return run


class TrainingDataMissing(ValueError):
    """There is not enough labelled data to train; the message says what is missing and how to add it."""


HOW_TO_ADD_DATA = (
    "Import a folder of labelled images (DIR/<LABEL>/files or DIR/<split>/<LABEL>/files, LABEL one of "
    f"{', '.join(Label.values)}) on the Import dataset page ({IMPORT_PAGE}) or with "
    "`python manage.py import_dataset DIR --layout folders`, or have radiologists review images."
)


def training_data_problem(*, spec: dict[str, Any], datasets: list[Dataset], include_reviews: bool) -> str | None:
    """Why a run with these inputs could not train (None when it can): no labelled image at
    all, or too few patients to fill both the train and the validation split."""
    items = collect_items(datasets=datasets, include_reviews=include_reviews, views=spec.get("views") or [])
    if not items:
        if not Dataset.objects.exists() and not (include_reviews and reviewed_images().exists()):
            return f"There is no training data yet: no dataset has been imported and no reviewed image is included. {HOW_TO_ADD_DATA}"
        chosen = ", ".join(d.name for d in datasets) or "all datasets"
        views = f" with views {', '.join(spec['views'])}" if spec.get("views") else ""
        return f"The chosen data ({chosen}{views}) holds no labelled image. {HOW_TO_ADD_DATA}"
    splits = split_items(items, seed=int(spec["train"]["seed"]), val_fraction=float(spec.get("val_fraction", 0.15)))
    if not splits["train"] or not splits["val"]:
        return (
            f"Training needs labelled images in both the train and the validation split; the chosen data has "
            f"{len(items)} image(s): {len(splits['train'])} train, {len(splits['val'])} validation, "
            f"{len(splits['test'])} test. Add images of more patients. {HOW_TO_ADD_DATA}"
        )
    return None


def training_items(run: TrainingRun) -> list[Item]:
    """Dataset images of the run (all datasets when none chosen) plus reviewed images."""
    return collect_items(
        datasets=list(run.datasets.all()), include_reviews=run.include_reviews, views=run.spec.get("views") or []
    )


def collect_items(*, datasets: list[Dataset], include_reviews: bool, views: list[str]) -> list[Item]:
    """Dataset images of ``datasets`` (all datasets when empty), plus reviewed images when
    ``include_reviews``, kept when their view is one of ``views`` (all when empty)."""
    datasets = datasets or list(Dataset.objects.all())
    items = [
        Item(
            key=f"dataset:{row.pk}",
            path=local_path(str(row.file.name)),
            label=row.label,
            patient=row.patient_key,
            split=row.split,
            source=row.source or row.dataset.name,
            view=row.view_position,
            stored_name=str(row.file.name),
        )
        for row in DatasetImage.objects.filter(dataset__in=datasets).select_related("dataset")
    ]
    if include_reviews:
        for image in reviewed_images().select_related("study__patient"):
            items.append(
                Item(
                    key=f"image:{image.pk}",
                    path=local_path(str(image.file.name)),
                    label=image.reviewed_label,  # type: ignore[attr-defined]  # annotated by reviewed_images()
                    patient=f"site:{image.study.patient.mrn}",
                    split="",
                    source="site",
                    view=image.study.view_position,
                    stored_name=str(image.file.name),
                )
            )
    wanted = set(views)
    return [item for item in items if not wanted or item.view.upper() in wanted]


def split_items(items: list[Item], *, seed: int, val_fraction: float) -> dict[str, list[Item]]:
    """Patient-disjoint train/val/test lists, recorded splits respected."""
    rank = {"test": 3, "val": 2, "train": 1, "": 0}
    patients: dict[str, tuple[str, str]] = {}
    for item in items:
        recorded, label = patients.get(item.patient, ("", item.label))
        patients[item.patient] = (max(recorded, item.split, key=rank.__getitem__), label)
    assigned = assign_splits(patients, seed=seed, val_fraction=val_fraction)
    out: dict[str, list[Item]] = {"train": [], "val": [], "test": []}
    for item in items:
        out[assigned[item.patient]].append(item)
    return out


def training_run_execute(*, run_id: int) -> TrainingRun | None:
    """Execute a run end to end. Returns None when another executor holds it."""
    lease = settings.CXR["TRAINING_HARD_TIME_LIMIT"] + 60
    token = claims.claim(
        TrainingRun,
        run_id,
        pending=TrainingRun.Status.QUEUED,
        running=TrainingRun.Status.RUNNING,
        lease_seconds=lease,
        started_at=timezone.now(),
    )
    if token is None:
        return None
    run = TrainingRun.objects.get(pk=run_id)
    try:
        version = _execute(run)
    except Exception as exc:  # the run row must always end in a final state with the reason
        log.exception("training run %s failed", run_id)
        claims.complete(
            TrainingRun,
            run_id,
            token,
            running=TrainingRun.Status.RUNNING,
            status=TrainingRun.Status.FAILED,
            error_message=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now(),
        )
        raise
    claims.complete(
        TrainingRun,
        run_id,
        token,
        running=TrainingRun.Status.RUNNING,
        status=TrainingRun.Status.SUCCEEDED,
        model_version=version,
        finished_at=timezone.now(),
    )
    return TrainingRun.objects.get(pk=run_id)


class RunResumeRefused(Exception):
    """A run cannot be resumed (finished, or its claim is still alive); the message says why."""


def training_run_resume(*, run_id: int) -> TrainingRun:
    """Execute a crashed run again from its checkpoint, through the same claim as the task.

    A FAILED run goes back to QUEUED (one conditional update, so two resumes cannot both
    re-queue it). A RUNNING run is taken over only when its lease has expired or its
    claiming process is provably dead (``claims.claim``); a live claim means another
    executor is training it, so the resume is refused rather than starting a second one.
    """
    run = TrainingRun.objects.filter(pk=run_id).first()
    if run is None:
        raise RunResumeRefused(f"There is no training run {run_id}.")
    if run.status == TrainingRun.Status.SUCCEEDED:
        raise RunResumeRefused(f"Training run {run_id} already succeeded; start a new run instead.")
    TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.FAILED).update(
        status=TrainingRun.Status.QUEUED, claim_token=None, claimed_by="", lease_expires_at=None, error_message=""
    )
    finished = training_run_execute(run_id=run_id)
    if finished is None:
        run.refresh_from_db()
        raise RunResumeRefused(
            f"Training run {run_id} is {run.status} and its claim is alive (held by {run.claimed_by or 'unknown'}"
            f" until {run.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC); it is not resumed. Resume it only after "
            "that worker has died or the lease has expired."
            if run.lease_expires_at
            else f"Training run {run_id} is {run.status} and held by another executor; it is not resumed."
        )
    return finished


def _execute(run: TrainingRun) -> ModelVersion:
    from training.trainers.candidate import build_candidate

    spec = run.spec
    splits = split_items(
        training_items(run), seed=int(spec["train"]["seed"]), val_fraction=float(spec.get("val_fraction", 0.15))
    )
    if not splits["train"] or not splits["val"]:
        raise ValueError("Training needs labelled images in both the train and validation splits.")
    # The trainers read paths: with object storage, this worker's local copies of the images.
    local_copies_fetch(item.stored_name for part in splits.values() for item in part if item.stored_name)
    # Stable for the run (a resume finds its checkpoint) but unique across databases.
    workdir = Path(settings.VAR_DIR) / "training-runs" / f"run-{run.pk}-{run.created_at:%Y%m%dT%H%M%S%f}"
    staging = Path(tempfile.mkdtemp(prefix="artifact-", dir=workdir.parent if workdir.parent.exists() else None))
    started = time.monotonic()

    history: dict[str, list[float]] = {}
    latest: dict[str, Any] = {}

    def progress(record: dict) -> None:
        # The row carries the curve so far, so a page opened mid-run can draw all epochs;
        # a stage-only record (export, evaluation) keeps the last epoch's figures.
        for key in ("loss", "val_loss", "accuracy", "val_accuracy", "val_auc"):
            if isinstance(record.get(key), (int, float)):
                history.setdefault(key, []).append(float(record[key]))
        latest.update(record)
        TrainingRun.objects.filter(pk=run.pk).update(progress=dict(latest), history=history)

    try:
        candidate = build_candidate(
            spec=spec,
            splits=splits,
            workdir=workdir,
            artifact_dir=staging / "artifact",
            cache_dir=Path(settings.VAR_DIR) / "preprocessed-cache",
            progress=progress,
        )
        champion = registry.active_version(run.name)
        reviewed = sum(1 for item in splits["train"] + splits["val"] if item.key.startswith("image:"))
        version = registry.version_register(
            source_dir=staging / "artifact",
            name=run.name,
            created_by=run.created_by,
            parent=champion,
            data_snapshot=candidate.snapshot,
            reviewed_images_used=reviewed,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress({"stage": "gate"})
    decision = _gate(version, champion, splits["val"])
    TrainingRun.objects.filter(pk=run.pk).update(
        history=candidate.history,
        promotion=decision,
        progress={**TrainingRun.objects.get(pk=run.pk).progress, "seconds": round(time.monotonic() - started, 1)},
    )
    if decision["promote"]:
        registry.version_activate(
            version=version, actor=run.created_by, reason=f"training run {run.pk} passed the gate", gate=decision
        )
    return version


def _gate(candidate: ModelVersion, champion: ModelVersion | None, val_items: list[Item]) -> dict[str, Any]:
    """Champion/challenger on the same frozen validation files, through the served path,
    and on the versions' unseen-source figures (``training.evaluation.gate``)."""
    from training.evaluation import gate_decision
    from training.services.evaluate import LabelledFile, evaluate_files

    files = [LabelledFile(path=item.path, label=item.label, source=item.source) for item in val_items]
    runtime = settings.CXR["INFERENCE_RUNTIME"]

    def report(version: ModelVersion) -> dict:
        return evaluate_files(
            artifact_local_dir(version),
            files,
            threshold=float(version.thresholds["abnormal"]),
            labels=list(version.labels),
            runtime=runtime,
        )

    challenger = report(candidate)
    incumbent = report(champion) if champion is not None else None
    decision = gate_decision(
        challenger,
        incumbent,
        candidate_unseen=(candidate.metrics or {}).get("unseen_sources"),
        champion_unseen=(champion.metrics or {}).get("unseen_sources") if champion is not None else None,
        target_sensitivity=float(candidate.thresholds.get("target_sensitivity", 0.95)),
    )
    decision["candidate"] = candidate.version
    decision["champion"] = champion.version if champion else None
    return decision


def retrain_check(*, name: str = registry.DEFAULT_NAME) -> TrainingRun | None:
    """Start a scheduled run when enough new reviewed images arrived since the active version."""
    if TrainingRun.objects.filter(status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]).exists():
        return None
    active = registry.active_version(name)
    reviewed = reviewed_images()
    if active is not None:
        reviewed = reviewed.filter(reviewed_at__gt=active.created_at)  # type: ignore[misc]  # an annotation
    waiting = reviewed.count()
    if waiting < settings.CXR["RETRAIN_MIN_REVIEWS"]:
        return None
    spec = dict(active.hyperparameters.get("run_spec", {})) if active is not None else {}
    log.info("scheduled retraining: %s reviewed images since the active version", waiting)
    try:
        return training_run_start(spec=spec, trigger=TrainingRun.Trigger.SCHEDULE)
    except TrainingDataMissing as exc:
        log.warning("scheduled retraining not started: %s", exc)
        return None


def reviewed_images_waiting(*, name: str = registry.DEFAULT_NAME) -> int:
    """How many reviewed images the active version has not been trained on."""
    active = registry.active_version(name)
    reviewed = reviewed_images()
    return reviewed.filter(reviewed_at__gt=active.created_at).count() if active else reviewed.count()  # type: ignore[misc]
