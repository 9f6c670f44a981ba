"""Every DeepLab2 kMaX-DeepLab manifest with a ResNet-50 or ConvNeXt pixel encoder maps
completely onto our model (built on the meta device at the config's crop size)."""
from __future__ import annotations

import gzip
import json

import pytest
import torch

import deeplab_zoo
from deeplab_zoo.weights import plan_tf_mapping

# manifest (parity/manifests, without .json.gz) -> registry name with tag
MANIFESTS = {
    "cityscapes__kmax_deeplab__kmax_meta_r50_os32": "kmax_deeplab_r50.cityscapes",
    "cityscapes__kmax_deeplab__kmax_meta_convnext_tiny_os32":
        "kmax_deeplab_convnext_tiny.cityscapes",
    "cityscapes__kmax_deeplab__kmax_meta_convnext_small_os32":
        "kmax_deeplab_convnext_small.cityscapes",
    "cityscapes__kmax_deeplab__kmax_meta_convnext_base_os32":
        "kmax_deeplab_convnext_base.cityscapes",
    "cityscapes__kmax_deeplab__kmax_meta_convnext_large_os32":
        "kmax_deeplab_convnext_large.cityscapes",
    "coco__kmax_deeplab__kmax_meta_r50_os32": "kmax_deeplab_r50.coco",
    "coco__kmax_deeplab__kmax_meta_convnext_tiny_os32": "kmax_deeplab_convnext_tiny.coco",
    "coco__kmax_deeplab__kmax_meta_convnext_small_os32": "kmax_deeplab_convnext_small.coco",
    "coco__kmax_deeplab__kmax_meta_convnext_base_os32": "kmax_deeplab_convnext_base.coco",
    "coco__kmax_deeplab__kmax_meta_convnext_large_os32": "kmax_deeplab_convnext_large.coco",
    "ade20k__kmax_deeplab__kmax_meta_r50_os32": "kmax_deeplab_r50.ade20k",
    "ade20k__kmax_deeplab__kmax_meta_r50_os32_res1281": "kmax_deeplab_r50.ade20k_res1281",
    "ade20k__kmax_deeplab__kmax_meta_convnext_large_os32": "kmax_deeplab_convnext_large.ade20k",
    "ade20k__kmax_deeplab__kmax_meta_convnext_large_os32_res1281":
        "kmax_deeplab_convnext_large.ade20k_res1281",
    # The example config (COCO, ConvNeXt-B at a 65x65 crop).
    "example__example_coco_kmax_meta_convnext": "kmax_deeplab_convnext_base.coco",
}
_PIXEL_ENCODERS = {"kmax_resnet50", "kmax_convnext_tiny", "kmax_convnext_small",
                   "kmax_convnext_base", "kmax_convnext_large"}


def _load(parity_dir, manifest: str) -> dict:
    with gzip.open(parity_dir / "manifests" / f"{manifest}.json.gz", "rt") as f:
        return json.load(f)


@pytest.mark.parametrize("manifest", sorted(MANIFESTS))
def test_manifest_maps_completely(parity_dir, manifest):
    listing = _load(parity_dir, manifest)
    shapes = {v["name"]: v["shape"] for v in listing["variables"] if v["dtype"] != "string"}
    with torch.device("meta"):
        model = deeplab_zoo.create_model(MANIFESTS[manifest], crop_size=listing["crop_size"])
    mapping, report = plan_tf_mapping(model, shapes)
    assert report == {"missing": [], "unused": [], "mismatched": []}
    assert len(mapping) == listing["num_keys"] - 1  # all but _CHECKPOINTABLE_OBJECT_GRAPH
    n_params = sum(v.numel() for k, v in model.state_dict().items()
                   if not k.endswith("num_batches_tracked"))
    assert n_params == listing["total_float_params"]
    assert sorted(model.tf_checkpoint_items) == sorted(listing["checkpoint_items"])


def test_every_kmax_manifest_is_listed(parity_dir):
    expected = set()
    for path in (parity_dir / "manifests").glob("*.json.gz"):
        with gzip.open(path, "rt") as f:
            listing = json.load(f)
        if listing["model_class"] == "KMaXDeepLab" and listing["backbone"] in _PIXEL_ENCODERS:
            expected.add(path.name.removesuffix(".json.gz"))
    assert expected == set(MANIFESTS)
