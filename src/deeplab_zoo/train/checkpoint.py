"""Training checkpoints: atomic, pickle-free, and enough state to resume bit-exactly.

A checkpoint is a directory ``<out>/checkpoints/ckpt-<step>/`` with

* ``model.safetensors``: the full state dict (buffers included);
* ``optimizer.safetensors``: the optimizer's tensor state, keys ``<param index>.<name>``;
* ``state.json``: step, optimizer hyper-parameters and non-tensor state, AMP scaler
  state, and every process's RNG states (Python, NumPy, torch CPU / CUDA).

It is written into a temporary directory and renamed into place, then
``checkpoints/latest`` is replaced atomically: a run killed at any moment leaves the
previous checkpoint intact and ``latest`` pointing at a complete one.
"""
from __future__ import annotations

import base64
import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import CheckpointError
from ..weights.store import atomic_write

__all__ = [
    "capture_rng_state",
    "latest_checkpoint",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
LATEST = "latest"


def _b64(tensor: torch.Tensor) -> str:
    return base64.b64encode(tensor.cpu().numpy().tobytes()).decode("ascii")


def _from_b64(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


def capture_rng_state() -> dict[str, Any]:
    """This process's Python, NumPy and torch RNG states (JSON-serialisable)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": _b64(torch.get_rng_state()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_from_b64(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_from_b64(s) for s in state["cuda"]])


def _split_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state_dict["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def _atomic_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(directory: str | os.PathLike, step: int, model: nn.Module,
                    optimizer: torch.optim.Optimizer, *, scaler: Any = None,
                    rng_states: list[dict[str, Any]] | None = None,
                    extra: dict[str, Any] | None = None, keep: int = 3) -> Path:
    """Writes ``ckpt-<step>`` under ``directory`` atomically; keeps the newest ``keep``."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"ckpt-{step:08d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".ckpt-{step:08d}."))
    tmp.chmod(root.stat().st_mode & 0o777)  # mkdtemp makes it private; match the parent
    try:
        model_state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(model_state, str(tmp / MODEL_FILE), metadata={"format": "pt"})
        tensors, meta = _split_optimizer_state(optimizer.state_dict())
        save_file(tensors, str(tmp / OPTIMIZER_FILE), metadata={"format": "pt"})
        state = {"step": step, "optimizer": meta,
                 "scaler": scaler.state_dict() if scaler is not None else None,
                 "rng": rng_states or [capture_rng_state()], "extra": extra or {}}
        (tmp / STATE_FILE).write_text(json.dumps(state))
        for name in (MODEL_FILE, OPTIMIZER_FILE, STATE_FILE):
            with open(tmp / name, "rb") as handle:
                os.fsync(handle.fileno())
        if final.exists():  # re-saving a step (e.g. after a resume): replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _atomic_text(root / LATEST, final.name + "\n")
    for old in sorted(p for p in root.glob("ckpt-*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _complete(path: Path) -> bool:
    return all((path / name).is_file() for name in (MODEL_FILE, OPTIMIZER_FILE, STATE_FILE))


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint under ``directory`` (None if there is none)."""
    root = Path(directory)
    pointer = root / LATEST
    if pointer.is_file():
        candidate = root / pointer.read_text().strip()
        if candidate.is_dir() and _complete(candidate):
            return candidate
    found = sorted(p for p in root.glob("ckpt-*") if p.is_dir() and _complete(p))
    return found[-1] if found else None


def load_checkpoint(path: str | os.PathLike, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, *,
                    scaler: Any = None) -> dict[str, Any]:
    """Restores ``model`` (and optimizer / scaler) from a checkpoint; returns ``state.json``.

    RNG states are returned under ``"rng"`` (one per process) for the caller to restore.
    """
    path = Path(path)
    if not _complete(path):
        raise CheckpointError(f"{path} is not a complete training checkpoint")
    try:
        model_state = load_file(str(path / MODEL_FILE))
        optimizer_tensors = load_file(str(path / OPTIMIZER_FILE))
        state = json.loads((path / STATE_FILE).read_text())
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc})") from exc
    missing, unexpected = model.load_state_dict(model_state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path} does not match the model: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    if optimizer is not None:
        optimizer.load_state_dict(_join_optimizer_state(optimizer_tensors, state["optimizer"]))
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    return state
