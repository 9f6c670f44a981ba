"""Fixtures of the native-op tests: the extension (built on demand) and its devices."""
from __future__ import annotations

import os
import shutil

import pytest
import torch

from deeplab_zoo.ops import _extension


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
