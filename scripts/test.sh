#!/usr/bin/env bash
# The test command: installs what the tests need and runs the whole suite against
# PostgreSQL and Redis (started or installed by scripts/services.sh) with real workers.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/classifier/imaging -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh
bash scripts/browser.sh   # Debian chromium for the Playwright tests (no browser download)
bash scripts/install.sh --dev

# A database name per run: a stale connection from an earlier, interrupted run cannot
# block creating the test database.
export DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/cxr_$$}"
export CELERY_BROKER_URL="${TEST_BROKER_URL:-redis://127.0.0.1:6379/15}"
export CXR_TEST_FLUSH_BROKER=1  # db 15 belongs to the tests
# Short limits so the tests of killed workers and the sweeper finish in seconds.
export CXR_INFERENCE_SOFT_TIME_LIMIT=20 CXR_INFERENCE_HARD_TIME_LIMIT=25
export CXR_SWEEP_INTERVAL_SECONDS=2
export CXR_WORKER_WARM_UP=false  # per-worker model warm-up is tested once, in tests/classifier
export TF_CPP_MIN_LOG_LEVEL=2
unset CXR_MEDIA_ROOT CXR_MODEL_ROOT
# Everything a test run writes (databases, media, models, worker logs) stays out of var/.
export CXR_VAR_DIR="${CXR_TEST_VAR_DIR:-$(mktemp -d -t cxr-test-XXXXXX)}"
exec .venv/bin/python -m pytest "$@"
