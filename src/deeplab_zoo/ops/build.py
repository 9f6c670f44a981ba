"""Builds the optional native extension (C++ always, CUDA when nvcc and a CUDA torch exist).

Usage::

    python -m deeplab_zoo.ops.build            # CPU, plus CUDA if nvcc is found
    python -m deeplab_zoo.ops.build --cpu-only
    python -m deeplab_zoo.ops.build --cuda-arch "8.0;9.0+PTX" --verbose

Uses ``torch.utils.cpp_extension`` (needs a C++17 compiler and ninja). The build is
incremental: objects are cached in the build directory (`deeplab_zoo.ops._extension.
build_dir()`, ``<repo>/build/ops/...`` in a source checkout), so a rebuild with unchanged
sources only re-links nothing and takes seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from . import _extension

__all__ = ["DEFAULT_CUDA_ARCH_LIST", "build", "cuda_available_for_build", "main"]

# Used when no GPU is visible (a GPU build targets the visible cards): cubins for Turing,
# Ampere (also runs on 8.6 / 8.9), Hopper, Blackwell, plus PTX for newer GPUs.
DEFAULT_CUDA_ARCH_LIST = "7.5;8.0;9.0;10.0;12.0+PTX"

# Float results must match the PyTorch reference bit for bit: no FMA contraction, no
# fast-math; -fno-math-errno only lets sqrt vectorise (it changes no value). OpenMP makes
# at::parallel_for parallel (torch's own libgomp serves it at run time). macOS / Windows
# flags are best effort (untested).
if sys.platform == "win32":
    CXX_FLAGS = ["/O2", "/openmp", "/fp:precise"]
    LD_FLAGS: list[str] = []
elif sys.platform == "darwin":
    CXX_FLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno"]
    LD_FLAGS = []
else:
    CXX_FLAGS = ["-O3", "-fopenmp", "-ffp-contract=off", "-fno-math-errno"]
    LD_FLAGS = ["-fopenmp"]
CUDA_FLAGS = ["-O3", "--fmad=false"]


def _cuda_root() -> Path | None:
    """A CUDA toolkit root with headers (include/cuda_runtime.h) and nvcc.

    torch derives CUDA_HOME from nvcc's location, which is wrong when nvcc is a wrapper
    (e.g. /usr/local/bin/nvcc -> CUDA_HOME=/usr/local); look at the usual places too.
    """
    from torch.utils import cpp_extension

    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"),
                  cpp_extension.CUDA_HOME, "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(nvcc).resolve().parent.parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "include" / "cuda_runtime.h").is_file() and (
                Path(candidate) / "bin" / "nvcc").is_file():
            return Path(candidate)
    return None


def cuda_available_for_build() -> bool:
    """True if CUDA sources can be compiled: a CUDA build of torch and a CUDA toolkit."""
    return torch.version.cuda is not None and _cuda_root() is not None


def build(*, cuda: bool | None = None, cuda_arch: str | None = None, verbose: bool = False,
          jobs: int | None = None) -> Path:
    """Compiles the extension into `_extension.build_dir()` and loads it.

    Args:
        cuda: compile the CUDA kernels; None = when `cuda_available_for_build()`.
        cuda_arch: TORCH_CUDA_ARCH_LIST for this build (default: the environment's, else
            the visible GPUs, else `DEFAULT_CUDA_ARCH_LIST`).
        verbose: print the compiler commands.
        jobs: parallel compile jobs (default: the environment's MAX_JOBS, else all cores).

    Returns:
        Path of the compiled library.
    """
    from torch.utils import cpp_extension

    if not cpp_extension.is_ninja_available():
        raise RuntimeError("building the deeplab_zoo extension needs ninja: "
                           "`pip install ninja` (or your system's ninja-build package)")
    if not _extension.source_files(cuda=False):
        raise RuntimeError(f"no C++ sources in {_extension.CSRC_DIR}: this installation of "
                           "deeplab_zoo does not ship them (install from a source checkout)")
    if cuda is None:
        cuda = cuda_available_for_build()
    elif cuda and not cuda_available_for_build():
        raise RuntimeError("CUDA build requested but torch has no CUDA support "
                           f"(torch.version.cuda={torch.version.cuda}) or nvcc is not found")
    out_dir = _extension.build_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    env_backup = {key: os.environ.get(key) for key in ("TORCH_CUDA_ARCH_LIST", "MAX_JOBS")}
    torch_cuda_home = cpp_extension.CUDA_HOME
    try:
        if cuda:
            cpp_extension.CUDA_HOME = str(_cuda_root())
        if cuda_arch:
            os.environ["TORCH_CUDA_ARCH_LIST"] = cuda_arch
        elif cuda and not os.environ.get("TORCH_CUDA_ARCH_LIST") and (
                not torch.cuda.is_available() or torch.cuda.device_count() == 0):
            os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCH_LIST
        if jobs is not None:
            os.environ["MAX_JOBS"] = str(jobs)
        elif not os.environ.get("MAX_JOBS"):
            os.environ["MAX_JOBS"] = str(os.cpu_count() or 1)
        arch = os.environ.get("TORCH_CUDA_ARCH_LIST") if cuda else None
        built = cpp_extension.load(
            name=_extension.LIBRARY_NAME,
            sources=[str(p) for p in _extension.source_files(cuda)],
            extra_cflags=CXX_FLAGS,
            extra_cuda_cflags=CUDA_FLAGS,
            extra_ldflags=LD_FLAGS,
            extra_include_paths=[str(_extension.CSRC_DIR)],
            build_directory=str(out_dir),
            with_cuda=cuda,
            is_python_module=False,
            verbose=verbose,
        )
    finally:
        cpp_extension.CUDA_HOME = torch_cuda_home
        for key, value in env_backup.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    library = out_dir / _extension.library_file_name()
    if built and Path(built).resolve() != library.resolve():
        # cpp_extension renames a library rebuilt within one process (name_v1, ...).
        shutil.copy2(built, library)
    stamp = {"torch": torch.__version__, "sources": _extension.sources_digest(), "cuda": cuda,
             "cuda_arch": arch}
    (out_dir / _extension.STAMP_NAME).write_text(json.dumps(stamp, indent=1) + "\n")
    return library


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deeplab_zoo.ops.build",
                                     description="Build deeplab_zoo's native ops.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--cpu-only", action="store_true", help="do not compile CUDA kernels")
    group.add_argument("--cuda", action="store_true", help="require the CUDA kernels")
    parser.add_argument("--cuda-arch", default=None,
                        help=f"TORCH_CUDA_ARCH_LIST (default without GPU: "
                             f"{DEFAULT_CUDA_ARCH_LIST!r})")
    parser.add_argument("--jobs", type=int, default=None, help="parallel compile jobs")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    cuda = False if args.cpu_only else (True if args.cuda else None)
    start = time.perf_counter()
    try:
        library = build(cuda=cuda, cuda_arch=args.cuda_arch, verbose=args.verbose,
                        jobs=args.jobs)
    except Exception as error:  # noqa: BLE001  (report any compiler failure plainly)
        print(f"build failed: {error}", file=sys.stderr)
        return 1
    status = _extension.load(reload=True)
    print(f"built {library} in {time.perf_counter() - start:.1f} s "
          f"(loaded: {status.loaded}, CUDA kernels: {status.cuda})"
          + (f"; {status.reason}" if status.reason else ""))
    return 0 if status.loaded else 1


if __name__ == "__main__":
    raise SystemExit(main())
