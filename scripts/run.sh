#!/usr/bin/env bash
# The run command: a fresh machine with Python 3.11 gets the whole product on the
# embedded default (SQLite, local media, kombu's SQLAlchemy broker on SQLite): web
# server, an inference worker with the beat scheduler, a training worker and a webhook
# delivery worker. It runs as production does (scripts/run-env.sh: DEBUG off, a generated
# secret key kept in var/, static files served by WhiteNoise); DEBUG=true for development.
# Stop with Ctrl-C. Set PORT to change the port (default 8000).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install.sh
source scripts/run-env.sh
py=.venv/bin/python
$py manage.py migrate --noinput -v0          # also registers and activates the shipped model
$py manage.py collectstatic --noinput -v0
# One demo password per installation, kept in var/ so it survives restarts.
pwfile="$CXR_VAR_DIR/demo-password"
[ -s "$pwfile" ] || { $py -c 'import secrets; print(secrets.token_urlsafe(12))' > "$pwfile"; chmod 600 "$pwfile"; }
$py manage.py setup_roles --demo --password="$(cat "$pwfile")"  # = : a password may start with "-"

# Request metrics of all gunicorn workers (prometheus-client multiprocess mode), fresh per run.
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$CXR_VAR_DIR/prometheus}"
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
.venv/bin/celery -A cxrsite worker -Q inference -c 1 -B -n inference@%h --loglevel=INFO \
  >"$CXR_VAR_DIR/worker-inference.log" 2>&1 & pids+=($!)
.venv/bin/celery -A cxrsite worker -Q training -c 1 -n training@%h --loglevel=INFO \
  >"$CXR_VAR_DIR/worker-training.log" 2>&1 & pids+=($!)
.venv/bin/celery -A cxrsite worker -Q webhooks -P threads -c 2 -n webhooks@%h --loglevel=INFO \
  >"$CXR_VAR_DIR/worker-webhooks.log" 2>&1 & pids+=($!)
$py manage.py dicom_listener >"$CXR_VAR_DIR/dicom-listener.log" 2>&1 & pids+=($!)
.venv/bin/gunicorn cxrsite.wsgi -b "127.0.0.1:${PORT:-8000}" --workers 2 --timeout 60 \
  --access-logfile "$CXR_VAR_DIR/access.log" >"$CXR_VAR_DIR/web.log" 2>&1 & pids+=($!)
sleep 3
$py manage.py check_queue --timeout 60 || echo "warning: the inference worker did not answer yet; see $CXR_VAR_DIR/worker-inference.log"
echo
echo "CXR triage is running at http://127.0.0.1:${PORT:-8000}/  (decision support, not a diagnosis)"
echo "DEBUG=$DEBUG (production settings unless DEBUG=true was given: DEBUG=true bash scripts/run.sh for development)"
echo "DICOM listener: AE ${CXR_DICOM_AE_TITLE:-CXR_TRIAGE} on port ${CXR_DICOM_PORT:-11112} (allow-list peers in /admin/, DICOM peers)"
echo "Logs: $CXR_VAR_DIR/{web,dicom-listener,worker-inference,worker-training,worker-webhooks}.log. Ctrl-C stops everything."
wait -n "${pids[@]}"
