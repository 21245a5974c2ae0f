"""Scale benchmark: seed PostgreSQL with N studies (3 images and predictions each), then
time the worklist, study page, API list, FHIR read and the sweeper with query counts.

A script that prints numbers, not a test. It creates its own database and drops it at
the end unless --keep:

    python benchmarks/scale.py                 # 100,000 studies / 300,000 images
    python benchmarks/scale.py --studies 5000  # a quick run

PostgreSQL at --pg (trust auth); Redis broker from CELERY_BROKER_URL (only touched if the
sweeper finds work to re-send, which it does not: every seeded prediction is done).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--images-per-study", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=20, help="requests per measured page")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db", default="cxr_scale_bench")
    parser.add_argument("--keep", action="store_true", help="keep the database (re-used by --reuse)")
    parser.add_argument("--reuse", action="store_true", help="measure an existing seeded database")
    return parser.parse_args()


def _admin_sql(pg: str, sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(f"{pg}/postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def _seed(n_studies: int, per_study: int) -> None:
    from django.contrib.auth.models import User
    from django.utils import timezone

    from classifier.models import Image, Label, Patient, Prediction, Review, Study
    from classifier.services.studies import study_refresh_all

    rng = random.Random(14)
    from training.models import ModelVersion

    clinician = User.objects.get(username="bench_clinician")
    radiologist = User.objects.get(username="bench_radiologist")
    version = ModelVersion.objects.order_by("-pk").first()  # the shipped model, activated by migrate
    batch = 5000
    now = timezone.now()
    t0 = time.perf_counter()
    for start in range(0, n_studies, batch):
        count = min(batch, n_studies - start)
        patients = Patient.objects.bulk_create(
            [Patient(mrn=f"MRN{start + i:08d}", name=f"Patient {start + i}", sex="U") for i in range(count)]
        )
        studies = Study.objects.bulk_create(
            [
                Study(
                    patient=p,
                    accession_number=f"ACC{start + i:08d}",
                    requesting_clinician=clinician,
                    status=rng.choice([Study.Status.DONE] * 8 + [Study.Status.REVIEWED] * 2),
                    priority=rng.random(),
                    study_date=now.date(),
                )
                for i, p in enumerate(patients)
            ]
        )
        images = Image.objects.bulk_create(
            [
                Image(
                    study=s,
                    file=f"images/bench/{s.pk}-{k}.png",
                    sha256=f"{s.pk:032x}{k:032x}",
                    size_bytes=1024,
                    format=Image.Format.PNG,
                    width=1024,
                    height=1024,
                    uploaded_by=clinician,
                )
                for s in studies
                for k in range(per_study)
            ]
        )
        predictions = []
        for image in images:
            p = rng.random()
            predictions.append(
                Prediction(
                    image=image,
                    model_version=version,
                    status=Prediction.Status.DONE,
                    probabilities={"NORMAL": 1 - p, "PNEUMONIA_BACTERIAL": p},
                    label=Label.PNEUMONIA_BACTERIAL if p >= 0.5 else Label.NORMAL,
                    p_abnormal=p,
                    flag=p >= 0.5,
                    threshold=0.5,
                    runtime="tflite",
                    finished_at=now,
                )
            )
        Prediction.objects.bulk_create(predictions)
        # A study seeded as reviewed has a review of each image, so that refreshing it (the
        # backfill below, any later refresh) keeps it reviewed.
        reviewed = {s.pk for s in studies if s.status == Study.Status.REVIEWED}
        Review.objects.bulk_create(
            Review(
                prediction=p, image=p.image, radiologist=radiologist, decision=Review.Decision.CONFIRM, label=p.label
            )
            for p in predictions
            if p.image.study_id in reviewed
        )
        print(f"  seeded {start + count:,} studies ({time.perf_counter() - t0:.0f} s)", flush=True)
    # created_at is auto_now_add: spread it over a year so waiting terms and dates vary.
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("UPDATE classifier_study SET created_at = now() - (random() * interval '365 days')")
    # Rows bulk-created here bypass the services: store each study's status, priority and
    # current result as study_refresh does (what migration 0012 does to an existing database).
    print(f"  refreshed {study_refresh_all():,} studies ({time.perf_counter() - t0:.0f} s)", flush=True)
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE")  # the refresh rewrote every study row: as autovacuum would


def _users() -> dict[str, Any]:
    from django.contrib.auth.models import User

    from classifier.roles import ADMIN, CLINICIAN, RADIOLOGIST, ensure_roles

    groups = ensure_roles()
    users = {}
    for role in (CLINICIAN, RADIOLOGIST, ADMIN):
        user, _ = User.objects.get_or_create(username=f"bench_{role.lower()}")
        user.groups.add(groups[role])
        users[role] = user
    return users


def _measure(label: str, fn: Any, repeat: int) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    # CaptureQueriesContext keeps at most 9,000 queries (the sweeper runs more): count
    # every one with an execute wrapper as well.
    counted = [0]

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        counted[0] += 1
        return execute(sql, params, many, context)

    fn()  # warm-up (first-request imports, caches)
    times, queries, status = [], 0, None
    for _ in range(repeat):
        counted[0] = 0
        with CaptureQueriesContext(connection), connection.execute_wrapper(count):
            t0 = time.perf_counter()
            status = fn()
            times.append((time.perf_counter() - t0) * 1000)
        queries = counted[0]
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    row = {"what": label, "p50": statistics.median(times), "p95": p95, "queries": queries, "status": status}
    print(f"| {label} | {row['p50']:.1f} | {p95:.1f} | {queries} | {status} |", flush=True)
    return row


def main() -> None:
    args = _args()
    os.environ["DATABASE_URL"] = f"{args.pg}/{args.db}"
    os.environ.setdefault("CXR_VAR_DIR", tempfile.mkdtemp(prefix="cxr-scale-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cxrsite.settings")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost")
    os.environ.setdefault("CXR_WORKER_WARM_UP", "false")
    if not args.reuse:
        _admin_sql(args.pg, f'DROP DATABASE IF EXISTS "{args.db}"')
        _admin_sql(args.pg, f'CREATE DATABASE "{args.db}"')
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    from classifier.models import Prediction, Study
    from classifier.roles import CLINICIAN, RADIOLOGIST
    from classifier.services.predictions import prediction_sweep

    try:
        t0 = time.perf_counter()
        if not args.reuse:
            call_command("migrate", verbosity=0)
        users = _users()
        if not args.reuse:
            _seed(args.studies, args.images_per_study)
        print(f"setup {time.perf_counter() - t0:.0f} s: {Study.objects.count():,} studies", flush=True)

        radiologist, clinician = Client(), Client()
        radiologist.force_login(users[RADIOLOGIST])
        clinician.force_login(users[CLINICIAN])
        study_id = Study.objects.order_by("pk").values_list("pk", flat=True)[Study.objects.count() // 2]
        prediction_id = Prediction.objects.filter(image__study_id=study_id).values_list("pk", flat=True)[0]
        mrn = Study.objects.get(pk=study_id).patient.mrn

        def get(client: Client, url: str) -> Any:
            return lambda: client.get(url).status_code

        print("\n| what | p50 ms | p95 ms | queries | status |\n|---|---|---|---|---|")
        _measure("worklist, first page", get(radiologist, "/"), args.repeat)
        _measure("worklist, flag=yes", get(radiologist, "/?flag=yes"), args.repeat)
        _measure("worklist, MRN search", get(radiologist, f"/?q={mrn}"), args.repeat)
        _measure("study page", get(radiologist, f"/studies/{study_id}/"), args.repeat)
        _measure("API /api/v1/studies/", get(clinician, "/api/v1/studies/"), args.repeat)
        _measure("FHIR DiagnosticReport read", get(clinician, f"/fhir/DiagnosticReport/{prediction_id}"), args.repeat)
        _measure("sweeper (prediction_sweep)", lambda: prediction_sweep()["refreshed"], max(3, args.repeat // 5))
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            _admin_sql(args.pg, f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')


if __name__ == "__main__":
    main()
