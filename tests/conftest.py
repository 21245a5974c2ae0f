"""Shared fixtures: users and API clients per role, a real Celery worker subprocess, synthetic images."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import hypothesis
import numpy as np
import pytest
from django.conf import settings
from django.core.cache import cache
from PIL import Image as PILImage
from rest_framework.test import APIClient

ROOT = Path(__file__).resolve().parent.parent

# No seed varies between runs: property tests draw the same examples every time (a
# failure found once is found again), and keep no example database between runs.
hypothesis.settings.register_profile("deterministic", derandomize=True, database=None)
hypothesis.settings.load_profile("deterministic")


def needs_shared_data(path: Path) -> None:
    """Skip a test whose ``../shared`` data is missing; in CI (CI=true) fail it instead, so a
    missing data set can never pass as a green run."""
    if path.exists():
        return
    message = f"shared data {path} is missing (set CXR_DATA_DIR)"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture
def role_users(db) -> dict[str, object]:
    """One active user per role plus one with no role, keyed by role name ('none' for none)."""
    from django.contrib.auth import get_user_model

    from classifier.roles import ensure_roles

    groups = ensure_roles()
    users = {}
    for role in ("Clinician", "Radiologist", "Admin", "none"):
        user = get_user_model().objects.create_user(username=f"u-{role.lower()}", password="pw-for-tests-1")
        if role != "none":
            user.groups.add(groups[role])
        users[role] = user
    return users


ROLES = ("Clinician", "Radiologist", "Admin")


@pytest.fixture(autouse=True)
def _fast_auth_and_fresh_throttles(settings) -> None:
    """Fresh throttle counters; a fast password hasher (role_users hashes four passwords per test)."""
    cache.clear()
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api_tokens(role_users) -> dict[str, str]:
    """A raw API token per role (created by the admin user), high rate so tests are not throttled."""
    from classifier.services.tokens import api_token_create

    return {
        role: api_token_create(name=f"{role} system", role=role, created_by=role_users["Admin"], rate="100000/min")[1]
        for role in ROLES
    }


@pytest.fixture
def client_for(api_tokens, role_users) -> Callable[[str], APIClient]:
    """An APIClient for a role: a token for the three roles, a session for 'none', anonymous for 'anon'."""

    def make(role: str) -> APIClient:
        client = APIClient()
        if role in api_tokens:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_tokens[role]}")
        elif role == "none":
            client.force_login(role_users["none"])
        return client

    return make


def synthetic_png(size: int = 96, seed: int = 0, bits: int = 8) -> bytes:
    """A chest-like synthetic radiograph: bright body, two darker lung ellipses, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    body = 0.75 - 0.25 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2)
    for cx in (0.32, 0.68):
        lung = ((xx - cx) / 0.15) ** 2 + ((yy - 0.5) / 0.3) ** 2 < 1
        body = np.where(lung, 0.25, body)
    img = np.clip(body + rng.normal(0, 0.03, body.shape), 0, 1)
    buffer = io.BytesIO()
    if bits == 16:
        PILImage.fromarray((img * 65535).astype(np.uint16)).save(buffer, format="PNG")
    else:
        PILImage.fromarray((img * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def png_bytes() -> Callable[..., bytes]:
    return synthetic_png


def synthetic_dicom(
    *,
    mrn: str = "MRN-D1",
    accession: str = "ACC-D1",
    study_uid: str | None = None,
    sop_uid: str | None = None,
    size: int = 96,
    seed: int = 0,
    modality: str = "CR",
    body_part: str = "CHEST",
    patient_name: str = "Test^Patient",
    birth_date: str = "19700101",
    study_date: str = "20260101",
) -> bytes:
    """A CR chest radiograph with synthetic pixels, written with pydicom."""
    from PIL import Image as PILImage
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    pixels = np.asarray(PILImage.open(io.BytesIO(synthetic_png(size, seed=seed)))).astype(np.uint16) * 16
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR Image Storage
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID, ds.PatientName, ds.PatientSex, ds.PatientBirthDate = mrn, patient_name, "F", birth_date
    ds.AccessionNumber, ds.StudyDate, ds.Modality = accession, study_date, modality
    ds.BodyPartExamined, ds.ViewPosition = body_part, "PA"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


class WorkerProcess:
    """A real ``celery worker`` subprocess (prefork, one child) using the test database."""

    def __init__(self, env: dict[str, str], queues: str = "inference,training,webhooks") -> None:
        self.env, self.queues = env, queues
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(env["CXR_VAR_DIR"]) / f"worker-{time.time_ns()}.log"

    def start(self) -> WorkerProcess:
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "cxrsite",
                "worker",
                "-Q",
                self.queues,
                "-c",
                "1",
                "-P",
                "prefork",
                "--loglevel=info",
                "-n",
                f"test{time.time_ns()}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def child_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def kill_children(self) -> None:
        for pid in self.child_pids():
            os.kill(pid, signal.SIGKILL)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def worker_env(transactional_db) -> dict[str, str]:
    """Environment for a worker subprocess that sees this test's (committed) database."""
    from django.db import connection

    env = dict(os.environ)
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        name = str(connection.settings_dict["NAME"])
        if "mode=memory" in name or name == ":memory:":
            # Passing it on made the worker create a file named "memorydb_default" in the
            # project root instead of seeing the test database.
            pytest.fail(
                "worker tests need a database another process can open; "
                "settings give SQLite a file test database, do not override it with :memory:"
            )
        env["DATABASE_URL"] = f"sqlite:///{name}"
    else:
        env["DATABASE_URL"] = (
            f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:"
            f"{db['PORT'] or 5432}/{connection.settings_dict['NAME']}"
        )
    env["CELERY_BROKER_URL"] = settings.CELERY_BROKER_URL
    env["CXR_VAR_DIR"] = str(settings.VAR_DIR)
    env["CXR_MEDIA_ROOT"] = str(settings.MEDIA_ROOT)
    env["CXR_MODEL_ROOT"] = str(settings.CXR["MODEL_ROOT"])
    env["CXR_INFERENCE_SOFT_TIME_LIMIT"] = str(settings.CXR["INFERENCE_SOFT_TIME_LIMIT"])
    env["CXR_INFERENCE_HARD_TIME_LIMIT"] = str(settings.CXR["INFERENCE_HARD_TIME_LIMIT"])
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.fixture
def celery_worker_proc(worker_env) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory starting worker subprocesses; all are stopped after the test."""
    started: list[WorkerProcess] = []

    def start(**overrides: str) -> WorkerProcess:
        worker = WorkerProcess({**worker_env, **overrides}).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_for(
    predicate: Callable[[], bool], timeout: float, interval: float = 0.05, message: str | Callable[[], str] = ""
) -> None:
    """Poll until ``predicate()`` is true or fail the test after ``timeout`` seconds.

    ``message`` may be a callable (e.g. a worker's ``output``), evaluated only on failure.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    text = message() if callable(message) else message
    pytest.fail(f"condition not met within {timeout} s\n{text[-4000:]}")


@pytest.fixture(scope="session", autouse=True)
def _clean_broker() -> None:
    """Start with an empty Redis database; only when the test script dedicates one to tests."""
    url = settings.CELERY_BROKER_URL
    if url.startswith("redis") and os.environ.get("CXR_TEST_FLUSH_BROKER") == "1":
        import redis

        redis.Redis.from_url(url).flushdb()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker) -> Iterator[None]:
    """pytest-django's test database, and before it is dropped, every other session on it
    closed: a connection still open at the end (a thread of a concurrency test, a killed
    worker's child that had not exited yet) made the drop fail ("is being accessed by other
    users") and left a ``test_cxr_*`` database behind on every such run."""
    yield
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


def build_tiny_artifact(
    directory: Path, *, seed: int = 0, abnormal_threshold: float = 0.5, architecture: str = "cxr_net"
) -> Path:
    """A real (random-weight) 32 px model exported through the production writer.

    cxr_net (the production default) has the closed-form Grad-CAM head; s0_cnn's
    flatten head takes the GradientTape path."""
    import keras

    from classifier.imaging.preprocess import PreprocessConfig
    from training.trainers.architectures import build_model
    from training.trainers.export import write_artifact

    keras.utils.set_random_seed(seed)
    model = build_model(architecture, input_shape=(32, 32, 1), num_classes=4)
    config = PreprocessConfig(input_size=32, lung_crop=False, clahe=True)
    write_artifact(
        directory,
        model=model,
        preprocess_config=config,
        labels=["NORMAL", "PNEUMONIA_BACTERIAL", "PNEUMONIA_VIRAL", "COVID19"],
        thresholds={"abnormal": abnormal_threshold, "temperature": 1.0},
        metrics={"note": "test model"},
        model_card_md="# tiny test model\n",
        extra={"hyperparameters": {"architecture": architecture}},
    )
    return directory


@pytest.fixture(scope="session")
def tiny_artifacts(tmp_path_factory) -> list[Path]:
    """Two different tiny artifacts, built once per session: cxr_net (closed-form
    heatmaps, active in most tests) and s0_cnn (GradientTape heatmaps, promoted in some)."""
    root = tmp_path_factory.mktemp("tiny-models")
    return [
        build_tiny_artifact(root / "m0", seed=0, architecture="cxr_net"),
        build_tiny_artifact(root / "m1", seed=1, architecture="s0_cnn"),
    ]


@pytest.fixture
def active_tiny_model(tiny_artifacts, db):
    """Register and activate the first tiny model (archiving whatever was active)."""
    from training import registry

    version = registry.version_register(source_dir=tiny_artifacts[0])
    return registry.version_activate(version=version, reason="test")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def _server_process(
    name: str, argv: list[str], port: int, log_path: Path, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Run ``argv`` in its own session until the block ends; yields its base URL once
    ``port`` accepts connections (fails the test with its log if it exits first)."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: _port_open(port) or proc.poll() is not None, 60, message=log_path.read_text)
        if proc.poll() is not None:
            pytest.fail(f"{name} exited\n{log_path.read_text()[-4000:]}")
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)


@pytest.fixture
def gunicorn_server(worker_env) -> Iterator[str]:
    """The production web server (gunicorn, one worker) on this test's database; its base URL.

    Django's test live_server cannot read chunked request bodies; gunicorn decodes them,
    as in production."""
    port = free_port()
    log_path = Path(worker_env["CXR_VAR_DIR"]) / f"gunicorn-{port}.log"
    argv = [sys.executable, "-m", "gunicorn", "cxrsite.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1", "--timeout", "60"]
    with _server_process("gunicorn", argv, port, log_path, env=worker_env) as url:
        yield url


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[str]:
    """A real S3-compatible server (moto's server mode, from requirements-dev.txt) in its own
    process on a free port for the session; its endpoint URL."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with _server_process("moto server", argv, port, log_path) as url:
        yield url


class S3Bucket:
    """One fresh bucket on the test S3 server, the settings that select it, and a client."""

    REGION, KEY, SECRET = "us-east-1", "test-access-key", "test-secret-key"  # moto accepts any

    def __init__(self, endpoint: str, name: str, prefix: str) -> None:
        import boto3

        self.endpoint, self.name, self.prefix = endpoint, name, prefix
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=self.REGION,
            aws_access_key_id=self.KEY,
            aws_secret_access_key=self.SECRET,
        )
        self.client.create_bucket(Bucket=name)

    @property
    def env(self) -> dict[str, str]:
        """The environment that selects this bucket (what a deployment sets)."""
        return {
            "CXR_STORAGE": "s3",
            "CXR_S3_BUCKET": self.name,
            "CXR_S3_ENDPOINT_URL": self.endpoint,
            "CXR_S3_REGION": self.REGION,
            "CXR_S3_ACCESS_KEY_ID": self.KEY,
            "CXR_S3_SECRET_ACCESS_KEY": self.SECRET,
            "CXR_S3_PREFIX": self.prefix,
        }

    def key(self, area: str, name: str) -> str:
        """The object key of stored ``name`` in ``area`` (media or models)."""
        return f"{self.prefix}/{area}/{name}" if self.prefix else f"{area}/{name}"

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def object_keys(self) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


@pytest.fixture
def s3_bucket(s3_server, settings, tmp_path) -> S3Bucket:
    """This test's media and model storage is a fresh bucket on the S3 server, configured
    through the same settings code a deployment's CXR_STORAGE=s3 runs."""
    from cxrsite.settings import _s3_storages

    bucket = S3Bucket(s3_server, f"cxr-test-{time.time_ns()}", prefix="site-a")
    cfg = {
        "s3_bucket": bucket.name,
        "s3_endpoint_url": bucket.endpoint,
        "s3_region": bucket.REGION,
        "s3_access_key": bucket.KEY,
        "s3_secret_key": bucket.SECRET,
        "s3_prefix": bucket.prefix,
    }
    settings.STORAGES = {**settings.STORAGES, **_s3_storages(cfg)}
    settings.CXR = {**settings.CXR, "STORAGE": "s3", "MODEL_CACHE_DIR": tmp_path / "model-cache"}
    return bucket
