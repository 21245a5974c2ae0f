# The run command's environment, sourced by scripts/run.sh (and by its test): the product
# runs as production does. DEBUG is off, so Django's debug pages (the technical 404 lists
# every URL pattern) are never served; the secret key is generated once into
# $CXR_VAR_DIR/secret_key (outside the repository, mode 600) and kept across restarts;
# WhiteNoise serves the collected static files. `DEBUG=true bash scripts/run.sh` is the
# development switch. Anything already set in the environment wins.
export CXR_VAR_DIR="${CXR_VAR_DIR:-$PWD/var}"
export DEBUG="${DEBUG:-false}"
export ALLOWED_HOSTS="${ALLOWED_HOSTS:-localhost,127.0.0.1,[::1]}"
# gunicorn serves plain HTTP on the loopback: Secure cookies would never be sent back.
export CXR_SECURE_COOKIES="${CXR_SECURE_COOKIES:-false}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
mkdir -p "$CXR_VAR_DIR"
if [ -z "${SECRET_KEY:-}" ]; then
  keyfile="$CXR_VAR_DIR/secret_key"  # the file settings itself uses in debug
  if [ ! -s "$keyfile" ]; then
    (umask 077 && .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(50))' > "$keyfile")
  fi
  SECRET_KEY="$(cat "$keyfile")"
  export SECRET_KEY
fi
