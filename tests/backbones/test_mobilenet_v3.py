"""MobileNetV3 encoders: checkpoint-key mapping, shapes, strides and seeded forward."""
from __future__ import annotations

import gzip
import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

from deeplab_zoo.backbones.base import FeaturesOnly
from deeplab_zoo.backbones.mobilenet_v3 import MobileNetV3, mobilenet_v3_large, mobilenet_v3_small
from deeplab_zoo.layers.conv import batch_norm
from deeplab_zoo.layers.inverted_bottleneck import InvertedBottleneckBlock
from deeplab_zoo.layers.squeeze_excite import SqueezeAndExcite
from deeplab_zoo.layers.utils import make_divisible
from deeplab_zoo.registry import model_builder

REPO = Path(__file__).resolve().parents[2]
PARITY = Path(os.environ.get("DEEPLAB_ZOO_PARITY_DIR", REPO.parent / "shared" / "parity"))
ATTRIBUTES = "/.ATTRIBUTES/VARIABLE_VALUE"
LEAVES = {"kernel": "weight", "depthwise_kernel": "weight", "gamma": "weight", "beta": "bias",
          "moving_mean": "running_mean", "moving_variance": "running_var", "bias": "bias"}
BUILDERS = {"mobilenet_v3_small": mobilenet_v3_small, "mobilenet_v3_large": mobilenet_v3_large}

# (file under the parity dir, architecture, output stride)
KEY_LISTS = [
    ("cases/panoptic_deeplab_mobilenet_v3_small_os32.keys.json.gz", "mobilenet_v3_small", 32),
    ("cases/panoptic_deeplab_mobilenet_v3_large_os32.keys.json.gz", "mobilenet_v3_large", 32),
    ("cases/deeplabv3_mobilenet_v3_large.keys.json.gz", "mobilenet_v3_large", 32),
    ("manifests/cityscapes__panoptic_deeplab__mobilenet_v3_small_os16.json.gz",
     "mobilenet_v3_small", 16),
    ("manifests/cityscapes__panoptic_deeplab__mobilenet_v3_small_os32.json.gz",
     "mobilenet_v3_small", 32),
    ("manifests/cityscapes__panoptic_deeplab__mobilenet_v3_large_os16.json.gz",
     "mobilenet_v3_large", 16),
    ("manifests/cityscapes__panoptic_deeplab__mobilenet_v3_large_os32.json.gz",
     "mobilenet_v3_large", 32),
    ("manifests/example__example_cityscapes_deeplabv3_mv3l.json.gz", "mobilenet_v3_large", 32),
    ("manifests/example__example_cityscapes_panoptic_deeplab_mv3l.json.gz",
     "mobilenet_v3_large", 32),
]

CHANNELS = {"mobilenet_v3_small": [16, 16, 88, 144, 576],
            "mobilenet_v3_large": [16, 72, 120, 672, 960]}
NOMINAL_STRIDES = [2, 4, 8, 16, 32]


def _parity_file(rel: str) -> Path:
    path = PARITY / rel
    if not path.exists():
        pytest.skip(f"parity fixture {path} not found (set DEEPLAB_ZOO_PARITY_DIR)")
    return path


def _load_variables(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return json.load(f)["variables"]


def _torch_name(key: str, prefix: str = "encoder/") -> str:
    parts = [p.lstrip("_") for p in key[len(prefix):].removesuffix(ATTRIBUTES).split("/")]
    parts[-1] = LEAVES[parts[-1]]
    return ".".join(parts)


def _torch_shape(key: str, shape: list[int]) -> tuple[int, ...]:
    leaf = key.removesuffix(ATTRIBUTES).rsplit("/", 1)[-1]
    if leaf == "depthwise_kernel":  # [kh, kw, C, 1] -> [C, 1, kh, kw]
        return (shape[2], shape[3], shape[0], shape[1])
    if leaf == "kernel":  # HWIO -> OIHW
        return (shape[3], shape[2], shape[0], shape[1])
    return tuple(shape)


def _encoder_entries(variables: list[dict]) -> dict[str, tuple[str, list[int]]]:
    return {_torch_name(v["name"]): (v["name"], v["shape"])
            for v in variables if v["name"].startswith("encoder/")}


def _state_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")}


@pytest.mark.parametrize("rel,arch,output_stride", KEY_LISTS)
def test_checkpoint_keys_map_one_to_one(rel: str, arch: str, output_stride: int) -> None:
    entries = _encoder_entries(_load_variables(_parity_file(rel)))
    ours = _state_shapes(BUILDERS[arch](output_stride=output_stride))
    assert set(entries) == set(ours)
    for name, (key, shape) in entries.items():
        assert _torch_shape(key, shape) == ours[name], name


def _size(n: int, stride: int) -> int:
    return (n - 1) // stride + 1


@pytest.mark.parametrize("arch", sorted(BUILDERS))
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_forward_shapes(arch: str, output_stride: int) -> None:
    model = BUILDERS[arch](output_stride=output_stride).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 65, 65))
    assert list(out) == ["res1", "res2", "res3", "res4", "res5"]
    specs = model.feature_specs
    assert [s.endpoint for s in specs] == list(out)
    assert [s.num_chs for s in specs] == CHANNELS[arch]
    strides = [min(s, output_stride) for s in NOMINAL_STRIDES]
    assert [s.reduction for s in specs] == strides
    for (name, x), ch, stride in zip(out.items(), CHANNELS[arch], strides, strict=True):
        assert tuple(x.shape) == (1, ch, _size(65, stride), _size(65, stride)), name
    # Even sizes follow the same rule (symmetric explicit padding).
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96))
    assert tuple(out["res5"].shape[-2:]) == (_size(64, strides[-1]), _size(96, strides[-1]))


def _depthwise_config(model: MobileNetV3) -> list[tuple[int, int]]:
    out = []
    for block in model.blocks:
        conv = block.conv2_bn_act.depthwise_conv if isinstance(
            block, InvertedBottleneckBlock) else block.conv
        out.append((conv.stride[0], conv.dilation[0]))
    return out


def test_atrous_schedule_follows_deeplab2() -> None:
    # Once the running stride hits output_stride, blocks use stride 1 and the rate
    # accumulated before them (the first would-be downsampling block keeps rate 1).
    small16 = _depthwise_config(mobilenet_v3_small(output_stride=16))
    assert small16[9:] == [(1, 1), (1, 2), (1, 2), (1, 2)]
    small8 = _depthwise_config(mobilenet_v3_small(output_stride=8))
    assert small8[4:] == [(1, 1), (1, 2), (1, 2), (1, 2), (1, 2), (1, 2), (1, 4), (1, 4),
                          (1, 4)]
    large8 = _depthwise_config(mobilenet_v3_large(output_stride=8))
    assert [s for s, _ in large8] == [2, 1, 2, 1, 2] + [1] * 12
    assert [d for _, d in large8[7:]] == [1] + [2] * 5 + [2, 4, 4, 4]
    # Residuals follow the nominal stride, not the dilated one.
    assert not mobilenet_v3_large(output_stride=8).blocks[7].residual


def test_output_stride_only_changes_deeper_endpoints() -> None:
    torch.manual_seed(0)
    models = {os_: mobilenet_v3_small(output_stride=os_).eval() for os_ in (8, 16, 32)}
    for m in models.values():
        m.load_state_dict(models[32].state_dict())
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        out = {os_: m(x) for os_, m in models.items()}
    for name in ("res1", "res2", "res3", "res4"):
        torch.testing.assert_close(out[16][name], out[32][name])
    for name in ("res1", "res2", "res3"):
        torch.testing.assert_close(out[8][name], out[32][name])


def test_features_only_wrapper() -> None:
    backbone = mobilenet_v3_large(output_stride=16).eval()
    features = FeaturesOnly(backbone, out_indices=(1, 2, -1))
    assert features.feature_info.channels() == [72, 120, 960]
    assert features.feature_info.reduction() == [4, 8, 16]
    assert features.feature_info.module_name() == ["blocks.3.conv2_bn_act",
                                                   "blocks.6.conv2_bn_act", "blocks.16"]
    with torch.no_grad():
        maps = features(torch.randn(2, 3, 65, 65))
    assert [tuple(m.shape) for m in maps] == [(2, 72, 17, 17), (2, 120, 9, 9), (2, 960, 5, 5)]


@pytest.mark.parametrize("output_stride", [0, 2, 12, 64, None])
def test_bad_output_stride(output_stride) -> None:
    with pytest.raises(ValueError, match="output_stride"):
        mobilenet_v3_small(output_stride=output_stride)


def test_registry_and_options() -> None:
    assert model_builder("mobilenet_v3_small") is mobilenet_v3_small
    assert model_builder("mobilenet_v3_large") is mobilenet_v3_large
    model = mobilenet_v3_small(norm_layer=batch_norm(eps=1e-5))
    assert model.blocks[0].batch_norm.eps == 1e-5
    half = mobilenet_v3_large(width_multiplier=0.5)
    assert [s.num_chs for s in half.feature_specs] == [8, 48, 72, 336, 480]
    with pytest.raises(TypeError):
        mobilenet_v3_small(not_an_option=1)


def test_make_divisible_and_squeeze_excite() -> None:
    assert [make_divisible(v, 8) for v in (4, 60, 88.0, 87.9999, 72.0, 184.0)] == [
        8, 64, 88, 88, 72, 184]
    assert make_divisible(12, 8, min_value=8) == 16
    with pytest.raises(ValueError):
        make_divisible(10, 8, min_value=12)
    se = SqueezeAndExcite(240, 240, 0.25, divisible_by=8)
    assert se.se_reduce.out_channels == 64
    x = torch.randn(2, 240, 5, 5)
    s = torch.relu(se.se_reduce(x.mean((2, 3), keepdim=True)))
    expected = torch.sigmoid(se.se_expand(s)) * x  # DeepLab2 MobileNetV3: plain sigmoid gate
    torch.testing.assert_close(se(x), expected)


def test_seeded_checkpoint_forward() -> None:
    """Loads the real TF checkpoint's values (= seeded_value) and runs 65x65."""
    keys_path = _parity_file("tf_checkpoint/checkpoint_keys.json")
    spec = importlib.util.spec_from_file_location("seeded_weights", PARITY / "seeded_weights.py")
    seeded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seeded)
    model = mobilenet_v3_small(output_stride=32).eval()
    state = {}
    for name, (key, shape) in _encoder_entries(_load_variables(keys_path)).items():
        value = torch.from_numpy(seeded.seeded_value(key, shape, 0))
        if value.dim() == 4:
            order = (2, 3, 0, 1) if key.removesuffix(ATTRIBUTES).endswith("depthwise_kernel") \
                else (3, 2, 0, 1)
            value = value.permute(order)
        state[name] = value
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    image = torch.rand(1, 3, 65, 65) * 2 - 1
    with torch.no_grad():
        out = model(image)
    sizes = {"res1": 33, "res2": 17, "res3": 9, "res4": 5, "res5": 3}
    for name, x in out.items():
        assert x.shape[-1] == x.shape[-2] == sizes[name]
        assert torch.isfinite(x).all(), name
    traced = torch.jit.trace(model, image, strict=False)
    torch.testing.assert_close(traced(image)["res5"], out["res5"])
