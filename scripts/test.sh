#!/usr/bin/env bash
# Installs deeplab-zoo with test extras into ./.venv and runs lint + the default test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test
.venv/bin/ruff check src tests scripts
# The optional native ops (C++ CPU kernels; CUDA sources too where nvcc exists). Without a
# compiler the package still works on the pure-PyTorch reference and those tests skip.
.venv/bin/python -m deeplab_zoo.ops.build || echo "warning: native ops not built; using the reference"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
