#!/usr/bin/env bash
# The README's test command (and exactly what .ci/run runs): installs everything the tests need and runs them.
# Chromium and PostgreSQL come from Debian's packages (the model-card test renders the report in chromium; the
# team tracking-server test runs `mlflow server` on a throw-away PostgreSQL cluster); the Python
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
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  # The team-server test starts its own throw-away cluster (initdb in a temporary folder, loopback only) from
  # these binaries; no system-wide PostgreSQL service needs to run.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } \
      || echo "warning: could not install Debian postgresql; the team tracking server test will be skipped" >&2
  else
    echo "note: Debian postgresql not installed and not root; the team tracking server test will be skipped" >&2
  fi
fi
python3 -m venv .venv
.venv/bin/pip install -q -e ".[dev]"
.venv/bin/ruff check src tests
# The lead enables the format check after the one final `ruff format` of the tree:
.venv/bin/ruff format --check src tests
.venv/bin/mypy
exec .venv/bin/python -m pytest -n 2 "$@"
