"""Our own weight format: ``model.safetensors`` + ``config.json`` (never pickle)."""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import CheckpointError

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """Writes ``path`` crash-safely: ``write(tmp)`` fills a temporary file in the same
    directory, which is synced to disk, given the usual permissions (mkstemp makes it
    private) and renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_weights(model: nn.Module, path: str | os.PathLike,
                 config: dict[str, Any] | None = None) -> Path:
    """Writes ``model``'s state dict to ``path`` (a .safetensors file or a directory).

    For a directory, ``config.json`` (architecture, tag, dataset...) goes beside it.
    """
    path = Path(path)
    target = path if path.suffix == ".safetensors" else path / WEIGHTS_NAME
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    atomic_write(target, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    if config is not None:
        text = json.dumps(config, indent=2, sort_keys=True, default=list)
        atomic_write(target.parent / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text))
    return target


def read_config(path: str | os.PathLike) -> dict[str, Any] | None:
    """``config.json`` beside a weights file or inside a directory, if present."""
    path = Path(path)
    candidate = (path if path.is_dir() else path.parent) / CONFIG_NAME
    if not candidate.is_file():
        return None
    try:
        return json.loads(candidate.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{candidate}: not valid JSON ({exc})") from exc


def load_weights(model: nn.Module, path: str | os.PathLike, *, strict: bool = True) -> None:
    """Loads a .safetensors file (or a directory holding ``model.safetensors``) into ``model``."""
    path = Path(path)
    file = path / WEIGHTS_NAME if path.is_dir() else path
    if not file.is_file():
        raise CheckpointError(f"no weights file at {file}")
    try:
        state = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{file}: cannot read safetensors ({exc})") from exc
    expected = {k: v for k, v in model.state_dict().items()
                if not k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if strict and (missing or unexpected or mismatched):
        parts = [f"{file} does not match {type(model).__name__}:"]
        for label, names in (("shape mismatch", mismatched), ("missing", missing),
                             ("unexpected", unexpected)):
            if names:
                parts.append(f"  {label} ({len(names)}): " + "; ".join(names[:10])
                             + (" ..." if len(names) > 10 else ""))
        raise CheckpointError("\n".join(parts))
    with torch.no_grad():
        model.load_state_dict({k: v for k, v in state.items() if k in expected
                               and state[k].shape == expected[k].shape}, strict=False)
