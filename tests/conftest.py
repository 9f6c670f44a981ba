"""Shared test configuration: where the DeepLab2 parity fixtures are."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))


def parity_root() -> Path:
    return Path(os.environ.get("DEEPLAB_ZOO_PARITY_DIR", REPO.parent / "shared" / "parity"))


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    root = parity_root()
    if not (root / "cases.json").is_file():
        pytest.skip(f"parity fixtures not found at {root} (set DEEPLAB_ZOO_PARITY_DIR)")
    return root
