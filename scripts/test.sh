#!/usr/bin/env bash
# Installs deeplab-zoo with test extras into ./.venv and runs lint + the default test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test
.venv/bin/ruff check src tests scripts
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
