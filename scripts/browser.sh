#!/usr/bin/env bash
# Installs the Debian chromium used by the Playwright browser tests (tests/classifier/views/test_browser.py).
# Idempotent: does nothing when /usr/bin/chromium is already there. Needs root (or sudo)
# because it uses apt; the Playwright-managed browser download is deliberately not used
# (offline machines, and one browser binary for every developer and CI).
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "browser.sh: chromium is missing and installing it needs root (apt-get install chromium)." >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium >/dev/null
/usr/bin/chromium --version
