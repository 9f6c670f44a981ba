#!/usr/bin/env bash
# Installs deeplab-zoo into ./.venv and runs the offline demo prediction (writes demo.png).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/deeplab-zoo demo --out demo.png
