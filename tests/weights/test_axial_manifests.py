"""Axial-DeepLab manifests map completely onto our models (built on the meta device)."""
from __future__ import annotations

import gzip
import json

import pytest
import torch

import deeplab_zoo
from deeplab_zoo.registry import get_pretrained_cfg
from deeplab_zoo.weights import plan_tf_mapping

# manifest (parity/manifests, without .json.gz) -> registry name
MANIFESTS = {
    "cityscapes__axial_deeplab__axial_swidernet_1_1_1_os16":
        "panoptic_deeplab_axial_swidernet_1_1_1_os16.cityscapes",
    "cityscapes__axial_deeplab__axial_swidernet_1_1_3_os16":
        "panoptic_deeplab_axial_swidernet_1_1_3_os16.cityscapes",
    "cityscapes__axial_deeplab__axial_swidernet_1_1_4.5_os16":
        "panoptic_deeplab_axial_swidernet_1_1_4_5_os16.cityscapes",
}
_ATTRIBUTES = "/.ATTRIBUTES/VARIABLE_VALUE"
_LEAF = {"kernel": "weight", "depthwise_kernel": "weight", "gamma": "weight", "beta": "bias",
         "moving_mean": "running_mean", "moving_variance": "running_var", "bias": "bias",
         "embeddings": "weight"}


def _listing(parity_dir, manifest: str) -> dict:
    with gzip.open(parity_dir / "manifests" / f"{manifest}.json.gz", "rt") as f:
        return json.load(f)


def _torch_name(key: str) -> str:
    """The naming rule, written out: strip underscores, rename the leaf."""
    parts = [part.lstrip("_") for part in key.removesuffix(_ATTRIBUTES).split("/")]
    parts[-1] = _LEAF.get(parts[-1], parts[-1])
    return ".".join(parts)


def _torch_shape(key: str, shape: list[int]) -> tuple[int, ...]:
    leaf = key.removesuffix(_ATTRIBUTES).rsplit("/", 1)[-1]
    if leaf == "kernel" and len(shape) == 4:  # HWIO -> OIHW
        return (shape[3], shape[2], shape[0], shape[1])
    return tuple(shape)  # qkv_kernel stays [in, out]; embeddings / BN shapes as in TF


@pytest.mark.parametrize("manifest", sorted(MANIFESTS))
def test_manifest_maps_completely(parity_dir, manifest):
    listing = _listing(parity_dir, manifest)
    shapes = {v["name"]: v["shape"] for v in listing["variables"] if v["dtype"] != "string"}
    with torch.device("meta"):
        model = deeplab_zoo.create_model(MANIFESTS[manifest])
    mapping, report = plan_tf_mapping(model, shapes)
    assert report == {"missing": [], "unused": [], "mismatched": []}
    assert len(mapping) == listing["num_keys"] - 1  # all but _CHECKPOINTABLE_OBJECT_GRAPH
    n_params = sum(v.numel() for k, v in model.state_dict().items()
                   if not k.endswith("num_batches_tracked"))
    assert n_params == listing["total_float_params"]

    # The encoder follows the naming rule mechanically (no rename exceptions).
    encoder = {_torch_name(k): _torch_shape(k, s) for k, s in shapes.items()
               if k.startswith("encoder/")}
    ours = {f"encoder.{k}": tuple(v.shape) for k, v in model.encoder.state_dict().items()
            if not k.endswith("num_batches_tracked")}
    assert encoder == ours


def test_every_axial_deeplab_manifest_is_listed(parity_dir):
    expected = set()
    for path in (parity_dir / "manifests").glob("*.json.gz"):
        with gzip.open(path, "rt") as f:
            listing = json.load(f)
        if listing.get("backbone") == "axial_swidernet":
            expected.add(path.name.removesuffix(".json.gz"))
    assert expected == set(MANIFESTS)


def test_pretrained_entries():
    cfg = get_pretrained_cfg("panoptic_deeplab_axial_swidernet.cityscapes")
    assert cfg.architecture == "panoptic_deeplab_axial_swidernet_1_1_4_5_os16"
    assert cfg.url.endswith("axial_swidernet_1_1_4.5_os16_axial_deeplab_cityscapes_trainfine"
                            ".tar.gz")
    assert cfg.crop_size == (1025, 2049)
    assert cfg.metrics == {"pq": 68.0, "miou": 83.0, "ap": 39.51}
    small = get_pretrained_cfg("panoptic_deeplab_axial_swidernet_1_1_1_os16.cityscapes")
    assert small.metrics["pq"] == 66.1
    assert small.model_args["postprocess"] == {"nms_kernel": 13, "stuff_area_limit": 2048}
