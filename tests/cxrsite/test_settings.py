"""Settings: strict env parsing and refusal to start without a secret in production."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cxrsite.env import Env, EnvError

ROOT = Path(__file__).resolve().parents[2]
STRONG_KEY = "test-only-" + "0123456789abcdefghijklmnopqrstuvwxyz" * 2  # not a real secret


def run_check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "DATABASE_URL"}}
    base.update({"CXR_VAR_DIR": str(tmp_path), **env})
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=base, capture_output=True, text=True, timeout=120
    )


def test_production_without_secret_key_refuses_to_start_with_one_line(tmp_path: Path) -> None:
    result = run_check(tmp_path, DEBUG="false")
    assert result.returncode == 2
    assert result.stderr.strip() == "configuration error: SECRET_KEY must be set when DEBUG is false."


def test_production_with_secret_key_starts(tmp_path: Path) -> None:
    result = run_check(tmp_path, DEBUG="false", SECRET_KEY=STRONG_KEY, ALLOWED_HOSTS="cxr.example.org")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("DEBUG", "maybe", "DEBUG='maybe' is not a boolean"),
        ("CXR_INFERENCE_BATCH_SIZE", "eight", "CXR_INFERENCE_BATCH_SIZE='eight' is not an integer"),
        ("CXR_INFERENCE_BATCH_SIZE", "0", "CXR_INFERENCE_BATCH_SIZE=0 must be at least 1"),
        ("CXR_TARGET_SENSITIVITY", "nan", "must be a finite number"),
        ("CXR_INFERENCE_RUNTIME", "onnx", "must be one of: tflite, keras"),
        ("CXR_API_RATE", "0/min", "CXR_API_RATE='0/min' is not a rate"),
        ("CXR_API_RATE", "-5/min", "CXR_API_RATE='-5/min' is not a rate"),
        ("CXR_CACHE_URL", "memcached://x:11211", "CXR_CACHE_URL must be a redis:// URL"),
        ("CXR_STORAGE", "nfs", "must be one of: local, s3"),
        ("CXR_STORAGE", "s3", "CXR_S3_BUCKET must be set when CXR_STORAGE is s3."),
    ],
)
def test_malformed_value_fails_with_a_clear_message(tmp_path: Path, name: str, value: str, fragment: str) -> None:
    result = run_check(tmp_path, **{name: value})
    assert result.returncode == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_s3_credentials_must_come_as_a_pair(tmp_path: Path) -> None:
    result = run_check(tmp_path, CXR_STORAGE="s3", CXR_S3_BUCKET="cxr-media", CXR_S3_ACCESS_KEY_ID="AKIAEXAMPLE")
    assert result.returncode == 2
    assert "CXR_S3_ACCESS_KEY_ID and CXR_S3_SECRET_ACCESS_KEY must be set together." in result.stderr


def test_cxr_storage_s3_puts_media_and_models_under_the_prefix_of_one_bucket(tmp_path: Path) -> None:
    code = (
        "import django; django.setup(); from django.core.files.storage import storages; "
        "print([(type(s).__name__, s.bucket_name, s.location, s.endpoint_url, s.region_name, s.file_overwrite) "
        "for s in (storages['default'], storages['models'])])"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "DATABASE_URL"}}
    env.update(
        {
            "CXR_VAR_DIR": str(tmp_path),
            "DJANGO_SETTINGS_MODULE": "cxrsite.settings",
            "CXR_STORAGE": "s3",
            "CXR_S3_BUCKET": "cxr-media",
            "CXR_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
            "CXR_S3_REGION": "eu-west-2",
            "CXR_S3_PREFIX": "/site-a/",
        }
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    common = "'cxr-media', '{}', 'http://127.0.0.1:9000', 'eu-west-2', False"
    assert out.stdout.strip() == (
        f"[('S3Storage', {common.format('site-a/media')}), ('S3Storage', {common.format('site-a/models')})]"
    )


def test_the_embedded_default_stores_on_the_local_disk(tmp_path: Path) -> None:
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "from django.core.files.storage import storages; "
        "print(type(storages['default']).__name__, 'models' in settings.STORAGES, settings.CXR['STORAGE'])"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "DATABASE_URL", "CXR_STORAGE"}}
    env.update({"CXR_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "cxrsite.settings"})
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "FileSystemStorage False local"


def test_env_parsers_are_strict() -> None:
    env = Env({"A": " yes ", "B": "off", "N": "12", "F": "0.5", "L": "a, b,,c", "E": "  "})
    assert env.bool("A", False) is True and env.bool("B", True) is False
    assert env.bool("E", True) is True  # blank means unset
    assert env.int("N", 0) == 12 and env.float("F", 0.0) == 0.5
    assert env.list("L", []) == ["a", "b", "c"]
    with pytest.raises(EnvError):
        Env({"N": "1.5"}).int("N", 0)
    with pytest.raises(EnvError):
        Env({"F": "0.5"}).float("F", 0.0, maximum=0.4)


def test_embedded_default_needs_no_environment(tmp_path: Path) -> None:
    """No DATABASE_URL and no broker: SQLite plus kombu's SQLAlchemy transport on SQLite."""
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='cxrsite.settings'; django.setup();"
        "from django.conf import settings as s;"
        "print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL.split(':')[0])"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DEBUG"}}
    env["CXR_VAR_DIR"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["django.db.backends.sqlite3", "sqla+sqlite"], out.stderr


def test_wsgi_import_does_not_import_tensorflow(tmp_path: Path) -> None:
    code = (
        "import sys, cxrsite.wsgi, classifier.views.worklist, classifier.services.predictions, training.registry;"
        "from django.urls import resolve; resolve('/');"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'tensorflow', 'keras', 'ai_edge_litert'});"
        "print('IMPORTED:' + ','.join(bad))"
    )
    env = dict(os.environ, CXR_VAR_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "IMPORTED:", out.stdout


def test_every_environment_variable_the_settings_read_is_documented_in_readme() -> None:
    import re

    source = (ROOT / "cxrsite" / "settings.py").read_text()
    names = set(re.findall(r'env\.\w+\(\s*"([A-Z][A-Z0-9_]+)"', source))
    readme = (ROOT / "README.md").read_text()
    assert {"CXR_INFERENCE_THREADS", "DATABASE_URL"} <= names
    # README may document a pair as `CXR_X_SOFT_..._LIMIT` / `_HARD_`; the stem must appear.
    missing = sorted(name for name in names if name not in readme and name.replace("HARD", "SOFT") not in readme)
    assert not missing, f"undocumented environment variables: {missing}"


def test_a_request_log_line_is_written_once_in_debug(tmp_path: Path) -> None:
    """Django's debug console handler on the ``django`` logger printed every refusal twice."""
    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('django.request').warning('Forbidden: %s', '/probe/', extra={'status_code': 403})"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY"}}
    env.update({"CXR_VAR_DIR": str(tmp_path), "DEBUG": "true", "DJANGO_SETTINGS_MODULE": "cxrsite.settings"})
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Forbidden: /probe/") == 1, result.stderr


RUN_ENV_PROBE = """
import json
import django
from django.conf import settings
django.setup()
from django.test import Client
client = Client(HTTP_HOST="127.0.0.1")
pages = {path: client.get(path) for path in ("/favicon.ico", "/no/such/page/", "/static/css/app.css")}
print(json.dumps({
    "debug": settings.DEBUG,
    "secret_key": settings.SECRET_KEY,
    "pages": {
        p: [r.status_code, (b"".join(r.streaming_content) if r.streaming else r.content).decode(errors="replace")]
        for p, r in pages.items()
    },
}))
"""


def _run_command_environment() -> str:
    """The lines of scripts/run.sh that set up the environment (after installing, before
    the first manage.py), so the test sees exactly what the run command exports."""
    lines = (ROOT / "scripts" / "run.sh").read_text().splitlines()
    start = lines.index("bash scripts/install.sh") + 1
    end = next(i for i, line in enumerate(lines) if line.startswith("py="))
    return "\n".join(lines[start:end])


def _run_with_the_run_command_env(var_dir: Path, **extra: str) -> dict:
    import json

    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL"}}
    env.update({"CXR_VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "cxrsite.settings", **extra})
    script = (
        f"set -euo pipefail\n{_run_command_environment()}\n"
        ".venv/bin/python manage.py collectstatic --noinput -v0\n"
        f".venv/bin/python -c '{RUN_ENV_PROBE}'"
    )
    result = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_the_run_command_runs_as_production_with_a_kept_secret_and_static_files(tmp_path: Path) -> None:
    """scripts/run.sh's environment: DEBUG off, so an unknown URL (a browser's
    /favicon.ico) gets the product's 404 page, never Django's technical 404 listing the
    URL patterns; the secret key is generated into var/ once and kept; WhiteNoise serves
    the static files."""
    first = _run_with_the_run_command_env(tmp_path)
    assert first["debug"] is False
    for path in ("/favicon.ico", "/no/such/page/"):
        status, body = first["pages"][path]
        assert status == 404
        assert "The page or record you asked for does not exist" in body
        assert "URLconf" not in body and "urlpatterns" not in body and "admin/" not in body
    assert first["pages"]["/static/css/app.css"][0] == 200
    keyfile = tmp_path / "secret_key"
    assert keyfile.read_text().strip() == first["secret_key"] and len(first["secret_key"]) >= 50
    assert keyfile.stat().st_mode & 0o077 == 0
    assert not (ROOT / "secret_key").exists()
    again = _run_with_the_run_command_env(tmp_path)
    assert again["secret_key"] == first["secret_key"]  # sessions survive a restart


@pytest.mark.slow
def test_the_run_command_development_switch_is_debug_true(tmp_path: Path) -> None:
    dev = _run_with_the_run_command_env(tmp_path, DEBUG="true")
    assert dev["debug"] is True


@pytest.mark.slow
def test_the_run_command_sets_up_with_a_demo_password_starting_with_a_dash(tmp_path: Path) -> None:
    """The generated demo password is URL-safe base64, so 1 in 32 installations got one
    starting with "-" and the run command stopped at setup_roles ("expected one argument")."""
    lines = (ROOT / "scripts" / "run.sh").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("py="))
    end = next(i for i, line in enumerate(lines) if "manage.py setup_roles" in line)
    (tmp_path / "demo-password").write_text("-dash-first-password\n")
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL"}}
    env.update({"CXR_VAR_DIR": str(tmp_path)})
    script = "set -euo pipefail\n" + _run_command_environment() + "\n" + "\n".join(lines[start : end + 1])
    result = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "login: admin        password: -dash-first-password" in result.stdout


@pytest.mark.parametrize("key", ["short-key-of-30-characters-xx", "x" * 60])
def test_production_refuses_a_weak_secret_key(tmp_path: Path, key: str) -> None:
    result = run_check(tmp_path, DEBUG="false", SECRET_KEY=key, ALLOWED_HOSTS="cxr.example.org")
    assert result.returncode == 2
    assert "SECRET_KEY must be at least 50 characters" in result.stderr


def test_check_deploy_is_clean_in_the_production_configuration(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY"}}
    base.update(
        CXR_VAR_DIR=str(tmp_path),
        DEBUG="false",
        SECRET_KEY=STRONG_KEY,
        ALLOWED_HOSTS="cxr.example.org",
        CXR_HSTS_SECONDS="31536000",
        CXR_HSTS_INCLUDE_SUBDOMAINS="true",
        CXR_HSTS_PRELOAD="true",
        CXR_SSL_REDIRECT="true",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
