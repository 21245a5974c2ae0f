#!/usr/bin/env bash
# The static checks CI runs before the tests, configured in pyproject.toml: ruff (lint and
# format), mypy with the Django and DRF stubs, and the import-linter contracts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --dev
export CXR_VAR_DIR="${CXR_VAR_DIR:-$(mktemp -d -t cxr-check-XXXXXX)}"  # mypy's Django plugin loads settings
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports
