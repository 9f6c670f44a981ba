"""Shared checks of the manifest tests: DeepLab2 checkpoint listings (parity/manifests)
against our models built on the meta device."""
from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import deeplab_zoo
from deeplab_zoo.weights import plan_tf_mapping

_ATTRIBUTES = "/.ATTRIBUTES/VARIABLE_VALUE"
_LEAF = {"kernel": "weight", "depthwise_kernel": "weight", "gamma": "weight", "beta": "bias",
         "moving_mean": "running_mean", "moving_variance": "running_var", "bias": "bias",
         "embeddings": "weight"}


def load_manifest(parity_dir: Path, manifest: str) -> dict:
    """The listing ``parity/manifests/<manifest>.json.gz``."""
    with gzip.open(parity_dir / "manifests" / f"{manifest}.json.gz", "rt") as f:
        return json.load(f)


def manifests_where(parity_dir: Path, keep: Callable[[dict], bool]) -> set[str]:
    """Names of the manifests whose listing satisfies ``keep``."""
    out = set()
    for path in (parity_dir / "manifests").glob("*.json.gz"):
        with gzip.open(path, "rt") as f:
            if keep(json.load(f)):
                out.add(path.name.removesuffix(".json.gz"))
    return out


def variable_shapes(listing: dict) -> dict[str, list[int]]:
    return {v["name"]: v["shape"] for v in listing["variables"] if v["dtype"] != "string"}


def check_maps_completely(listing: dict, name: str, **model_args) -> nn.Module:
    """Builds ``name`` on the meta device and checks that DeepLab2's variables map onto
    it one to one (no missing / unused / mismatched, same parameter count)."""
    with torch.device("meta"):
        model = deeplab_zoo.create_model(name, **model_args)
    mapping, report = plan_tf_mapping(model, variable_shapes(listing))
    assert report == {"missing": [], "unused": [], "mismatched": []}
    assert len(mapping) == listing["num_keys"] - 1  # all but _CHECKPOINTABLE_OBJECT_GRAPH
    n_params = sum(v.numel() for k, v in model.state_dict().items()
                   if not k.endswith("num_batches_tracked"))
    assert n_params == listing["total_float_params"]
    return model


def _torch_name(key: str) -> str:
    """The naming rule, written out: strip underscores, rename the leaf."""
    parts = [part.lstrip("_") for part in key.removesuffix(_ATTRIBUTES).split("/")]
    parts[-1] = _LEAF.get(parts[-1], parts[-1])
    return ".".join(parts)


def _torch_shape(key: str, shape: list[int]) -> tuple[int, ...]:
    leaf = key.removesuffix(_ATTRIBUTES).rsplit("/", 1)[-1]
    if leaf == "kernel" and len(shape) == 4:  # HWIO -> OIHW
        return (shape[3], shape[2], shape[0], shape[1])
    if leaf == "kernel" and len(shape) == 3:  # Conv1D WIO -> OIW
        return (shape[2], shape[1], shape[0])
    return tuple(shape)  # qkv_kernel stays [in, out]; embeddings / BN / memory as in TF


def check_encoder_follows_naming_rule(listing: dict, model: nn.Module) -> None:
    """The encoder's variables map by the naming rule alone (no rename exceptions)."""
    encoder = {_torch_name(k): _torch_shape(k, s) for k, s in variable_shapes(listing).items()
               if k.startswith("encoder/")}
    ours = {f"encoder.{k}": tuple(v.shape) for k, v in model.encoder.state_dict().items()
            if not k.endswith("num_batches_tracked")}
    assert encoder == ours
