#!/usr/bin/env bash
# The README's test command (and exactly what .ci/run runs): installs everything the tests need and runs them.
# Chromium comes from Debian's packages (the model-card test renders the report in it); the Python
# dependencies come from pyproject.toml's dev extra into a fresh .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
      || echo "warning: could not install Debian chromium; the browser rendering test will be skipped" >&2
  else
    echo "note: Debian chromium not installed and not root; the browser rendering test will be skipped" >&2
  fi
fi
python3 -m venv .venv
.venv/bin/pip install -q -e ".[dev]"
exec .venv/bin/python -m pytest -n 2 "$@"
