#!/usr/bin/env bash
# Re-sign the shipped default bundle (src/crsrisk/models_data/default) with the project's release key, then check
# that the public key pinned in src/crsrisk/bundle/release_key.pub alone verifies it, as a fresh install would.
# The private key never enters the repository: it is read from $CRSRISK_RELEASE_KEY, by default
# ~/.config/crsrisk-release/release.key (mode 0600). Run after any change to the bundle's files, then commit
# signature.json with them. `python models/train_default.py` (retraining) signs the same way when the key is here.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" models/train_default.py --sign-only
