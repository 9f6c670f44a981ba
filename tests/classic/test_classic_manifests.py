"""Every research/deeplab manifest (``classic/manifests``) maps completely onto our models.

The research/deeplab models use the converter's ``tf_name_map`` hook (TF-Slim names);
the mapping is checked on meta-device models, so even Xception-71 costs nothing.
"""
from __future__ import annotations

import gzip
import json

import pytest
import torch

import deeplab_zoo
from deeplab_zoo.weights import plan_tf_mapping
from deeplab_zoo.weights.convert import SKIP

# manifest -> (registry name, builder overrides, crop size)
MANIFESTS = {
    "autodeeplab_hnasnet_cityscapes": ("auto_deeplab_s.cityscapes", {}, (65, 65)),
    "deeplabv3_mobilenet_v2_voc": ("deeplabv3_mobilenet_v2.voc", {}, (65, 65)),
    "deeplabv3_resnet_v1_50_beta_voc": ("deeplabv3_resnet_v1_50_beta.voc", {}, (65, 65)),
    "deeplabv3plus_resnet_v1_101_beta_voc": ("deeplabv3plus_resnet_v1_101_beta.voc", {},
                                             (65, 65)),
    "deeplabv3plus_xception41_cityscapes": ("deeplabv3plus_xception41.cityscapes", {}, (65, 65)),
    "deeplabv3plus_xception65_os8_voc": ("deeplabv3plus_xception65.voc", {"output_stride": 8},
                                         (65, 65)),
    "deeplabv3plus_xception65_voc": ("deeplabv3plus_xception65.voc", {}, (65, 65)),
    "deeplabv3plus_xception65_voc_crop513": ("deeplabv3plus_xception65.voc", {}, (513, 513)),
    "deeplabv3plus_xception71_cityscapes": ("deeplabv3plus_xception71.cityscapes", {}, (65, 65)),
    "deeplabv3plus_xception71_dpc_cityscapes": ("deeplabv3plus_xception71_dpc.cityscapes", {},
                                                (65, 65)),
}


def _listing(parity_dir, manifest: str) -> dict:
    with gzip.open(parity_dir / "classic" / "manifests" / f"{manifest}.json.gz", "rt") as f:
        return json.load(f)


def _float_params(model: torch.nn.Module) -> int:
    return sum(v.numel() for k, v in model.state_dict().items()
               if not k.endswith("num_batches_tracked"))


@pytest.mark.parametrize("manifest", sorted(MANIFESTS))
def test_manifest_maps_completely(parity_dir, manifest):
    listing = _listing(parity_dir, manifest)
    shapes = {v["name"]: v["shape"] for v in listing["variables"]}
    name, overrides, crop = MANIFESTS[manifest]
    assert list(listing["crop_size"]) == list(crop)
    with torch.device("meta"):
        model = deeplab_zoo.create_model(name, crop_size=crop, **overrides)
    mapping, report = plan_tf_mapping(model, shapes)
    assert report == {"missing": [], "unused": [], "mismatched": []}
    assert len(mapping) == listing["num_keys"] == len(set(mapping.values()))
    assert _float_params(model) == listing["total_float_params"]


def test_every_manifest_is_listed(parity_dir):
    found = {p.name.removesuffix(".json.gz")
             for p in (parity_dir / "classic" / "manifests").glob("*.json.gz")}
    assert found == set(MANIFESTS)


# backbone -> (manifest with its variables, TF-Slim scope)
BACKBONES = {
    "xception41": ("deeplabv3plus_xception41_cityscapes", "xception_41"),
    "xception65": ("deeplabv3plus_xception65_voc", "xception_65"),
    "xception71": ("deeplabv3plus_xception71_cityscapes", "xception_71"),
    "resnet_v1_50_beta": ("deeplabv3_resnet_v1_50_beta_voc", "resnet_v1_50"),
    "resnet_v1_101_beta": ("deeplabv3plus_resnet_v1_101_beta_voc", "resnet_v1_101"),
    "mobilenet_v2": ("deeplabv3_mobilenet_v2_voc", "MobilenetV2"),
    "hnasnet_s": ("autodeeplab_hnasnet_cityscapes", "hnasnet"),
}


@pytest.mark.parametrize("features_only", [False, True])
@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_backbone_checkpoint_maps(parity_dir, backbone, features_only):
    """An ImageNet-style backbone checkpoint: the backbone's variables, its classifier,
    ``global_step`` and optimizer slots; the last three are skipped, the rest maps."""
    manifest, scope = BACKBONES[backbone]
    shapes = {v["name"]: v["shape"] for v in _listing(parity_dir, manifest)["variables"]
              if v["name"].startswith(scope + "/")}
    first = sorted(shapes)[0]
    extras = {"global_step": [], f"{first}/Momentum": shapes[first]}
    if backbone == "mobilenet_v2":  # slim's layer_19 (1x1 to 1280) and classifier
        extras.update({"MobilenetV2/Conv_1/weights": [1, 1, 320, 1280],
                       "MobilenetV2/Logits/Conv2d_1c_1x1/weights": [1, 1, 1280, 1001],
                       "MobilenetV2/Logits/Conv2d_1c_1x1/biases": [1001]})
    elif backbone != "hnasnet_s":
        extras.update({f"{scope}/logits/weights": [1, 1, 2048, 1001],
                       f"{scope}/logits/biases": [1001]})
    with torch.device("meta"):
        model = deeplab_zoo.create_model(backbone, features_only=features_only)
    mapping, report = plan_tf_mapping(model, {**shapes, **extras})
    assert report == {"missing": [], "unused": [], "mismatched": []}
    assert set(mapping) == set(shapes)
    if features_only:
        assert all(name.startswith("encoder.") for name in mapping.values())


def test_name_map_examples():
    with torch.device("meta"):
        model = deeplab_zoo.create_model("deeplabv3plus_xception71_dpc.cityscapes")
    examples = {
        "xception_71/entry_flow/conv1_1/weights": "encoder.entry_flow.conv1_1.conv.weight",
        "xception_71/middle_flow/block1/unit_16/xception_module/separable_conv3_depthwise/"
        "depthwise_weights":
            "encoder.middle_flow.block1.unit_16.separable_conv3.depthwise.depthwise_conv.weight",
        "xception_71/exit_flow/block1/unit_1/xception_module/shortcut/BatchNorm/moving_variance":
            "encoder.exit_flow.block1.unit_1.shortcut.batch_norm.running_var",
        "meta_architecture/branch1_pointwise/weights": "decoder.aspp.branch1.pointwise.conv.weight",
        "meta_architecture/concat_projection/BatchNorm/gamma":
            "decoder.aspp.concat_projection.batch_norm.weight",
        "decoder/feature_projection0/BatchNorm/beta":
            "decoder.decoder.feature_projection0.batch_norm.bias",
        "decoder/decoder_conv1_depthwise/depthwise_weights":
            "decoder.decoder.decoder_conv1.depthwise.depthwise_conv.weight",
        "logits/semantic/biases": "decoder.logits.conv.bias",
        "global_step": SKIP,
        "logits/semantic/weights/Momentum": SKIP,
        "not_a_scope/weights": None,
    }
    assert {key: model.tf_name_map(key) for key in examples} == examples
    with torch.device("meta"):
        model = deeplab_zoo.create_model("deeplabv3_mobilenet_v2")
    assert model.tf_name_map("image_pooling/BatchNorm/moving_mean") == \
        "decoder.aspp.image_pooling.conv_bn_act.batch_norm.running_mean"
    assert model.tf_name_map("MobilenetV2/Conv/weights") == "encoder.conv.conv.weight"
    with torch.device("meta"):
        model = deeplab_zoo.create_model("auto_deeplab_s")
    assert model.tf_name_map("hnasnet/cell_4/1x1/weights") == "encoder.cell_4.conv_1x1.conv.weight"
    assert model.tf_name_map("hnasnet/cell_0/comb_iter_2/right/separable_3x3_1/"
                             "pointwise_weights") == \
        "encoder.cell_0.comb_iter_2.right.separable_3x3_1.pointwise.conv.weight"


def test_checkpoint_of_another_variant_is_rejected(parity_dir):
    """Xception-65 variables do not fit Xception-71 (scope and block layout differ)."""
    shapes = {v["name"]: v["shape"]
              for v in _listing(parity_dir, "deeplabv3plus_xception65_voc")["variables"]}
    with torch.device("meta"):
        model = deeplab_zoo.create_model("deeplabv3plus_xception71.cityscapes")
    _, report = plan_tf_mapping(model, shapes)
    assert report["missing"] and report["unused"]
    assert all(key.startswith("xception_65/") for key in report["unused"])
    with torch.device("meta"):
        model = deeplab_zoo.create_model("deeplabv3plus_xception65.cityscapes")
    _, report = plan_tf_mapping(model, shapes)  # 21 VOC classes vs 19
    assert report["unused"] == []
    assert report["missing"] == ["decoder.logits.conv.bias", "decoder.logits.conv.weight"]
    assert [m.split(":")[0] for m in report["mismatched"]] == ["logits/semantic/biases",
                                                               "logits/semantic/weights"]
