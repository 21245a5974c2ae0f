#!/usr/bin/env bash
# Create .venv with Python 3.11 and install the pinned requirements (--dev: test tools too).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
files=(-r requirements.txt)
[ "${1:-}" = "--dev" ] && files+=(-r requirements-dev.txt)
stamp=".venv/.installed-$(cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)${1:-}"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "${files[@]}"
  touch "$stamp"
fi
