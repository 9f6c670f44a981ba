"""Checking a model against DeepLab2's reference outputs (``shared/parity`` fixtures).

The fixtures hold DeepLab2's outputs for models whose every variable was set by a
deterministic rule (``seeded_weights.py`` beside them). These helpers rebuild those
weights, load them through the converter and compare outputs, for the tests and for
``scripts/parity_report.py``.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: max|ours - ref| <= FLOAT_TOL * max(1, max|ref|) per float tensor (fixtures' README).
FLOAT_TOL = 1e-4
#: fraction of pixels on which discrete maps computed from our raw outputs must agree.
DISCRETE_AGREEMENT = 0.999
RAW_OUTPUTS = ("semantic_logits", "center_heatmap", "offset_map")
DISCRETE_OUTPUTS = ("semantic_pred", "panoptic_pred", "instance_pred")


@cache
def _seeded_module(root: str):
    path = Path(root) / "seeded_weights.py"
    spec = importlib.util.spec_from_file_location("deeplab_zoo_seeded_weights", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seeded_variables(root: Path, keys_file: Path, salt: int = 0) -> dict[str, np.ndarray]:
    """Checkpoint variables exactly as the fixtures' generator seeded them."""
    seeded = _seeded_module(str(root))
    with gzip.open(keys_file, "rt") as f:
        listing = json.load(f)
    return {v["name"]: seeded.seeded_value(v["name"], v["shape"], salt)
            for v in listing["variables"] if v["dtype"].startswith("float")}


def build_seeded_model(root: Path, keys_file: Path, model_name: str,
                       crop_size: Any = None) -> torch.nn.Module:
    """``create_model(model_name)`` with the seeded weights loaded strictly, in eval mode."""
    from .factory import create_model
    from .weights import load_tf_variables

    model = create_model(model_name, crop_size=crop_size)
    load_tf_variables(model, seeded_variables(root, keys_file), strict=True)
    return model.eval()


def to_input(image: np.ndarray) -> torch.Tensor:
    """HWC uint8 -> normalised NCHW float32 exactly as DeepLab2 (x / 127.5 - 1)."""
    return torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1.0


def to_hwc(value: torch.Tensor) -> np.ndarray:
    """Our [1, C, H, W] -> the fixtures' HxWxC (HxW for single-channel maps)."""
    array = value[0].detach().cpu().numpy()
    if array.ndim == 3:
        array = array.transpose(1, 2, 0)
        if array.shape[-1] == 1:
            array = array[..., 0]
    return array


def relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    """max|ours - ref| / max(1, max|ref|)."""
    return float(np.abs(ours.astype(np.float64) - ref).max() / max(1.0, np.abs(ref).max()))


def compare_case(model: torch.nn.Module, ref: Any, image: np.ndarray,
                 sample_yx: np.ndarray | None = None) -> dict[str, float]:
    """Runs ``model`` on ``image``; returns relative errors (raw outputs) and pixel
    agreement (discrete maps) against the reference arrays ``ref`` (an npz)."""
    with torch.no_grad():
        outputs = model(to_input(image))
        maps = model.postprocess(outputs)
    result: dict[str, float] = {}
    for name in RAW_OUTPUTS:
        if sample_yx is not None and f"{name}@sample" in ref.files:
            ours = to_hwc(outputs[name])[sample_yx[:, 0], sample_yx[:, 1]]
            reference = ref[f"{name}@sample"]
        elif name in ref.files:
            ours, reference = to_hwc(outputs[name]), ref[name]
        else:
            continue
        result[name] = relative_error(ours.reshape(reference.shape), reference)
    for name in DISCRETE_OUTPUTS:
        if name in ref.files:
            result[name] = float((maps[name][0].cpu().numpy() == ref[name]).mean())
    return result
