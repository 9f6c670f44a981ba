"""research/deeplab models: registry entries, backbones' strides and endpoints, padding rules."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import deeplab_zoo
from deeplab_zoo.backbones.mobilenet_v2 import TFSameConv2d, tf_same_padding
from deeplab_zoo.backbones.resnet_v1_beta import tf_same_max_pool
from deeplab_zoo.backbones.xception import plan_atrous_units
from deeplab_zoo.registry import get_pretrained_cfg, list_pretrained, pretrained_cfg

MODELS = {  # registry name -> default tag
    "deeplabv3plus_xception41": "cityscapes", "deeplabv3plus_xception65": "voc",
    "deeplabv3plus_xception71": "cityscapes", "deeplabv3plus_xception71_dpc": "cityscapes",
    "deeplabv3_mobilenet_v2": "voc", "deeplabv3_mobilenet_v2_dm05": "voc",
    "deeplabv3plus_mobilenet_v2": "ade20k", "deeplabv3_resnet_v1_50_beta": "voc",
    "deeplabv3plus_resnet_v1_50_beta": "voc", "deeplabv3_resnet_v1_101_beta": "voc",
    "deeplabv3plus_resnet_v1_101_beta": "voc", "auto_deeplab_s": "cityscapes",
    "auto_deeplab_m": "cityscapes", "auto_deeplab_l": "cityscapes",
}
RELEASED = {  # research/deeplab g3doc/model_zoo.md
    "deeplabv3plus_xception65.voc", "deeplabv3plus_xception65.voc_trainval",
    "deeplabv3plus_xception65.cityscapes", "deeplabv3plus_xception65.ade20k",
    "deeplabv3plus_xception71_dpc.cityscapes", "deeplabv3plus_xception71_dpc.cityscapes_trainval",
    "deeplabv3_mobilenet_v2.voc", "deeplabv3_mobilenet_v2.voc_trainval",
    "deeplabv3_mobilenet_v2.cityscapes", "deeplabv3_mobilenet_v2_dm05.voc",
    "deeplabv3_mobilenet_v2_dm05.voc_trainval", "deeplabv3plus_mobilenet_v2.ade20k",
    "xception41.imagenet", "xception65.imagenet", "xception71.imagenet",
    "resnet_v1_50_beta.imagenet", "resnet_v1_101_beta.imagenet",
}


def test_registry():
    names = set(deeplab_zoo.list_models())
    assert set(MODELS) <= names
    assert {"xception41", "xception65", "xception71", "mobilenet_v2", "resnet_v1_50_beta",
            "resnet_v1_101_beta", "hnasnet_s", "hnasnet_m", "hnasnet_l"} <= names
    assert RELEASED <= set(list_pretrained())
    for name, tag in MODELS.items():
        assert pretrained_cfg(name)["tag"] == tag
    cfg = get_pretrained_cfg("deeplabv3plus_xception65.voc")
    assert cfg.url == ("http://download.tensorflow.org/models/"
                       "deeplabv3_pascal_train_aug_2018_01_04.tar.gz")
    assert cfg.metrics["miou"] == 82.20 and cfg.metrics["eval_output_stride"] == 16
    assert cfg.metrics["ms_miou"] == 83.58 and cfg.metrics["ms_eval_flip"] is True
    assert cfg.metrics["ms_eval_scales"] == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    assert "model_zoo.md" in cfg.source and cfg.crop_size == (513, 513)
    info = pretrained_cfg("deeplabv3plus_xception71_dpc.cityscapes")
    assert info["miou" if "miou" in info else "metrics"]["miou"] == 80.31
    assert info["num_classes"] == 19
    assert not get_pretrained_cfg("auto_deeplab_s.cityscapes").has_weights
    assert pretrained_cfg("xception65.imagenet")["dataset"] == "imagenet"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_builds_on_meta_and_shapes(name):
    with torch.device("meta"):
        model = deeplab_zoo.create_model(name)
        out = model(torch.empty(2, 3, 65, 97))["semantic_logits"]
    assert tuple(out.shape) == (2, model.dataset.num_classes, 65, 97)
    assert model.decoder.decoder is None or model.logits_output_stride == 4


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("name", ["xception41", "xception65", "xception71", "mobilenet_v2",
                                  "resnet_v1_50_beta", "resnet_v1_101_beta"])
def test_backbone_strides_and_endpoints(name, output_stride):
    with torch.device("meta"):
        backbone = deeplab_zoo.create_model(name, output_stride=output_stride)
        features = backbone(torch.empty(1, 3, 129, 161))
    for spec in backbone.feature_specs:
        stride = min(spec.reduction, output_stride)
        assert tuple(features[spec.endpoint].shape[1:]) == (
            spec.num_chs, math.ceil(129 / stride), math.ceil(161 / stride)), spec
    assert [s.endpoint for s in backbone.feature_specs] == ["res2", "res3", "res4", "res5"]


@pytest.mark.parametrize("size", ["s", "m", "l"])
def test_auto_deeplab_backbone(size):
    filters = {"s": 20, "m": 32, "l": 48}[size]
    with torch.device("meta"):
        backbone = deeplab_zoo.create_model(f"hnasnet_{size}", features_only=True)
        features = backbone(torch.empty(1, 3, 65, 97))
    assert backbone.feature_info.channels() == [5 * filters, 10 * filters, 20 * filters,
                                                10 * filters]
    assert backbone.feature_info.reduction() == [4, 8, 16, 8]
    assert [tuple(f.shape[-2:]) for f in features] == [(17, 25), (9, 13), (5, 7), (9, 13)]
    # Sizes other than 32k + 1 do not round-trip through the stride-32 cells (upsampling
    # gives 2n - 1), exactly as in research/deeplab: 81 -> 11 at stride 8 but 9 at the end.
    with torch.device("meta"):
        features = backbone(torch.empty(1, 3, 65, 81))
    assert tuple(features[1].shape[-2:]) == (9, 11) and tuple(features[3].shape[-2:]) == (9, 9)
    assert backbone.encoder.max_stride == 32
    with pytest.raises(ValueError, match="output_stride 16"):
        deeplab_zoo.create_model(f"hnasnet_{size}", output_stride=16)


def test_atrous_plans():
    # Xception-65 entry/middle/exit units at OS 16 (target 8 after the stride-2 stem).
    strides = [2, 2, 2] + [1] * 16 + [2, 1]
    plan = plan_atrous_units(strides, 8)
    assert plan[:3] == [(2, 1)] * 3 and plan[3:19] == [(1, 1)] * 16
    assert plan[19:] == [(1, 1), (1, 2)]  # exit_flow/block1 unstrided, block2 at rate 2
    plan = plan_atrous_units(strides, 4)  # OS 8
    assert plan[2] == (1, 1) and plan[3:19] == [(1, 2)] * 16 and plan[19:] == [(1, 2), (1, 4)]
    with pytest.raises(ValueError, match="cannot be reached"):
        plan_atrous_units(strides, 64)


def test_resnet_multi_grid_rates():
    with torch.device("meta"):
        backbone = deeplab_zoo.create_model("resnet_v1_50_beta", output_stride=16,
                                            multi_grid=(1, 2, 4))
    rates = [backbone.block4.get_submodule(f"unit_{i}").conv2.conv.dilation[0] for i in (1, 2, 3)]
    assert rates == [2, 4, 8]
    assert backbone.block3.unit_6.conv2.conv.stride == (1, 1)


def test_tf_same_padding_rules():
    assert tf_same_padding(64, 3, 2) == (0, 1) and tf_same_padding(65, 3, 2) == (1, 1)
    assert tf_same_padding(33, 3, 1, rate=2) == (2, 2)
    conv = TFSameConv2d(2, 2, 3, stride=2, groups=2, bias=False)
    x = torch.randn(1, 2, 6, 7)
    expected = F.conv2d(F.pad(x, (1, 1, 0, 1)), conv.weight, stride=2, groups=2)
    torch.testing.assert_close(conv(x), expected)
    y = torch.randn(1, 1, 6, 5)
    pooled = tf_same_max_pool(y, 3, 2)
    assert pooled.shape[-2:] == (3, 3)
    # even rows: TF pads 0 before / 1 after, so the first window covers rows 0..2
    assert pooled[0, 0, 0, 0] == y[0, 0, 0:3, 0:2].max()


def test_mobilenet_depth_multiplier():
    with torch.device("meta"):
        half = deeplab_zoo.create_model("deeplabv3_mobilenet_v2_dm05")
    assert half.encoder.conv.conv.out_channels == 16
    assert half.encoder.feature_info.channels() == [72, 96, 288, 160]
    assert half.decoder.aspp.aspp0.conv.in_channels == 160


def test_aspp_options():
    with torch.device("meta"):
        plain = deeplab_zoo.create_model("deeplabv3plus_xception65", aspp_with_separable_conv=False,
                                         add_image_level_feature=False,
                                         aspp_with_concat_projection=False)
        out = plain(torch.empty(1, 3, 33, 33))["semantic_logits"]
    aspp = plain.decoder.aspp
    assert aspp.image_pooling is None and aspp.concat_projection is None
    assert aspp.aspp1.conv.kernel_size == (3, 3) and aspp.aspp3.conv.dilation == (18, 18)
    assert plain.decoder.decoder.decoder_conv0.depthwise.depthwise_conv.in_channels == 4 * 256 + 48
    assert tuple(out.shape) == (1, 21, 33, 33)
    assert plain.tf_name_map("aspp2/weights") == "decoder.aspp.aspp2.conv.weight"
