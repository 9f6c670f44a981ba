"""Every DeepLab2 manifest of a convolutional model maps completely onto our model."""
from __future__ import annotations

import pytest
from manifest_checks import (
    check_maps_completely,
    load_manifest,
    manifests_where,
)

# manifest (parity/manifests, without .json.gz) -> (registry name, builder overrides)
MANIFESTS = {
    "cityscapes__panoptic_deeplab__mobilenet_v3_large_os16":
        ("panoptic_deeplab_mobilenet_v3_large_os16.cityscapes", {}),
    "cityscapes__panoptic_deeplab__mobilenet_v3_large_os32":
        ("panoptic_deeplab_mobilenet_v3_large_os32.cityscapes", {}),
    "cityscapes__panoptic_deeplab__mobilenet_v3_small_os16":
        ("panoptic_deeplab_mobilenet_v3_small_os16.cityscapes", {}),
    "cityscapes__panoptic_deeplab__mobilenet_v3_small_os32":
        ("panoptic_deeplab_mobilenet_v3_small_os32.cityscapes", {}),
    "cityscapes__panoptic_deeplab__resnet50_beta_os32":
        ("panoptic_deeplab_resnet50_beta_os32.cityscapes", {}),
    "cityscapes__panoptic_deeplab__resnet50_os32_merge_with_pure_tf_func":
        ("panoptic_deeplab_resnet50_os32.cityscapes", {}),
    "cityscapes__panoptic_deeplab__resnet50_os32_semseg":
        ("panoptic_deeplab_resnet50_os32.cityscapes", {"instance": False}),
    "cityscapes__panoptic_deeplab__swidernet_sac_1_1_1_os16":
        ("panoptic_deeplab_swidernet_sac_1_1_1_os16.cityscapes", {}),
    "cityscapes__panoptic_deeplab__swidernet_sac_1_1_3_os16":
        ("panoptic_deeplab_swidernet_sac_1_1_3_os16.cityscapes", {}),
    "cityscapes__panoptic_deeplab__swidernet_sac_1_1_4.5_os16":
        ("panoptic_deeplab_swidernet_sac_1_1_4_5_os16.cityscapes", {}),
    "cityscapes__panoptic_deeplab__wide_resnet41_os16":
        ("panoptic_deeplab_wide_resnet41_os16.cityscapes", {}),
    "coco__panoptic_deeplab__resnet50_beta_os16": ("panoptic_deeplab_resnet50_beta_os16.coco", {}),
    "coco__panoptic_deeplab__resnet50_beta_os32": ("panoptic_deeplab_resnet50_beta_os32.coco", {}),
    "coco__panoptic_deeplab__resnet50_os16": ("panoptic_deeplab_resnet50_os16.coco", {}),
    "coco__panoptic_deeplab__resnet50_os32": ("panoptic_deeplab_resnet50_os32.coco", {}),
    "example__example_cityscapes_deeplabv3": ("deeplabv3_resnet50.cityscapes", {}),
    "example__example_cityscapes_deeplabv3_mv3l": ("deeplabv3_mobilenet_v3_large.cityscapes", {}),
    "example__example_cityscapes_deeplabv3plus": ("deeplabv3plus_resnet50.cityscapes", {}),
    "example__example_cityscapes_panoptic_deeplab":
        ("panoptic_deeplab_resnet50_os32.cityscapes", {"atrous_rates": (6, 12, 18)}),
    "example__example_cityscapes_panoptic_deeplab_mv3l":
        ("panoptic_deeplab_mobilenet_v3_large_os32.cityscapes", {"atrous_rates": (6, 12, 18)}),
    "kitti__panoptic_deeplab__resnet50_os32": ("panoptic_deeplab_resnet50_os32.kitti_step", {}),
    "kitti__panoptic_deeplab__resnet50_os32_trainval":
        ("panoptic_deeplab_resnet50_os32.kitti_step", {}),
    "motchallenge__panoptic_deeplab__resnet50_os32":
        ("panoptic_deeplab_resnet50_os32.motchallenge_step", {}),
}


@pytest.mark.parametrize("manifest", sorted(MANIFESTS))
def test_manifest_maps_completely(parity_dir, manifest):
    name, overrides = MANIFESTS[manifest]
    check_maps_completely(load_manifest(parity_dir, manifest), name, **overrides)


def test_every_issue2_manifest_is_listed(parity_dir):
    covered = {"panoptic_deeplab", "deeplab_v3", "deeplab_v3_plus"}
    backbones = {"resnet50", "resnet50_beta", "mobilenet_v3_small", "mobilenet_v3_large",
                 "wide_resnet41", "swidernet"}
    expected = manifests_where(parity_dir, lambda listing: listing["meta_architecture"] in
                               covered and listing["backbone"] in backbones)
    assert expected == set(MANIFESTS)
