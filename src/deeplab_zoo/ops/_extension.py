"""Where the optional compiled extension lives, and loading it.

The extension (``src/deeplab_zoo/csrc``) is built by ``python -m deeplab_zoo.ops.build``
into a build directory keyed by the torch / Python version (a library built against
another torch must never be loaded). It is loaded lazily, the first time an op asks for
it; a missing, stale or unloadable library is not an error: the ops then run their
pure-PyTorch references and `status()` says why.

Environment variables:
    DEEPLAB_ZOO_OPS_BUILD_DIR: root of the build directories (default: ``<repo>/build/ops``
        in a source checkout, else ``$XDG_CACHE_HOME/deeplab_zoo/ops``).
    DEEPLAB_ZOO_OPS_LIBRARY: an explicit path of the compiled library to load.
    DEEPLAB_ZOO_DISABLE_NATIVE=1: never load the extension.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "CSRC_DIR",
    "LIBRARY_NAME",
    "ExtensionStatus",
    "build_dir",
    "has_kernel",
    "library_file_name",
    "library_path",
    "load",
    "source_files",
    "sources_digest",
    "status",
]

LIBRARY_NAME = "deeplab_zoo_ops"
CSRC_DIR = Path(__file__).resolve().parent.parent / "csrc"
STAMP_NAME = f"{LIBRARY_NAME}.json"
NAMESPACE = "deeplab_zoo"
BUILD_HINT = "build it with `python -m deeplab_zoo.ops.build`"
# Modules of this package whose `register_fakes()` registers the fake (meta) kernels of
# their ops once the library is loaded.
FAKE_MODULES = ("panoptic", "axial")


@dataclass(frozen=True)
class ExtensionStatus:
    """Outcome of loading the extension: ``loaded``, the library ``path``, and ``reason``
    (why it is not loaded, empty when it is)."""

    loaded: bool
    path: Path | None
    reason: str
    cuda: bool = False


_lock = threading.Lock()
_status: ExtensionStatus | None = None


def source_files(cuda: bool) -> list[Path]:
    """The C++ sources that make up the extension; with ``cuda`` also the CUDA ones
    (``*.cu`` kernels and their ``*_cuda.cpp`` ATen wrappers)."""
    cpp = sorted(CSRC_DIR.glob("*.cpp"))
    files = [p for p in cpp if not p.stem.endswith("_cuda")]
    if cuda:
        files += [p for p in cpp if p.stem.endswith("_cuda")] + sorted(CSRC_DIR.glob("*.cu"))
    return files


def sources_digest() -> str:
    """sha256 over every source and header in ``csrc`` (names and contents)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in CSRC_DIR.iterdir()
                       if p.suffix in {".cpp", ".cu", ".h", ".cuh"}):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _build_root() -> Path:
    explicit = os.environ.get("DEEPLAB_ZOO_OPS_BUILD_DIR")
    if explicit:
        return Path(explicit)
    repo = Path(__file__).resolve().parents[3]
    if (repo / "pyproject.toml").is_file() and (repo / "src" / "deeplab_zoo").is_dir():
        return repo / "build" / "ops"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "deeplab_zoo" / "ops"


def build_dir() -> Path:
    """Build directory for this torch / Python / machine combination."""
    tag = (f"torch-{torch.__version__}-py{sys.version_info.major}{sys.version_info.minor}"
           f"-{platform.machine()}")
    return _build_root() / re.sub(r"[^A-Za-z0-9_.+-]", "_", tag)


def library_file_name() -> str:
    """File name torch.utils.cpp_extension gives the compiled library."""
    return f"{LIBRARY_NAME}.pyd" if sys.platform == "win32" else f"{LIBRARY_NAME}.so"


def library_path() -> Path:
    """Path of the compiled library (explicit ``DEEPLAB_ZOO_OPS_LIBRARY`` or the build dir)."""
    explicit = os.environ.get("DEEPLAB_ZOO_OPS_LIBRARY")
    return Path(explicit) if explicit else build_dir() / library_file_name()


def has_kernel(op: str, dispatch_key: str) -> bool:
    """Whether ``deeplab_zoo::op`` has a kernel for ``dispatch_key`` ("CPU", "CUDA")."""
    name = f"{NAMESPACE}::{op}"
    return (torch._C._dispatch_has_kernel_for_dispatch_key(name, dispatch_key)
            if _op_exists(op) else False)


def _op_exists(op: str) -> bool:
    try:
        getattr(getattr(torch.ops, NAMESPACE), op)
    except (AttributeError, RuntimeError):
        return False
    return True


def _check_stamp(path: Path) -> str:
    """Empty string if the library at ``path`` was built from the current sources."""
    stamp = path.with_name(STAMP_NAME)
    if not stamp.is_file():
        return f"{path} has no build stamp ({stamp.name}); rebuild: {BUILD_HINT}"
    try:
        info = json.loads(stamp.read_text())
    except (OSError, ValueError) as error:
        return f"cannot read {stamp}: {error}; rebuild: {BUILD_HINT}"
    if info.get("torch") != torch.__version__:
        return (f"{path} was built for torch {info.get('torch')}, this is torch "
                f"{torch.__version__}; rebuild: {BUILD_HINT}")
    if CSRC_DIR.is_dir() and info.get("sources") != sources_digest():
        return f"{path} is out of date with {CSRC_DIR}; rebuild: {BUILD_HINT}"
    return ""


def _load_locked(path: Path) -> ExtensionStatus:
    if os.environ.get("DEEPLAB_ZOO_DISABLE_NATIVE", "") not in ("", "0"):
        return ExtensionStatus(False, None, "disabled by DEEPLAB_ZOO_DISABLE_NATIVE")
    if not path.is_file():
        return ExtensionStatus(False, None, f"native extension not built ({path} is missing); "
                               f"{BUILD_HINT}")
    if not os.environ.get("DEEPLAB_ZOO_OPS_LIBRARY"):
        reason = _check_stamp(path)
        if reason:
            return ExtensionStatus(False, path, reason)
    try:
        torch.ops.load_library(str(path))
    except (OSError, RuntimeError) as error:
        return ExtensionStatus(False, path, f"cannot load {path}: {error}")
    import importlib

    for module in FAKE_MODULES:
        importlib.import_module(f"{__package__}.{module}").register_fakes()
    return ExtensionStatus(True, path, "", cuda=has_kernel("center_group", "CUDA"))


def load(*, reload: bool = False) -> ExtensionStatus:
    """Loads the compiled extension once (again if ``reload``); never raises."""
    global _status
    with _lock:
        if _status is None or (reload and not _status.loaded):
            _status = _load_locked(library_path())
        return _status


def status() -> ExtensionStatus:
    """The extension's status (loads it on first call)."""
    return load()
