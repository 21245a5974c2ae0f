"""One env-driven settings module for every deployment.

With no environment at all the app runs on an embedded default: SQLite, media on local
disk, and a real Celery worker fed by kombu's SQLAlchemy transport on SQLite (no server).
Production is the same module with DATABASE_URL (PostgreSQL), CELERY_BROKER_URL (Redis),
SECRET_KEY, ALLOWED_HOSTS and DEBUG=false. Every variable is documented in README.md.
Malformed values raise ImproperlyConfigured with a one-line reason (see cxrsite.boot).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from cxrsite.env import Env, EnvError

BASE_DIR = Path(__file__).resolve().parent.parent
env = Env()


def _load() -> dict:
    """Read every variable; collected in a function so one EnvError becomes one message."""
    debug = env.bool("DEBUG", True)
    var_dir = Path(env.str("CXR_VAR_DIR", str(BASE_DIR / "var"))).resolve()
    secret_key = env.str("SECRET_KEY")
    if secret_key is None:
        if not debug:
            raise EnvError("SECRET_KEY must be set when DEBUG is false.")
        secret_key = _local_secret(var_dir)
    elif not debug and (len(secret_key) < 50 or len(set(secret_key)) < 5):
        # Django's own bar for a strong key (check --deploy W009), enforced: sessions,
        # CSRF tokens and password resets are only as strong as this key.
        raise EnvError("SECRET_KEY must be at least 50 characters with at least 5 different ones when DEBUG is false.")
    database_url = env.str("DATABASE_URL", f"sqlite:///{var_dir / 'db.sqlite3'}")
    broker_url = env.str("CELERY_BROKER_URL", f"sqla+sqlite:///{var_dir / 'broker.sqlite3'}")
    return {
        "debug": debug,
        "var_dir": var_dir,
        "secret_key": secret_key,
        "database_url": database_url,
        "broker_url": broker_url,
        "allowed_hosts": env.list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if debug else []),
        "csrf_trusted": env.list("CSRF_TRUSTED_ORIGINS", []),
        "media_root": Path(env.str("CXR_MEDIA_ROOT", str(var_dir / "media"))).resolve(),
        "model_root": Path(env.str("CXR_MODEL_ROOT", str(var_dir / "models"))).resolve(),
        # Where media and registered model artifacts live: the local disk (embedded
        # default) or an S3-compatible bucket every machine reaches (django-storages).
        "storage": env.choice("CXR_STORAGE", "local", ("local", "s3")),
        "s3_bucket": env.str("CXR_S3_BUCKET", ""),
        "s3_endpoint_url": env.str("CXR_S3_ENDPOINT_URL", ""),
        "s3_region": env.str("CXR_S3_REGION", ""),
        # Empty = django-storages' lookup: AWS_S3_ACCESS_KEY_ID / AWS_ACCESS_KEY_ID, then boto3's chain.
        "s3_access_key": env.str("CXR_S3_ACCESS_KEY_ID", ""),
        "s3_secret_key": env.str("CXR_S3_SECRET_ACCESS_KEY", ""),
        "s3_prefix": env.str("CXR_S3_PREFIX", "").strip("/"),
        # A worker's local copies of artifacts fetched from shared storage (checked against the registry).
        "model_cache_dir": Path(env.str("CXR_MODEL_CACHE_DIR", str(var_dir / "model-cache"))).resolve(),
        # Folders an admin may import from the web page: only under this root.
        "import_root": Path(
            env.str("CXR_DATASET_IMPORT_ROOT", env.str("CXR_DATA_DIR", str(BASE_DIR.parent / "shared" / "data")))
        ).resolve(),
        "secure_cookies": env.bool("CXR_SECURE_COOKIES", not debug),
        "hsts_seconds": env.int("CXR_HSTS_SECONDS", 0, minimum=0),
        "hsts_subdomains": env.bool("CXR_HSTS_INCLUDE_SUBDOMAINS", False),
        "hsts_preload": env.bool("CXR_HSTS_PRELOAD", False),
        "ssl_redirect": env.bool("CXR_SSL_REDIRECT", False),
        "forwarded_proto": env.bool("CXR_TRUST_X_FORWARDED_PROTO", False),
        "session_minutes": env.int("CXR_SESSION_TIMEOUT_MINUTES", 30, minimum=1),
        "lockout_failures": env.int("CXR_LOGIN_FAILURE_LIMIT", 5, minimum=1),
        "lockout_minutes": env.int("CXR_LOGIN_LOCKOUT_MINUTES", 15, minimum=1),
        "log_level": env.choice("CXR_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
        "max_upload_bytes": env.int("CXR_MAX_UPLOAD_BYTES", 64 * 1024 * 1024, minimum=1024),
        "max_pixels": env.int("CXR_MAX_PIXELS", 40_000_000, minimum=4096),
        "stow_max_bytes": env.int("CXR_STOW_MAX_BYTES", 2 * 1024**3, minimum=1024),
        # The largest request body any view accepts (the four-file upload), refused from
        # Content-Length before anything reads it; and how long reading one body may take.
        "max_request_bytes": env.int("CXR_MAX_REQUEST_BYTES", 0, minimum=0),
        "body_timeout": env.int("CXR_REQUEST_BODY_TIMEOUT", 120, minimum=1),
        "runtime": env.choice("CXR_INFERENCE_RUNTIME", "tflite", ("tflite", "keras")),
        "batch_size": env.int("CXR_INFERENCE_BATCH_SIZE", 8, minimum=1),
        # Threads per inference process for decoding, preprocessing, encoding and the
        # TFLite interpreter: by default the CPUs this process may run on.
        "inference_threads": env.int("CXR_INFERENCE_THREADS", len(os.sched_getaffinity(0)), minimum=1),
        "inference_soft": env.int("CXR_INFERENCE_SOFT_TIME_LIMIT", 60, minimum=1),
        "inference_hard": env.int("CXR_INFERENCE_HARD_TIME_LIMIT", 90, minimum=2),
        "inference_retries": env.int("CXR_INFERENCE_MAX_RETRIES", 3, minimum=0),
        "training_soft": env.int("CXR_TRAINING_SOFT_TIME_LIMIT", 3 * 3600, minimum=60),
        "training_hard": env.int("CXR_TRAINING_HARD_TIME_LIMIT", 3 * 3600 + 600, minimum=120),
        "visibility": env.int("CXR_BROKER_VISIBILITY_TIMEOUT", 4 * 3600, minimum=60),
        "sweep_seconds": env.int("CXR_SWEEP_INTERVAL_SECONDS", 60, minimum=1),
        "orphan_grace_hours": env.int("CXR_ORPHAN_GRACE_HOURS", 24, minimum=1),
        "target_sensitivity": env.float("CXR_TARGET_SENSITIVITY", 0.95, minimum=0.5, maximum=1.0),
        "retrain_min_reviews": env.int("CXR_RETRAIN_MIN_REVIEWS", 50, minimum=1),
        "max_wait_minutes": env.int("CXR_TRIAGE_MAX_WAIT_MINUTES", 240, minimum=1),
        "api_rate": _rate(env.str("CXR_API_RATE", "600/min")),
        # Throttle counters shared by every web process: redis://... in production; empty =
        # the database cache (table cxr_cache, created by a migration).
        "cache_url": env.str("CXR_CACHE_URL", ""),
        "warm_up": env.bool("CXR_WORKER_WARM_UP", True),
        "dicom_ae_title": _ae_title(env.str("CXR_DICOM_AE_TITLE", "CXR_TRIAGE")),
        "dicom_host": env.str("CXR_DICOM_HOST", "0.0.0.0"),
        "dicom_port": env.int("CXR_DICOM_PORT", 11112, minimum=1),
        "dicom_max_associations": env.int("CXR_DICOM_MAX_ASSOCIATIONS", 4, minimum=1),
        "dicom_timeout": env.int("CXR_DICOM_TIMEOUT_SECONDS", 30, minimum=1),
        "metrics_token": env.str("CXR_METRICS_TOKEN", ""),
        # Webhook targets must be https on public addresses; the tests' local receiver needs both.
        "webhook_allow_http": env.bool("CXR_WEBHOOK_ALLOW_HTTP", False),
        "webhook_allow_private": env.bool("CXR_WEBHOOK_ALLOW_PRIVATE_TARGETS", False),
    }


def _s3_storages(cfg: dict) -> dict[str, dict]:
    """STORAGES entries for CXR_STORAGE=s3: media under ``<prefix>/media``, registered model
    artifacts under ``<prefix>/models`` (the ``models`` alias, read by classifier.artifact_store)."""
    if not cfg["s3_bucket"]:
        raise EnvError("CXR_S3_BUCKET must be set when CXR_STORAGE is s3.")
    if bool(cfg["s3_access_key"]) != bool(cfg["s3_secret_key"]):
        raise EnvError("CXR_S3_ACCESS_KEY_ID and CXR_S3_SECRET_ACCESS_KEY must be set together.")
    options = {
        "bucket_name": cfg["s3_bucket"],
        "endpoint_url": cfg["s3_endpoint_url"] or None,
        "region_name": cfg["s3_region"] or None,
        "access_key": cfg["s3_access_key"] or None,
        "secret_key": cfg["s3_secret_key"] or None,
        # Stored names are generated and artifacts immutable: an existing key is never replaced.
        "file_overwrite": False,
        "default_acl": None,
        "querystring_auth": True,
    }
    prefix = f"{cfg['s3_prefix']}/" if cfg["s3_prefix"] else ""
    backend = "storages.backends.s3.S3Storage"
    return {
        "default": {"BACKEND": backend, "OPTIONS": {**options, "location": f"{prefix}media"}},
        "models": {"BACKEND": backend, "OPTIONS": {**options, "location": f"{prefix}models"}},
    }


def _ae_title(value: str) -> str:
    """A DICOM AE title: 1-16 printable characters, no backslash, not only spaces."""
    if not value.strip() or len(value) > 16 or "\\" in value or not value.isprintable():
        raise EnvError(f"CXR_DICOM_AE_TITLE must be 1-16 printable characters without a backslash, got {value!r}.")
    return value.strip()


def _rate(rate: str) -> str:
    """A DRF rate ("600/min") with at least one request per period, or EnvError."""
    count, _, period = rate.partition("/")
    if not (count.isdigit() and int(count) >= 1 and period[:1] in {"s", "m", "h", "d"}):
        raise EnvError(f"CXR_API_RATE={rate!r} is not a rate like '600/min' (at least 1 per sec, min, hour or day).")
    return rate


def _local_secret(var_dir: Path) -> str:
    """A per-installation key kept in var/ so debug sessions survive restarts."""
    path = var_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    path.write_text(key)
    path.chmod(0o600)
    return key


try:
    _cfg = _load()
except EnvError as exc:
    raise ImproperlyConfigured(str(exc)) from None

DEBUG = _cfg["debug"]
SECRET_KEY = _cfg["secret_key"]
ALLOWED_HOSTS = _cfg["allowed_hosts"]
CSRF_TRUSTED_ORIGINS = _cfg["csrf_trusted"]
VAR_DIR = _cfg["var_dir"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "axes",
    "classifier",
    "training",
]

MIDDLEWARE = [
    "classifier.views.metrics.RequestMetricsMiddleware",  # outermost: counts every answer
    # Next: CSP and no-store reach every response, refusals below included.
    "classifier.middleware.SecurityHeadersMiddleware",
    # A declared body over the limit is refused before CSRF (or anything) reads it.
    "classifier.middleware.RequestSizeLimitMiddleware",
    "classifier.middleware.DatabaseUnavailableMiddleware",
    "classifier.middleware.NulInQueryMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "cxrsite.urls"
WSGI_APPLICATION = "cxrsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "classifier.roles.role_context",
            ],
        },
    },
]

DATABASES = {"default": dj_database_url.parse(_cfg["database_url"], conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # An unreachable host must fail a request in seconds (then 503), not after TCP's minutes.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + IMMEDIATE transactions let the web process and the worker write concurrently
    # without "database is locked" on the embedded default.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # A file, not SQLite's in-memory default: the tests' real worker processes must open
    # the same test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# "default" is per process; "shared" is seen by every web process (API throttle counters:
# a per-process cache let a 10/min token through 20 times with two gunicorn workers).
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "shared": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _cfg["cache_url"]}
        if _cfg["cache_url"].startswith(("redis://", "rediss://", "unix://"))
        else {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "cxr_cache"}
    ),
}
if _cfg["cache_url"] and CACHES["shared"]["BACKEND"].endswith("DatabaseCache"):
    raise ImproperlyConfigured("CXR_CACHE_URL must be a redis:// URL (or empty for the database cache).")

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "worklist"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_AGE = _cfg["session_minutes"] * 60
SESSION_SAVE_EVERY_REQUEST = True  # idle timeout, not absolute
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _cfg["secure_cookies"]
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_HSTS_SECONDS = _cfg["hsts_seconds"]
SECURE_HSTS_INCLUDE_SUBDOMAINS = _cfg["hsts_subdomains"]
SECURE_HSTS_PRELOAD = _cfg["hsts_preload"]
SECURE_SSL_REDIRECT = _cfg["ssl_redirect"]
if _cfg["forwarded_proto"]:  # behind a TLS-terminating proxy that sets it (and strips the client's)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Every page: scripts and styles from this site only (inline style attributes carry the
# viewer's geometry), no plugins, no framing, forms post here.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)

AXES_FAILURE_LIMIT = _cfg["lockout_failures"]
AXES_COOLOFF_TIME = _cfg["lockout_minutes"] / 60  # hours
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_VERBOSE = False
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
MEDIA_URL = "media/"  # never served directly: images go through role-checked views
MEDIA_ROOT = _cfg["media_root"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
if _cfg["storage"] == "s3":
    try:
        STORAGES.update(_s3_storages(_cfg))
    except EnvError as exc:
        raise ImproperlyConfigured(str(exc)) from None
FILE_UPLOAD_MAX_MEMORY_SIZE = 4 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 4 * 1024 * 1024
FILE_UPLOAD_PERMISSIONS = 0o640

# DRF resolves these import strings when a view first needs them, not while settings load.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "classifier.api.auth.ApiTokenAuthentication",
        "classifier.api.auth.CsrfSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["classifier.api.permissions.ActionPermission"],
    "DEFAULT_THROTTLE_CLASSES": ["classifier.api.auth.TokenRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_token": _cfg["api_rate"], "api_user": _cfg["api_rate"]},
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "classifier.api.parsers.JsonParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "classifier.api.pagination.ApiPagination",
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "classifier.api.errors.api_exception_handler",
}
API_DESCRIPTION = """\
REST API of the chest X-ray triage platform. Results are **decision support, not a diagnosis**.

Authenticate with `Authorization: Bearer <token>` (an API token created by an
administrator) or with the browser session. POSTs accept an `Idempotency-Key` header:
a retry with the same key and body returns the original response. Errors are
`{"error": {"code": ..., "message": ...}}`.
"""
SPECTACULAR_SETTINGS = {
    "TITLE": "CXR triage API",
    "DESCRIPTION": API_DESCRIPTION,
    "VERSION": "1.0.0",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "classifier.api.schema.postprocess"],
    "ENUM_NAME_OVERRIDES": {
        "StudyStatusEnum": "classifier.models.Study.Status",
        "PredictionStatusEnum": "classifier.models.Prediction.Status",
        "ModelVersionStatusEnum": "training.models.ModelVersion.Status",
        "TrainingRunStatusEnum": "training.models.TrainingRun.Status",
        "DeliveryStatusEnum": "classifier.integrations.WebhookDelivery.Status",
        "ViewPositionEnum": "classifier.models.Study.View",
    },
    # The schema and Swagger UI describe every endpoint: signed-in people and API tokens only.
    "SERVE_AUTHENTICATION": [
        "classifier.api.auth.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Swagger UI from drf-spectacular-sidecar's static files: no CDN, works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Celery ------------------------------------------------------------------------
CELERY_BROKER_URL = _cfg["broker_url"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "inference"
CELERY_TASK_ROUTES = {
    # An exact name wins over the patterns: deliveries wait on receivers, not on the model.
    "classifier.tasks.webhook_deliver_task": {"queue": "webhooks", "routing_key": "webhooks"},
    "classifier.tasks.dicom_delivery_task": {"queue": "webhooks", "routing_key": "webhooks"},
    # Walking the media store waits on the disk, not the CPU: the webhook worker's threads.
    "classifier.tasks.media_cleanup_task": {"queue": "webhooks", "routing_key": "webhooks"},
    "classifier.tasks.*": {"queue": "inference", "routing_key": "inference"},
    "training.tasks.*": {"queue": "training", "routing_key": "training"},
}
CELERY_TASK_SOFT_TIME_LIMIT = _cfg["inference_soft"]
CELERY_TASK_TIME_LIMIT = _cfg["inference_hard"]
# The visibility timeout must outlast the longest task (a training run), or Redis would
# hand a still-running task to a second worker.
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {"visibility_timeout": _cfg["visibility"], "socket_connect_timeout": 3, "socket_timeout": 10}
    if CELERY_BROKER_URL.startswith(("redis", "rediss"))
    else {}
)
# An upload must not hang while the broker is down: fail fast, keep the row, let the sweeper send it.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = False
# Inference pool processes load and trace the active model before taking work
# (classifier.tasks.warmup); that takes seconds, so the parent must wait longer than 4 s.
CELERY_WORKER_PROC_ALIVE_TIMEOUT = 120

# --- The product -------------------------------------------------------------------
CXR = {
    "MODEL_ROOT": _cfg["model_root"],
    "STORAGE": _cfg["storage"],
    "MODEL_CACHE_DIR": _cfg["model_cache_dir"],
    "SHIPPED_MODEL_DIR": BASE_DIR / "training" / "shipped",
    "DATASET_IMPORT_ROOT": _cfg["import_root"],
    "MAX_UPLOAD_BYTES": _cfg["max_upload_bytes"],
    "MAX_PIXELS": _cfg["max_pixels"],
    "STOW_MAX_BYTES": _cfg["stow_max_bytes"],
    # 0 = derived: four files of CXR_MAX_UPLOAD_BYTES plus a MiB of fields and framing.
    "MAX_REQUEST_BYTES": _cfg["max_request_bytes"] or 4 * _cfg["max_upload_bytes"] + 1024 * 1024,
    "REQUEST_BODY_TIMEOUT": _cfg["body_timeout"],
    "INFERENCE_RUNTIME": _cfg["runtime"],
    "INFERENCE_BATCH_SIZE": _cfg["batch_size"],
    "INFERENCE_THREADS": _cfg["inference_threads"],
    "INFERENCE_SOFT_TIME_LIMIT": _cfg["inference_soft"],
    "INFERENCE_HARD_TIME_LIMIT": _cfg["inference_hard"],
    "INFERENCE_MAX_RETRIES": _cfg["inference_retries"],
    "TRAINING_SOFT_TIME_LIMIT": _cfg["training_soft"],
    "TRAINING_HARD_TIME_LIMIT": _cfg["training_hard"],
    "SWEEP_INTERVAL_SECONDS": _cfg["sweep_seconds"],
    "ORPHAN_GRACE_HOURS": _cfg["orphan_grace_hours"],
    "TARGET_SENSITIVITY": _cfg["target_sensitivity"],
    "RETRAIN_MIN_REVIEWS": _cfg["retrain_min_reviews"],
    "WORKER_WARM_UP": _cfg["warm_up"],
    "TRIAGE_MAX_WAIT_MINUTES": _cfg["max_wait_minutes"],
    "DICOM_AE_TITLE": _cfg["dicom_ae_title"],
    "DICOM_HOST": _cfg["dicom_host"],
    "DICOM_PORT": _cfg["dicom_port"],
    "DICOM_MAX_ASSOCIATIONS": _cfg["dicom_max_associations"],
    "DICOM_TIMEOUT_SECONDS": _cfg["dicom_timeout"],
    "METRICS_TOKEN": _cfg["metrics_token"],
    "WEBHOOK_ALLOW_HTTP": _cfg["webhook_allow_http"],
    "WEBHOOK_ALLOW_PRIVATE_TARGETS": _cfg["webhook_allow_private"],
}
if CXR["INFERENCE_HARD_TIME_LIMIT"] <= CXR["INFERENCE_SOFT_TIME_LIMIT"]:
    raise ImproperlyConfigured("CXR_INFERENCE_HARD_TIME_LIMIT must be greater than CXR_INFERENCE_SOFT_TIME_LIMIT.")
if CXR["TRAINING_HARD_TIME_LIMIT"] <= CXR["TRAINING_SOFT_TIME_LIMIT"]:
    raise ImproperlyConfigured("CXR_TRAINING_HARD_TIME_LIMIT must be greater than CXR_TRAINING_SOFT_TIME_LIMIT.")
if _cfg["visibility"] <= CXR["TRAINING_HARD_TIME_LIMIT"]:
    raise ImproperlyConfigured("CXR_BROKER_VISIBILITY_TIMEOUT must be longer than CXR_TRAINING_HARD_TIME_LIMIT.")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"client_error_without_traceback": {"()": "cxrsite.logfilters.ClientErrorWithoutTraceback"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": _cfg["log_level"]},
    "loggers": {
        "axes": {"level": "WARNING"},
        # Django's own console handler (debug only) would print every django.* line a
        # second time; the root handler is the one place lines go.
        "django": {"handlers": []},
        "django.request": {"filters": ["client_error_without_traceback"]},
        "django.security": {"filters": ["client_error_without_traceback"]},
    },
}
