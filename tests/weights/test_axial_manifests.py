"""Axial-DeepLab manifests map completely onto our models (built on the meta device)."""
from __future__ import annotations

import pytest
from manifest_checks import (
    check_encoder_follows_naming_rule,
    check_maps_completely,
    load_manifest,
    manifests_where,
)

from deeplab_zoo.registry import get_pretrained_cfg

# manifest (parity/manifests, without .json.gz) -> registry name
MANIFESTS = {
    "cityscapes__axial_deeplab__axial_swidernet_1_1_1_os16":
        "panoptic_deeplab_axial_swidernet_1_1_1_os16.cityscapes",
    "cityscapes__axial_deeplab__axial_swidernet_1_1_3_os16":
        "panoptic_deeplab_axial_swidernet_1_1_3_os16.cityscapes",
    "cityscapes__axial_deeplab__axial_swidernet_1_1_4.5_os16":
        "panoptic_deeplab_axial_swidernet_1_1_4_5_os16.cityscapes",
}


@pytest.mark.parametrize("manifest", sorted(MANIFESTS))
def test_manifest_maps_completely(parity_dir, manifest):
    listing = load_manifest(parity_dir, manifest)
    model = check_maps_completely(listing, MANIFESTS[manifest])
    check_encoder_follows_naming_rule(listing, model)


def test_every_axial_deeplab_manifest_is_listed(parity_dir):
    expected = manifests_where(parity_dir,
                               lambda listing: listing.get("backbone") == "axial_swidernet")
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
