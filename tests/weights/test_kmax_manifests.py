"""Every DeepLab2 kMaX-DeepLab manifest with a ResNet-50 or ConvNeXt pixel encoder maps
completely onto our model (built on the meta device at the config's crop size)."""
from __future__ import annotations

import pytest
from manifest_checks import (
    check_maps_completely,
    load_manifest,
    manifests_where,
)

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


@pytest.mark.parametrize("manifest", sorted(MANIFESTS))
def test_manifest_maps_completely(parity_dir, manifest):
    listing = load_manifest(parity_dir, manifest)
    model = check_maps_completely(listing, MANIFESTS[manifest], crop_size=listing["crop_size"])
    assert sorted(model.tf_checkpoint_items) == sorted(listing["checkpoint_items"])


def test_every_kmax_manifest_is_listed(parity_dir):
    expected = manifests_where(parity_dir, lambda listing: listing["model_class"] ==
                               "KMaXDeepLab" and listing["backbone"] in _PIXEL_ENCODERS)
    assert expected == set(MANIFESTS)
