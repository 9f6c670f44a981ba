#!/usr/bin/env bash
# Runs the suites marked @pytest.mark.slow (not part of .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test
.venv/bin/python -m pytest -q -p no:cacheprovider -m slow "$@"
