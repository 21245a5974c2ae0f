"""Prediction lifecycle: request on upload, run in the worker, sweep what got stranded.

Concurrency contract: the database row is the source of truth, the broker message only a
nudge. A prediction is claimed atomically (classifier.claims) before any work, so
duplicate or redelivered messages are no-ops, and the outcome is written only by the
holder of the claim. The sweeper re-sends PENDING rows the broker lost and reclaims
RUNNING rows whose worker died, so every prediction ends DONE or FAILED exactly once.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import time
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import OperationalError, transaction
from django.utils import timezone

from classifier import claims
from classifier.artifact_store import artifact_local_dir
from classifier.inference.manifest import ArtifactIntegrityError
from classifier.models import Image, Prediction
from classifier.services.audit import AuditContext, audit_record
from classifier.services.broker import broker_send_failed, broker_send_succeeded
from classifier.services.dicom_results import dicom_delivery_sweep, dicom_results_emit
from classifier.services.studies import study_refresh, study_refresh_unreviewed
from classifier.services.webhooks import prediction_finished, webhook_sweep
from classifier.storage import generated_name, storage_unavailable_as_oserror

if TYPE_CHECKING:  # the worker's runtime types; never imported by the web process
    from classifier.imaging import ImagingError
    from classifier.inference.pipeline import InferencePipeline, InferenceResult
    from training.models import ModelVersion, SiteThreshold

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3  # a worker killed this often on one image means the image kills workers


def _cfg(key: str) -> Any:
    return settings.CXR[key]


@transaction.atomic
def prediction_request(*, image: Image, requested_by: User | None = None) -> Prediction:
    """Create a PENDING prediction and enqueue it once the transaction commits."""
    prediction = Prediction.objects.create(image=image, requested_by=requested_by)
    _enqueue_on_commit(prediction.pk)
    return prediction


@transaction.atomic
def prediction_rerun(*, image: Image, requested_by: User | None, audit: AuditContext | None = None) -> Prediction:
    """A new prediction with whatever version is active when it runs; the old one is kept.

    The study is refreshed in the same transaction: the re-run is the image's current
    result, so the study's stored flag and status say pending until it finishes."""
    prediction = prediction_request(image=image, requested_by=requested_by)
    study_refresh(image.study_id)
    audit_record(actor=requested_by, action="prediction_rerun", obj=prediction, audit=audit)
    return prediction


def _enqueue_on_commit(prediction_id: int) -> None:
    from classifier.tasks.predictions import prediction_run_task

    def send() -> None:
        try:
            prediction_run_task.delay(prediction_id)
        except Exception as exc:  # broker down: the row is safe, the sweeper will send it later
            broker_send_failed(f"prediction {prediction_id}", exc)
        else:
            broker_send_succeeded()

    transaction.on_commit(send)


def prediction_run(*, prediction_id: int) -> list[int]:
    """Run the active model on this prediction and, batched with it, other waiting ones.

    Returns the ids this call completed (empty when another worker holds the claim).
    Raises only errors worth retrying (storage or database trouble); everything about the
    image itself ends as FAILED with a readable reason.
    """
    from training.registry import active_version

    lease = _cfg("INFERENCE_HARD_TIME_LIMIT") + 5
    token = claims.claim(
        Prediction,
        prediction_id,
        pending=Prediction.Status.PENDING,
        running=Prediction.Status.RUNNING,
        lease_seconds=lease,
        started_at=timezone.now(),
    )
    if token is None:
        log.info("prediction %s already claimed; nothing to do", prediction_id)
        return []
    batch = [(prediction_id, token), *_claim_more(prediction_id, lease)]
    version = active_version()
    live = _fail_exhausted(batch)
    if version is None:
        for pk, tok in live:
            _fail(pk, tok, "no_active_model", "No model version is active; an administrator must activate one.")
        return [pk for pk, _ in live]
    try:
        return _run_batch(live, version)
    except (OSError, OperationalError):
        raise  # transient: the task releases the claims and retries with backoff
    except ArtifactIntegrityError as exc:  # a modified or missing artifact file is never loaded
        log.error("prediction batch %s: %s is refused: %s", [pk for pk, _ in live], version, exc)
        for pk, tok in live:
            _fail(
                pk,
                tok,
                "model_integrity",
                "The active model's files failed their integrity check; "
                "it needs to be read without AI support until an administrator restores the model.",
            )
        return [pk for pk, _ in live]
    except Exception:  # a defect or a broken artifact must not strand the rows as RUNNING
        log.exception("prediction batch %s failed unexpectedly with %s", [pk for pk, _ in live], version)
        for pk, tok in live:
            _fail(
                pk,
                tok,
                "internal_error",
                "The analysis failed because of an internal error; it needs to be read without AI support.",
            )
        return [pk for pk, _ in live]


def _claim_more(first_id: int, lease: float) -> list[tuple[int, uuid.UUID]]:
    """Claim up to batch_size - 1 other waiting predictions, oldest first."""
    wanted = _cfg("INFERENCE_BATCH_SIZE") - 1
    if wanted <= 0:
        return []
    candidates = list(
        Prediction.objects.filter(status=Prediction.Status.PENDING)
        .exclude(pk=first_id)
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)[:wanted]
    )
    token, claimed = claims.claim_many(
        Prediction,
        candidates,
        pending=Prediction.Status.PENDING,
        running=Prediction.Status.RUNNING,
        lease_seconds=lease,
        started_at=timezone.now(),
    )
    return [(pk, token) for pk in claimed]


def _fail_exhausted(batch: list[tuple[int, uuid.UUID]]) -> list[tuple[int, uuid.UUID]]:
    """Fail the rows claimed more than MAX_ATTEMPTS times; returns the others."""
    attempts = dict(Prediction.objects.filter(pk__in=[pk for pk, _ in batch]).values_list("pk", "attempts"))
    live = []
    for pk, token in batch:
        if (attempts.get(pk) or 0) <= MAX_ATTEMPTS:
            live.append((pk, token))
        else:
            _fail(
                pk,
                token,
                "worker_lost",
                "The analysis stopped unexpectedly several times on this image; "
                "it needs to be read without AI support.",
            )
    return live


@transaction.atomic
def _fail(pk: int, token: uuid.UUID, code: str, message: str) -> None:
    """FAILED with ``message``; the study refresh and the webhook deliveries commit with it."""
    if _complete_failed(pk, token, code, message):
        study_refresh(Prediction.objects.filter(pk=pk).values_list("image__study_id", flat=True).get())
        prediction_finished(pk)


def _complete_failed(pk: int, token: uuid.UUID, code: str, message: str) -> bool:
    if not claims.complete(
        Prediction,
        pk,
        token,
        running=Prediction.Status.RUNNING,
        status=Prediction.Status.FAILED,
        error_code=code,
        error_message=message,
        finished_at=timezone.now(),
        lease_expires_at=None,
    ):
        return False
    log.info("prediction %s failed: %s", pk, code)
    return True


def _run_batch(batch: list[tuple[int, uuid.UUID]], version: ModelVersion) -> list[int]:
    """Run the batch, write each image's files, then commit every outcome row together
    with its study's new status and priority (no reader sees a finished prediction in a
    study that still says queued) and its webhook deliveries (none is lost to a crash)."""
    from classifier.imaging import ImagingError
    from classifier.inference.pipeline import get_pipeline
    from training.registry import site_threshold_in_force

    runtime = _cfg("INFERENCE_RUNTIME")
    site = site_threshold_in_force(version)
    # Fetched from the shared model storage and checked on first use when not on this host.
    pipeline = get_pipeline(artifact_local_dir(version), runtime=runtime, threads=_cfg("INFERENCE_THREADS"))
    predictions = {p.pk: p for p in Prediction.objects.select_related("image").filter(pk__in=[pk for pk, _ in batch])}
    payloads, kept = [], []
    for pk, token in batch:
        try:
            with (
                storage_unavailable_as_oserror(f"reading image {predictions[pk].image_id}"),
                predictions[pk].image.file.open("rb") as handle,
            ):
                payloads.append(handle.read())
            kept.append((pk, token))
        except FileNotFoundError:
            _fail(pk, token, "file_missing", "The stored image file could not be found.")
    # The first analysis of an image also keeps its film (original values) for the viewer.
    films = [not predictions[pk].image.film for pk, _ in kept]
    results = run_each(pipeline, payloads, batch_size=_cfg("INFERENCE_BATCH_SIZE"), films=films)
    with storage_unavailable_as_oserror("writing heatmaps"):
        files = {
            pk: _write_files(predictions[pk], result)
            for (pk, _), result in zip(kept, results, strict=False)
            if not isinstance(result, ImagingError) and _finite(result)
        }
    committed: list[int] = []
    with transaction.atomic():
        for (pk, token), result in zip(kept, results, strict=False):
            if isinstance(result, ImagingError):
                written = _complete_failed(pk, token, result.code, result.message)
            elif pk not in files:
                log.error("prediction %s: model %s produced non-finite output", pk, version)
                written = _complete_failed(
                    pk,
                    token,
                    "model_error",
                    "The model produced an invalid result for this image; it needs to be read without AI support.",
                )
            else:
                paths = dict(files[pk])
                film = paths.pop("film", None)
                written = _complete_done(pk, token, result, version, site, runtime, paths)
                if written and film is not None and result.film is not None:
                    # Only the first film is kept; a concurrent re-run's copy is deleted below.
                    kept_film = Image.objects.filter(pk=predictions[pk].image_id, film="").update(
                        film=film, film_meta=result.film[1]
                    )
                    if not kept_film:
                        transaction.on_commit(functools.partial(default_storage.delete, film))
            if written:
                committed.append(pk)
        if committed:
            study_refresh(*{predictions[pk].image.study_id for pk in committed})
        for pk in committed:
            prediction_finished(pk)
            dicom_results_emit(prediction_id=pk)
    for pk, paths in files.items():
        if pk not in committed:  # lost the claim to a reclaim: the other attempt owns the outcome
            for path in paths.values():
                predictions[pk].heatmap.storage.delete(path)
    return [pk for pk, _ in kept]


def _finite(result: InferenceResult) -> bool:
    return all(math.isfinite(p) for p in result.probabilities.values())


def run_each(
    pipeline: InferencePipeline, payloads: list[bytes], *, batch_size: int, films: list[bool] | None = None
) -> list[InferenceResult | ImagingError]:
    """Results in order, an ImagingError in place of each file that cannot be decoded.

    The batch path runs first; only when a file in it fails are the files run one by
    one, so one corrupt upload never fails its batch-mates.
    """
    from classifier.imaging import ImagingError

    try:
        batch: list[InferenceResult | ImagingError] = list(
            pipeline.run_many(payloads, batch_size=batch_size, films=films)
        )
        return batch
    except ImagingError:
        results: list[InferenceResult | ImagingError] = []
        for i, data in enumerate(payloads):
            try:
                results.append(pipeline.run_many([data], batch_size=1, films=[bool(films and films[i])])[0])
            except ImagingError as exc:
                results.append(exc)
        return results


def _write_files(prediction: Prediction, result: InferenceResult) -> dict[str, str]:
    """Store the overlay, raw map and display image under generated names; returns the
    field -> path mapping for the row.  Adds the "store" timing to the result."""
    from classifier.inference.gradcam import heatmap_rgba_png, png_bytes

    started = time.perf_counter()
    name = generated_name("heatmaps")
    if result.heatmap_raw is None:  # the worker always asks for heatmaps
        raise ValueError("an inference result without its heatmap cannot be stored")
    raw_buffer = io.BytesIO()
    np.save(raw_buffer, result.heatmap_raw.astype(np.float16))
    storage = prediction.heatmap.storage
    paths = {
        "heatmap": storage.save(f"{name}.png", ContentFile(result.heatmap_png)),
        "heatmap_raw": storage.save(f"{name}.npy", ContentFile(raw_buffer.getvalue())),
        "display": storage.save(
            f"{name}.display.png", ContentFile(result.display_png or png_bytes(result.preprocessed))
        ),
    }
    if result.geometry.get("content_box"):
        rgba = heatmap_rgba_png(result.heatmap_raw, result.geometry["content_box"])
        paths["heatmap_rgba"] = storage.save(f"{name}.rgba.png", ContentFile(rgba))
    if result.film is not None:
        paths["film"] = storage.save(generated_name("films", ".u16z"), ContentFile(result.film[0]))
    result.timings_ms["store"] = round((time.perf_counter() - started) * 1000, 2)
    return paths


def _complete_done(
    pk: int,
    token: uuid.UUID,
    result: InferenceResult,
    version: ModelVersion,
    site: SiteThreshold | None,
    runtime: str,
    paths: dict[str, str],
) -> bool:
    """Write the outcome row if this process still holds the claim; True when written.

    With a site threshold in force the flag is p(abnormal) against it, and the row records
    which one; ``thresholds`` always holds the artifact's own."""
    threshold = result.threshold if site is None else site.threshold
    return claims.complete(
        Prediction,
        pk,
        token,
        running=Prediction.Status.RUNNING,
        status=Prediction.Status.DONE,
        model_version=version,
        probabilities=result.probabilities,
        label=result.label,
        p_abnormal=result.p_abnormal,
        flag=result.p_abnormal >= threshold,
        threshold=threshold,
        thresholds=version.thresholds,
        site_threshold=site,
        runtime=runtime,
        timings_ms=result.timings_ms,
        geometry=result.geometry,
        error_code="",
        error_message="",
        finished_at=timezone.now(),
        lease_expires_at=None,
        **paths,
    )


def prediction_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Re-send stranded PENDING rows, reclaim RUNNING rows of dead workers, refresh
    priorities, and re-send webhook deliveries whose task was lost.

    A RUNNING row is stranded when its lease (the hard time limit) has expired, or, sooner,
    when its claimant ran on this host and its process is gone.
    """
    now = now or timezone.now()
    stale_pending = now - timedelta(seconds=_cfg("SWEEP_INTERVAL_SECONDS"))
    running = Prediction.objects.filter(status=Prediction.Status.RUNNING).values_list(
        "pk", "claim_token", "claimed_by", "lease_expires_at"
    )
    stranded = [
        (pk, token)
        for pk, token, who, lease in running
        if (lease is not None and lease < now) or claims.claimant_is_dead(who)
    ]
    reclaimed = []
    for pk, token in stranded:
        # Back to PENDING under the old token, so a live-but-slow worker cannot also finish it.
        if Prediction.objects.filter(pk=pk, status=Prediction.Status.RUNNING, claim_token=token).update(
            status=Prediction.Status.PENDING, claim_token=None, claimed_by="", lease_expires_at=None
        ):
            reclaimed.append(pk)
    pending = reclaimed + list(
        Prediction.objects.filter(status=Prediction.Status.PENDING, created_at__lt=stale_pending)
        .exclude(pk__in=reclaimed)
        .values_list("pk", flat=True)[:500]
    )
    from classifier.tasks.predictions import prediction_run_task

    for pk in pending:
        prediction_run_task.delay(pk)
    refreshed = study_refresh_unreviewed()
    return {
        "reclaimed": len(reclaimed),
        "resent": len(pending),
        "refreshed": refreshed,
        "webhooks_resent": webhook_sweep(now=now),
        "dicom_resent": dicom_delivery_sweep(now=now),
    }


def prediction_release(*, prediction_id: int) -> None:
    """Before a retry, give the rows this process holds (the task's batch) back to PENDING.

    A pool process runs one task at a time, so every RUNNING row it claimed belongs to
    the failing task; ``prediction_id`` is logged only.
    """
    released = Prediction.objects.filter(status=Prediction.Status.RUNNING, claimed_by=claims.worker_identity()).update(
        status=Prediction.Status.PENDING, claim_token=None, claimed_by="", lease_expires_at=None
    )
    log.warning("prediction %s: transient error, %s rows released for a retry", prediction_id, released)
