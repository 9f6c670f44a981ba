"""ConvNeXt (kMaX pixel encoder): checkpoint key mapping, endpoints, padding, drop path."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import deeplab_zoo
from deeplab_zoo.backbones.convnext import ConvNeXt, ConvNeXtBlock
from deeplab_zoo.parity import seeded_variables
from deeplab_zoo.weights import load_tf_variables, plan_tf_mapping

_SIZES = ("tiny", "small", "base", "large")
_DIMS = {"tiny": (96, 192, 384, 768), "small": (96, 192, 384, 768),
         "base": (128, 256, 512, 1024), "large": (192, 384, 768, 1536)}


def _encoder_shapes(path) -> dict[str, list[int]]:
    with gzip.open(path, "rt") as f:
        listing = json.load(f)
    return {v["name"]: v["shape"] for v in listing["variables"]
            if v["name"].startswith("encoder/")}


def _convnext_manifests(parity_dir) -> list[tuple[str, str]]:
    out = []
    for path in sorted((parity_dir / "manifests").glob("*.json.gz")):
        with gzip.open(path, "rt") as f:
            backbone = json.load(f)["backbone"]
        if "convnext" in backbone:
            out.append((path.name, backbone.removeprefix("kmax_")))
    return out


def test_every_convnext_manifest_maps_completely(parity_dir):
    manifests = _convnext_manifests(parity_dir)
    assert {name for _, name in manifests} == {f"convnext_{s}" for s in _SIZES}
    for manifest, name in manifests:
        with torch.device("meta"):
            model = deeplab_zoo.create_model(name)
        shapes = _encoder_shapes(parity_dir / "manifests" / manifest)
        mapping, report = plan_tf_mapping(model, shapes)
        assert report == {"missing": [], "unused": [], "mismatched": []}, manifest
        assert len(mapping) == len(shapes)
        # A few names, to pin the Keras Sequential rule (layer_with_weights-N -> N).
        suffix = "/.ATTRIBUTES/VARIABLE_VALUE"
        assert mapping[f"encoder/downsample_layers/0/layer_with_weights-0/kernel{suffix}"] == \
            "downsample_layers.0.0.weight"
        assert mapping[f"encoder/downsample_layers/2/layer_with_weights-0/gamma{suffix}"] == \
            "downsample_layers.2.0.weight"
        assert mapping[f"encoder/stages/1/layer_with_weights-2/layer_scale{suffix}"] == \
            "stages.1.2.layer_scale"


def test_seeded_weights_load_strictly(parity_dir):
    keys = parity_dir / "cases" / "kmax_deeplab_convnext_tiny_cityscapes.keys.json.gz"
    variables = {k: v for k, v in seeded_variables(parity_dir, keys).items()
                 if k.startswith("encoder/")}
    model = deeplab_zoo.create_model("convnext_tiny")
    assert load_tf_variables(model, variables) == {"missing": [], "unused": [],
                                                   "mismatched": []}
    key = "encoder/stages/0/layer_with_weights-1/depthwise_conv/kernel/.ATTRIBUTES/VARIABLE_VALUE"
    np.testing.assert_array_equal(model.stages[0][1].depthwise_conv.weight.detach().numpy(),
                                  variables[key].transpose(3, 2, 0, 1))


@pytest.mark.parametrize("size", _SIZES)
def test_feature_info(size):
    with torch.device("meta"):
        model = deeplab_zoo.create_model(f"convnext_{size}")
    assert model.feature_info.channels() == list(_DIMS[size])
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    assert model.feature_info.endpoints() == ["res2", "res3", "res4", "res5"]
    assert model.stem_reduction == 4


def test_endpoints():
    model = ConvNeXt(depths=(1, 1, 1, 1)).eval()
    with torch.no_grad():
        endpoints = model(torch.randn(1, 3, 65, 97))
    dims = _DIMS["tiny"]
    # (n - 1) // stride + 1 at every level, thanks to kMaX's zero padding.
    expected = {"stage1": (dims[0], 17, 25), "stage2": (dims[0], 17, 25),
                "stage3": (dims[1], 9, 13), "stage4": (dims[2], 5, 7), "stage5": (dims[3], 3, 4)}
    for name, (c, h, w) in expected.items():
        assert tuple(endpoints[name].shape) == (1, c, h, w)
        torch.testing.assert_close(endpoints["res" + name[5:]], F.gelu(endpoints[name]))
    assert endpoints["backbone_output"] is endpoints["res5"]


def test_features_only():
    model = deeplab_zoo.create_model("convnext_tiny", features_only=True, out_indices=(1, 3))
    features = model(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape) for f in features] == [(1, 192, 8, 8), (1, 768, 2, 2)]
    assert model.feature_info.channels() == [192, 768]


def test_padding_comes_before_the_layer_norm():
    torch.manual_seed(0)
    model = ConvNeXt(depths=(1, 1, 1, 1), dims=(8, 8, 8, 8)).eval()
    layer = model.downsample_layers[1]
    with torch.no_grad():
        layer[0].bias.normal_()  # beta != 0: padded pixels become beta before the conv
        x = torch.randn(1, 8, 5, 5)
        padded = F.pad(x, (0, 1, 0, 1))
        normed = F.layer_norm(padded.permute(0, 2, 3, 1), (8,), layer[0].weight, layer[0].bias,
                              1e-6).permute(0, 3, 1, 2)
        expected = F.conv2d(normed, layer[1].weight, layer[1].bias, stride=2)
        torch.testing.assert_close(layer(x), expected)
        stem = model.downsample_layers[0]
        assert stem.padding == (1, 2) and layer.padding == (0, 1)


def test_block_matches_a_channels_last_reference():
    torch.manual_seed(0)
    block = ConvNeXtBlock(16, layer_scale_init_value=0.5).eval()
    x = torch.randn(2, 16, 9, 9)
    with torch.no_grad():
        for p in block.parameters():
            p.normal_()
        y = F.conv2d(x, block.depthwise_conv.weight, block.depthwise_conv.bias, padding=3,
                     groups=16).permute(0, 2, 3, 1)
        y = F.layer_norm(y, (16,), block.norm.weight, block.norm.bias, 1e-6)
        y = F.gelu(y @ block.pointwise_conv1.weight.T + block.pointwise_conv1.bias)
        y = (y @ block.pointwise_conv2.weight.T + block.pointwise_conv2.bias)
        y = block.layer_scale * y
        torch.testing.assert_close(block(x), x + y.permute(0, 3, 1, 2))


def test_drop_path_schedule_and_modes():
    model = ConvNeXt(depths=(1, 2, 1, 1), dims=(8, 8, 8, 8), drop_path_keep_prob=0.8)
    keeps = [blk.drop_path.keep_prob for stage in model.stages for blk in stage]
    np.testing.assert_allclose(keeps, np.linspace(1.0, 0.8, 5), rtol=1e-6)
    model.eval()
    x = torch.randn(2, 3, 33, 33)
    with torch.no_grad():
        assert torch.equal(model(x)["stage5"], model(x)["stage5"])


def test_without_downstream_padding_and_bad_arguments():
    model = ConvNeXt(depths=(1, 1, 1, 1), zero_padding_for_downstream=False)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64))["stage5"].shape == (1, 768, 2, 2)
    with pytest.raises(ValueError, match="output_stride"):
        deeplab_zoo.create_model("convnext_tiny", output_stride=16)
    with pytest.raises(ValueError, match="drop_path_keep_prob"):
        ConvNeXt(drop_path_keep_prob=0.0)
