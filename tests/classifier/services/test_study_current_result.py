"""The study's stored current result and triage base, and the set-based sweeper.

``study_refresh`` stores ``current_flag`` / ``current_p_abnormal`` / ``triage_base``; the
worklist and the API read those columns, and the sweeper adds the waiting term to
``triage_base`` in SQL. These tests pin the stored values to the rule they replace (the
per-image latest-prediction annotation, kept here as the reference) and the SQL priority
to ``classifier.triage.priority_score``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import BooleanField, Case, Exists, OuterRef, Subquery, Value, When
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from classifier.models import Image, Patient, Prediction, Study
from classifier.services.predictions import prediction_rerun, prediction_run
from classifier.services.reviews import review_submit
from classifier.services.studies import (
    StudyFields,
    study_refresh_all,
    study_refresh_priorities,
    study_refresh_unreviewed,
)
from classifier.services.uploads import image_upload
from classifier.triage import priority_score, triage_base
from tests.conftest import synthetic_png

pytestmark = pytest.mark.django_db


def _reference(study_id: int) -> tuple[bool | None, float | None]:
    """(flagged, current_p_abnormal) by the rule the columns replace: computed per study
    from each image's latest prediction (the annotation the worklist used before)."""

    def current(field: str) -> Subquery:
        latest = Prediction.objects.filter(image=OuterRef("pk")).order_by("-created_at", "-id")
        return Subquery(latest.values(field)[:1])

    images = Image.objects.filter(study=OuterRef("pk")).annotate(flag_now=current("flag"), p_now=current("p_abnormal"))
    row = (
        Study.objects.filter(pk=study_id)
        .annotate(
            any_flagged=Exists(images.filter(flag_now=True)),
            any_unflagged=Exists(images.filter(flag_now=False)),
            p=Subquery(images.filter(p_now__isnull=False).order_by("-p_now").values("p_now")[:1]),
        )
        .annotate(
            flagged_ref=Case(
                When(any_flagged=True, then=Value(True)),
                When(any_unflagged=True, then=Value(False)),
                default=Value(None),
                output_field=BooleanField(null=True),
            )
        )
        .values_list("flagged_ref", "p")
        .get()
    )
    return row[0], row[1]


def _stored(study_id: int) -> tuple[bool | None, float | None]:
    from classifier.selectors.worklist import worklist_rows

    study = Study.objects.get(pk=study_id)
    shown = [row for row in worklist_rows() if row.pk == study_id]
    if shown:  # what the worklist reads is the stored column
        assert (shown[0].flagged, shown[0].current_p_abnormal) == (study.current_flag, study.current_p_abnormal)
    return study.current_flag, study.current_p_abnormal


def _upload(user, n: int, accession: str, data: bytes | None = None) -> Prediction:
    outcome = image_upload(
        data=data or synthetic_png(96, seed=n),
        filename=f"{n}.png",
        uploaded_by=user,
        fields=StudyFields(mrn="MRN-CR", accession_number=accession),
    )
    assert outcome.ok, outcome.error_message
    return outcome.prediction


def test_stored_result_follows_the_latest_predictions_through_finish_fail_rerun_and_review(
    active_tiny_model, role_users, settings, django_capture_on_commit_callbacks
) -> None:
    settings.CXR = {**settings.CXR, "INFERENCE_BATCH_SIZE": 8}
    clinician = role_users["Clinician"]
    with django_capture_on_commit_callbacks(execute=True):
        first = _upload(clinician, 1, "ACC-CR")
    study_id = first.image.study_id
    assert _stored(study_id) == _reference(study_id) == (None, None)  # pending

    prediction_run(prediction_id=first.pk)
    done = _stored(study_id)
    assert done == _reference(study_id) and done[0] is not None

    with django_capture_on_commit_callbacks(execute=True):  # a second image that cannot be decoded
        cut = _upload(clinician, 2, "ACC-CR", data=synthetic_png(96, seed=2)[:60])
    prediction_run(prediction_id=cut.pk)
    assert Prediction.objects.get(pk=cut.pk).status == "failed"
    assert _stored(study_id) == _reference(study_id) == done

    rerun = prediction_rerun(image=first.image, requested_by=clinician)
    assert _stored(study_id) == _reference(study_id) == (None, None)  # the re-run is the current result
    assert Study.objects.get(pk=study_id).status == "queued"

    prediction_run(prediction_id=rerun.pk)
    assert _stored(study_id) == _reference(study_id) == done  # same image, same model: same result

    finished = Prediction.objects.get(pk=rerun.pk)
    with django_capture_on_commit_callbacks(execute=True):
        review_submit(prediction=finished, radiologist=role_users["Radiologist"], decision="confirm")
    study = Study.objects.get(pk=study_id)
    assert _stored(study_id) == _reference(study_id)
    # One image reviewed, the failed one not: still prioritised, from the failed-or-done rule.
    assert study.status != "reviewed" and study.triage_base is not None


def test_the_backfill_stores_every_study_by_the_reference_rule() -> None:
    """Rows written without the services (a bulk load, a database from before 0010)."""
    patient = Patient.objects.create(mrn="BF")
    cases = {
        "flagged_then_unflagged_image": [[(0.9, True)], [(0.1, False)]],
        "rerun_unflagged": [[(0.8, True), (0.3, False)]],
        "pending": [[(None, None)]],
        "no_prediction": [[]],
        "no_image": [],
    }
    ids = {}
    for name, images in cases.items():
        study = Study.objects.create(patient=patient, accession_number=f"BF-{name}", status="done", priority=3.0)
        ids[name] = study.pk
        for k, predictions in enumerate(images):
            image = Image.objects.create(
                study=study,
                file=f"images/bf-{name}-{k}.png",
                sha256=f"{name}{k}",
                size_bytes=1,
                format="PNG",
                width=1,
                height=1,
            )
            for p, flag in predictions:
                status = "pending" if p is None else "done"
                Prediction.objects.create(image=image, status=status, p_abnormal=p, flag=flag)
    assert study_refresh_all(batch_size=2) == len(cases)
    for name, pk in ids.items():
        assert _stored(pk) == _reference(pk), name
    assert Study.objects.get(pk=ids["no_image"]).triage_base is None
    assert Study.objects.get(pk=ids["no_image"]).priority == 0.0
    assert Study.objects.get(pk=ids["pending"]).triage_base == 0.5


@pytest.mark.parametrize(
    ("p_abnormal", "flag", "failed"),
    [(None, None, True), (None, None, False), (0.734219, True, False), (0.1234567, False, False)],
    ids=["failed", "pending", "flagged", "unflagged"],
)
def test_the_sql_priority_equals_priority_score_below_at_and_above_the_max_wait(
    settings, p_abnormal, flag, failed
) -> None:
    max_wait = settings.CXR["TRIAGE_MAX_WAIT_MINUTES"]
    now = timezone.now()
    waits = [
        timedelta(0),
        timedelta(seconds=1, microseconds=7),
        timedelta(minutes=37, seconds=7, microseconds=123457),
        timedelta(minutes=max_wait) - timedelta(microseconds=1),
        timedelta(minutes=max_wait),
        timedelta(minutes=max_wait, microseconds=1),
        timedelta(minutes=max_wait + 27, seconds=30),
        timedelta(days=400, microseconds=999999),
        -timedelta(seconds=3),  # a clock step: created "after" now
    ]
    patient = Patient.objects.create(mrn="SQL")
    base = triage_base(p_abnormal=p_abnormal, flag=flag, failed=failed)
    studies = [
        Study.objects.create(patient=patient, accession_number=f"SQL-{i}", triage_base=base) for i in range(len(waits))
    ]
    for study, wait in zip(studies, waits, strict=True):
        Study.objects.filter(pk=study.pk).update(created_at=now - wait)
    assert study_refresh_priorities(now=now, batch_size=3) == len(waits)
    for study, wait in zip(studies, waits, strict=True):
        study.refresh_from_db()
        expected = priority_score(
            p_abnormal=p_abnormal,
            flag=flag,
            failed=failed,
            waited_minutes=(now - study.created_at).total_seconds() / 60,
            max_wait_minutes=max_wait,
        )
        assert study.priority == expected, wait
        assert study.updated_at == now  # as a refresh sets it


def _bulk_studies(n: int, offset: int) -> None:
    patients = Patient.objects.bulk_create(Patient(mrn=f"Q-{offset + i}") for i in range(n))
    studies = Study.objects.bulk_create(
        Study(patient=p, accession_number=f"Q-{offset + i}", triage_base=0.7) for i, p in enumerate(patients)
    )
    Image.objects.bulk_create(
        Image(study=s, file=f"images/q-{s.pk}.png", sha256=f"q{s.pk}", size_bytes=1, format="PNG", width=1, height=1)
        for s in studies
    )


def test_the_sweeper_runs_a_bounded_number_of_queries_whatever_the_number_of_studies() -> None:
    def sweep_queries(priority_batch: int) -> int:
        with CaptureQueriesContext(connection) as captured:
            study_refresh_unreviewed(priority_batch=priority_batch)
        return len(captured)

    _bulk_studies(30, 0)
    few = sweep_queries(10_000)
    _bulk_studies(600, 30)
    assert sweep_queries(10_000) == few  # 20x the studies, the same statements
    # Smaller batches: one more UPDATE (and its savepoint) per batch, nothing per study.
    assert sweep_queries(100) <= few + 3 * (630 // 100 + 1)
    assert set(Study.objects.values_list("priority", flat=True)) != {0.0}


SQLITE_CHECK = """
from datetime import timedelta
from django.conf import settings
from django.utils import timezone
from classifier.models import Patient, Study
from classifier.services.studies import study_refresh_priorities
from classifier.triage import priority_from_base
max_wait = settings.CXR["TRIAGE_MAX_WAIT_MINUTES"]
patient = Patient.objects.create(mrn="SQLITE")
waits = [0, 1.5, 37.3, max_wait, max_wait + 27.5, -0.05]
studies = [Study.objects.create(patient=patient, accession_number=f"S{i}", triage_base=0.7) for i in range(len(waits))]
for now in (timezone.now(), timezone.now().replace(microsecond=0)):  # stored with and without a fraction
    for study, wait in zip(studies, waits):
        Study.objects.filter(pk=study.pk).update(created_at=now - timedelta(minutes=wait))
    assert study_refresh_priorities(now=now, batch_size=4) == len(waits)
    for study in Study.objects.order_by("pk"):
        waited = (now - study.created_at).total_seconds() / 60
        expected = priority_from_base(base=0.7, waited_minutes=waited, max_wait_minutes=max_wait)
        assert study.priority == expected, (waited, study.priority, expected)
print("sqlite priorities ok")
"""


def test_the_sql_priority_equals_priority_score_on_sqlite_too(tmp_path) -> None:
    """The embedded default database runs the same sweeper: its datetimes are text, read
    as exact microseconds (julianday's float days put a study at exactly the maximum
    wait below it)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", CXR_VAR_DIR=str(tmp_path))
    for command in (["migrate", "--noinput", "-v0"], ["shell", "-c", SQLITE_CHECK]):
        out = subprocess.run(
            [sys.executable, "manage.py", *command], cwd=root, env=env, capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stdout + out.stderr
    assert "sqlite priorities ok" in out.stdout
