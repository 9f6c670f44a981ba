"""Shared test configuration: where the DeepLab2 parity fixtures are; the native extension
(built on demand) and the devices its tests run on."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from deeplab_zoo.ops import _extension

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


def _build_problem() -> str:
    """Why the extension cannot be built here ('' if it can)."""
    from torch.utils import cpp_extension

    if not (shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")):
        return "no C++ compiler"
    if not cpp_extension.is_ninja_available():
        return "ninja is not installed (pip install ninja)"
    return ""


@pytest.fixture(scope="session")
def native() -> _extension.ExtensionStatus:
    """Loads the extension, building it first if needed (skips without a compiler)."""
    status = _extension.load()
    if status.loaded:
        return status
    problem = _build_problem()
    if problem:
        pytest.skip(f"native extension not built and cannot be built: {problem}")
    from deeplab_zoo.ops import build

    gpu = torch.cuda.is_available() and build.cuda_available_for_build()
    try:
        build.build(cuda=gpu)
    except Exception as error:  # a compiler is present: a failed build is a real failure
        pytest.fail(f"building the native extension failed: {error}")
    status = _extension.load(reload=True)
    assert status.loaded, status.reason
    return status


@pytest.fixture(scope="session")
def devices(native) -> list[str]:
    """CPU, plus CUDA where a GPU and CUDA kernels exist."""
    out = ["cpu"]
    if torch.cuda.is_available() and native.cuda:
        out.append("cuda")
    return out
