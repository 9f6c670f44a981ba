"""Helpers for comparing our models with DeepLab2's stored reference outputs."""
from __future__ import annotations

import gzip
import importlib.util
import json
from functools import cache
from pathlib import Path

import numpy as np
import torch

import deeplab_zoo
from deeplab_zoo.weights import load_tf_variables

FLOAT_TOL = 1e-4  # max|ours - ref| <= FLOAT_TOL * max(1, max|ref|)  (parity/README.md)
DISCRETE_AGREEMENT = 0.999


@cache
def seeded_module(root: str):
    path = Path(root) / "seeded_weights.py"
    spec = importlib.util.spec_from_file_location("seeded_weights", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seeded_variables(root: Path, keys_file: Path, salt: int = 0) -> dict[str, np.ndarray]:
    """Checkpoint variables exactly as the fixtures' generator seeded them."""
    seeded = seeded_module(str(root))
    with gzip.open(keys_file, "rt") as f:
        listing = json.load(f)
    return {v["name"]: seeded.seeded_value(v["name"], v["shape"], salt)
            for v in listing["variables"] if v["dtype"].startswith("float")}


def build_seeded_model(root: Path, case_dir: Path, case: str, model_name: str,
                       crop_size) -> torch.nn.Module:
    model = deeplab_zoo.create_model(model_name, crop_size=crop_size)
    load_tf_variables(model, seeded_variables(root, case_dir / f"{case}.keys.json.gz"),
                      strict=True)
    return model.eval()


def to_input(image: np.ndarray) -> torch.Tensor:
    """HWC uint8 -> normalised NCHW float32 exactly as DeepLab2 (x / 127.5 - 1)."""
    return torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1.0


def to_nhwc(value: torch.Tensor) -> np.ndarray:
    """Our [1, C, H, W] -> the fixtures' HxWxC (HxW for single-channel maps)."""
    array = value[0].detach().cpu().numpy()
    if array.ndim == 3:
        array = array.transpose(1, 2, 0)
        if array.shape[-1] == 1:
            array = array[..., 0]
    return array


def relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(ours.astype(np.float64) - ref).max() / max(1.0, np.abs(ref).max()))
