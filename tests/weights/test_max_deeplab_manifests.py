"""Every DeepLab2 MaX-DeepLab manifest (MaX-DeepLab-S/L, Panoptic-DeepLab on the MaX
backbones, kMaX-DeepLab with the axial ResNet-50) maps completely onto our models, built
on the meta device at the config's crop size."""
from __future__ import annotations

import gzip
import json

import pytest
import torch

import deeplab_zoo
from deeplab_zoo.weights import plan_tf_mapping

# manifest (parity/manifests, without .json.gz) -> registry name with tag
MANIFESTS = {
    **{f"coco__max_deeplab__max_deeplab_s_os16_res{res}_{steps}k":
       f"max_deeplab_s.coco_res{res}_{steps}k" for res in (641, 1025) for steps in (100, 200, 400)},
    **{f"coco__max_deeplab__max_deeplab_l_os16_res1025_{steps}k":
       f"max_deeplab_l.coco_res1025_{steps}k" for steps in (100, 200, 400)},
    # configs/example/example_coco_max_deeplab (MaX-S, 65x65 crop).
    "example__example_coco_max_deeplab": "max_deeplab_s.coco",
    "cityscapes__axial_deeplab__max_deeplab_s_backbone_os16":
        "panoptic_deeplab_max_deeplab_s_backbone_os16.cityscapes",
    "cityscapes__axial_deeplab__max_deeplab_l_backbone_os16":
        "panoptic_deeplab_max_deeplab_l_backbone_os16.cityscapes",
    "cityscapes__kmax_deeplab__kmax_meta_axial_r50_os32": "kmax_deeplab_axial_r50.cityscapes",
    "coco__kmax_deeplab__kmax_meta_axial_r50_os32": "kmax_deeplab_axial_r50.coco",
}
_BACKBONES = {"max_deeplab_s", "max_deeplab_l", "max_deeplab_s_backbone",
              "max_deeplab_l_backbone", "kmax_axial_resnet50"}
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
    if leaf == "kernel" and len(shape) == 3:  # Conv1D WIO -> OIW
        return (shape[2], shape[1], shape[0])
    return tuple(shape)  # qkv_kernel stays [in, out]; embeddings / BN / memory as in TF


@pytest.mark.parametrize("manifest", sorted(MANIFESTS))
def test_manifest_maps_completely(parity_dir, manifest):
    listing = _listing(parity_dir, manifest)
    shapes = {v["name"]: v["shape"] for v in listing["variables"] if v["dtype"] != "string"}
    with torch.device("meta"):
        model = deeplab_zoo.create_model(MANIFESTS[manifest], crop_size=listing["crop_size"])
    mapping, report = plan_tf_mapping(model, shapes)
    assert report == {"missing": [], "unused": [], "mismatched": []}
    assert len(mapping) == listing["num_keys"] - 1  # all but _CHECKPOINTABLE_OBJECT_GRAPH
    n_params = sum(v.numel() for k, v in model.state_dict().items()
                   if not k.endswith("num_batches_tracked"))
    assert n_params == listing["total_float_params"]
    # DeepLab2 lists MaX-L's auxiliary semantic decoder as an item although it is never
    # built (its semantic feature is already at stride 4): it has no variables.
    with_variables = {key.split("/", 1)[0] for key in shapes}
    assert set(model.tf_checkpoint_items) == set(listing["checkpoint_items"]) & with_variables

    # The encoder follows the naming rule mechanically (no rename exceptions).
    encoder = {_torch_name(k): _torch_shape(k, s) for k, s in shapes.items()
               if k.startswith("encoder/")}
    ours = {f"encoder.{k}": tuple(v.shape) for k, v in model.encoder.state_dict().items()
            if not k.endswith("num_batches_tracked")}
    assert encoder == ours


def test_every_max_deeplab_manifest_is_listed(parity_dir):
    expected = set()
    for path in (parity_dir / "manifests").glob("*.json.gz"):
        with gzip.open(path, "rt") as f:
            listing = json.load(f)
        if listing.get("backbone") in _BACKBONES:
            expected.add(path.name.removesuffix(".json.gz"))
    assert expected == set(MANIFESTS)
