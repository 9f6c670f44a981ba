"""Every DeepLab2 MaX-DeepLab manifest (MaX-DeepLab-S/L, Panoptic-DeepLab on the MaX
backbones, kMaX-DeepLab with the axial ResNet-50) maps completely onto our models, built
on the meta device at the config's crop size."""
from __future__ import annotations

import pytest
from manifest_checks import (
    check_encoder_follows_naming_rule,
    check_maps_completely,
    load_manifest,
    manifests_where,
    variable_shapes,
)

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


@pytest.mark.parametrize("manifest", sorted(MANIFESTS))
def test_manifest_maps_completely(parity_dir, manifest):
    listing = load_manifest(parity_dir, manifest)
    model = check_maps_completely(listing, MANIFESTS[manifest], crop_size=listing["crop_size"])
    # DeepLab2 lists MaX-L's auxiliary semantic decoder as an item although it is never
    # built (its semantic feature is already at stride 4): it has no variables.
    with_variables = {key.split("/", 1)[0] for key in variable_shapes(listing)}
    assert set(model.tf_checkpoint_items) == set(listing["checkpoint_items"]) & with_variables
    check_encoder_follows_naming_rule(listing, model)


def test_every_max_deeplab_manifest_is_listed(parity_dir):
    expected = manifests_where(parity_dir, lambda listing: listing.get("backbone") in _BACKBONES)
    assert expected == set(MANIFESTS)
