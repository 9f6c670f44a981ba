"""DeepLab2 ResNet family: checkpoint key mapping, seeded forward, stride/atrous logic."""
from __future__ import annotations

import gzip
import importlib.util
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from deeplab_zoo.backbones import resnet
from deeplab_zoo.backbones.resnet import ResNet, plan_block_group
from deeplab_zoo.layers.drop_path import DropPath, get_drop_path_keep_prob

PARITY_DIR = Path(os.environ.get("DEEPLAB_ZOO_PARITY_DIR",
                                 Path(__file__).resolve().parents[3] / "shared" / "parity"))
_ATTRIBUTES = "/.ATTRIBUTES/VARIABLE_VALUE"
_LEAF = {"kernel": "weight", "depthwise_kernel": "weight", "gamma": "weight", "beta": "bias",
         "moving_mean": "running_mean", "moving_variance": "running_var", "bias": "bias"}
_BACKBONES = {"resnet50", "resnet50_beta", "wide_resnet41", "swidernet"}

# case -> (builder, kwargs) for the full-model cases whose encoder is ours. The output
# stride matters for the keys: SAC (and its switch weights) exists only at stride 1.
_CASES = {
    "panoptic_deeplab_resnet50_os32": ("resnet50", {}),
    "panoptic_deeplab_resnet50_os32_coco": ("resnet50", {}),
    "deeplabv3_resnet50": ("resnet50", {}),
    "deeplabv3plus_resnet50": ("resnet50", {}),
    "motion_deeplab_resnet50_os32_kitti_step": ("resnet50", {"in_channels": 7}),
    "panoptic_deeplab_resnet50_beta_os32": ("resnet50_beta", {}),
    "vip_deeplab_resnet50_beta_os32_cityscapes_dvps": ("resnet50_beta", {}),
    "panoptic_deeplab_wide_resnet41_os16": ("wide_resnet41", {"output_stride": 16}),
    "panoptic_deeplab_swidernet_sac_1_1_1_os16": ("swidernet_sac_1_1_1", {"output_stride": 16}),
}


def _require_parity() -> None:
    if not PARITY_DIR.is_dir():
        pytest.skip(f"parity fixtures not found at {PARITY_DIR} (set DEEPLAB_ZOO_PARITY_DIR)")


def _tf_to_torch_name(key: str) -> str:
    parts = [part.lstrip("_") for part in key.removesuffix(_ATTRIBUTES).split("/")]
    parts[-1] = _LEAF.get(parts[-1], parts[-1])
    return ".".join(parts)


def _tf_to_torch_shape(shape: list[int]) -> tuple[int, ...]:
    return tuple(shape[::-1][:2] + shape[:2]) if len(shape) == 4 else tuple(shape)


def _encoder_variables(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as f:
        variables = json.load(f)["variables"]
    return [v for v in variables if v["name"].startswith("encoder/")]


def _manifest_fixtures() -> list[tuple[str, str, dict]]:
    """(manifest file, builder, kwargs) for every manifest with one of our backbones."""
    if not (PARITY_DIR / "manifests").is_dir():
        return []
    out = []
    for path in sorted((PARITY_DIR / "manifests").glob("*.json.gz")):
        with gzip.open(path, "rt") as f:
            meta = json.load(f)
        if meta["backbone"] not in _BACKBONES:
            continue
        builder = meta["backbone"]
        if builder == "swidernet":
            match = re.search(r"swidernet_sac_(\d+)_(\d+)_([\d.]+)_os", meta["config_file"])
            builder = "swidernet_sac_{}_{}_{}".format(*match.groups()).replace(".", "_")
        kwargs = {"in_channels": 7} if meta["model_class"] == "MotionDeepLab" else {}
        match = re.search(r"_os(\d+)", meta["config_file"])
        if match:
            kwargs["output_stride"] = int(match.group(1))
        out.append((path.name, builder, kwargs))
    return out


_MANIFESTS = _manifest_fixtures()


def _check_mapping(variables: list[dict], builder: str, kwargs: dict) -> None:
    expected = {_tf_to_torch_name(v["name"]).removeprefix("encoder."):
                _tf_to_torch_shape(v["shape"]) for v in variables}
    with torch.device("meta"):
        model = getattr(resnet, builder)(**kwargs)
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()
              if not k.endswith("num_batches_tracked")}
    assert sorted(set(expected) - set(actual)) == [], "checkpoint keys missing in the model"
    assert sorted(set(actual) - set(expected)) == [], "model keys missing in the checkpoint"
    wrong = {k: (actual[k], expected[k]) for k in expected if actual[k] != expected[k]}
    assert wrong == {}


@pytest.mark.parametrize("case", sorted(_CASES))
def test_key_mapping_cases(case: str) -> None:
    _require_parity()
    builder, kwargs = _CASES[case]
    _check_mapping(_encoder_variables(PARITY_DIR / "cases" / f"{case}.keys.json.gz"),
                   builder, kwargs)


def test_manifests_found() -> None:
    _require_parity()
    builders = {builder for _, builder, _ in _MANIFESTS}
    assert {"resnet50", "resnet50_beta", "wide_resnet41", "swidernet_sac_1_1_1",
            "swidernet_sac_1_1_3", "swidernet_sac_1_1_4_5"} <= builders


@pytest.mark.parametrize("manifest,builder,kwargs", _MANIFESTS,
                         ids=[m for m, _, _ in _MANIFESTS])
def test_key_mapping_manifests(manifest: str, builder: str, kwargs: dict) -> None:
    _require_parity()
    _check_mapping(_encoder_variables(PARITY_DIR / "manifests" / manifest), builder, kwargs)


def _seeded_value_fn():
    spec = importlib.util.spec_from_file_location("seeded_weights",
                                                  PARITY_DIR / "seeded_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.seeded_value


def _seeded_model(case: str, output_stride: int) -> ResNet:
    seeded_value = _seeded_value_fn()
    builder, kwargs = _CASES[case]
    with torch.device("meta"):
        model = getattr(resnet, builder)(**{**kwargs, "output_stride": output_stride})
    model.to_empty(device="cpu")
    state = {}
    for v in _encoder_variables(PARITY_DIR / "cases" / f"{case}.keys.json.gz"):
        value = seeded_value(v["name"], v["shape"])
        if value.ndim == 4:
            value = value.transpose(3, 2, 0, 1)
        state[_tf_to_torch_name(v["name"]).removeprefix("encoder.")] = torch.from_numpy(
            np.ascontiguousarray(value))
    result = model.load_state_dict(state, strict=False)
    assert result.unexpected_keys == []
    assert all(k.endswith("num_batches_tracked") for k in result.missing_keys)
    for name, buffer in model.named_buffers():
        if name.endswith("num_batches_tracked"):
            buffer.zero_()
    return model.eval()


@pytest.mark.parametrize("case,output_stride", [
    ("panoptic_deeplab_resnet50_os32", 32),
    ("panoptic_deeplab_resnet50_beta_os32", 32),
    # Wide-ResNet-41 is this net without SAC; left out to keep the suite fast.
    ("panoptic_deeplab_swidernet_sac_1_1_1_os16", 16),
])
def test_seeded_forward(case: str, output_stride: int) -> None:
    _require_parity()
    model = _seeded_model(case, output_stride)
    image = np.load(PARITY_DIR / "cases" / f"{case}.npz")["input"]
    x = torch.from_numpy(image).float().permute(2, 0, 1)[None] / 127.5 - 1.0
    with torch.no_grad():
        endpoints = model(x)
    size = lambda stride: (65 - 1) // stride + 1  # noqa: E731
    for spec in model.feature_specs:
        level = spec.endpoint[3:]
        for name in (f"res{level}", f"stage{level}"):
            assert endpoints[name].shape == (1, spec.num_chs, size(spec.reduction),
                                             size(spec.reduction)), name
            assert torch.isfinite(endpoints[name]).all(), name
    assert endpoints["backbone_output"] is endpoints["res5"]
    assert (endpoints["res5"] >= 0).all() and endpoints["stage5"].min() < 0


_CHANNELS = {
    "resnet50": [64, 256, 512, 1024, 2048],
    "resnet50_beta": [128, 256, 512, 1024, 2048],
    "wide_resnet41": [128, 256, 512, 1024, 2048],
    "swidernet_sac_1_1_3": [128, 256, 512, 1024, 2048],
}


@pytest.mark.parametrize("builder", sorted(_CHANNELS))
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_feature_info(builder: str, output_stride: int) -> None:
    with torch.device("meta"):
        model = getattr(resnet, builder)(output_stride=output_stride)
    info = model.feature_info
    assert info.endpoints() == ["res1", "res2", "res3", "res4", "res5"]
    assert info.channels() == _CHANNELS[builder]
    assert info.reduction() == [min(s, output_stride) for s in (2, 4, 8, 16, 32)]


@pytest.mark.parametrize("builder", ["resnet50", "resnet50_beta", "wide_resnet41"])
def test_dilation_matches_striding(builder: str) -> None:
    """DeepLab2's rates make a dilated net equal the os32 net at every stride-th pixel.

    (Exact for inputs of size k * 32 + 1 and no SAC / global pooling.)
    """
    torch.manual_seed(0)
    kwargs = {"width_multiplier": 0.125, "stem_width_multiplier": 0.25}
    reference = getattr(resnet, builder)(output_stride=32, **kwargs).eval()
    for module in reference.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.normal_(module.bias, 0.0, 0.1)
            torch.nn.init.normal_(module.running_mean, 0.0, 0.1)
            torch.nn.init.uniform_(module.running_var, 0.5, 1.5)
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        expected = reference(x)
        for output_stride in (8, 16):
            model = getattr(resnet, builder)(output_stride=output_stride, **kwargs).eval()
            model.load_state_dict(reference.state_dict())
            endpoints = model(x)
            for level in range(1, 6):
                step = max(1, 2 ** level // output_stride)
                got = endpoints[f"stage{level}"][:, :, ::step, ::step]
                torch.testing.assert_close(got, expected[f"stage{level}"], rtol=1e-4, atol=1e-4)


def test_plan_rates_and_strides() -> None:
    # ResNet-50 stage5 at os8 / os16 / os32.
    for output_stride, strides, rates in ((8, [1, 1, 1], [2, 4, 4]), (16, [1, 1, 1], [1, 2, 2]),
                                          (32, [2, 1, 1], [1, 1, 1])):
        plan = plan_block_group(filters=512, num_blocks=3, original_resnet_stride=2,
                                original_resnet_input_stride=16, output_stride=output_stride,
                                backbone_type="resnet")
        assert [b.stride for b in plan] == strides
        assert [b.atrous_rate for b in plan] == rates
        assert {b.block_type for b in plan} == {"bottleneck"}
    # Wide ResNet stage4 at os8: the first basic block's second conv is already dilated.
    plan = plan_block_group(filters=256, num_blocks=3, original_resnet_stride=2,
                            original_resnet_input_stride=8, output_stride=8,
                            backbone_type="wider_resnet", use_sac_beyond_stride=16)
    assert [(b.stride, b.atrous_rate, b.second_conv_atrous_rate) for b in plan] == [
        (1, 1, 2), (1, 2, 2), (1, 2, 2)]
    assert all(b.use_sac and b.block_type == "basic" and b.filters == (1024, 1024)
               for b in plan)
    # Linear drop path schedule (SWideRNet: beyond stride 4).
    plan = plan_block_group(filters=512, num_blocks=2, original_resnet_stride=2,
                            original_resnet_input_stride=16, output_stride=16,
                            backbone_type="wider_resnet", drop_path_keep_prob=0.8,
                            drop_path_beyond_stride=4, drop_path_schedule="linear")
    assert [b.drop_path_keep_prob for b in plan] == pytest.approx([0.85, 0.8])
    assert plan[0].filters == (512, 1024, 2048)


def test_sac_placement() -> None:
    with torch.device("meta"):
        model = resnet.swidernet_sac_1_1_1(output_stride=16)
    sac = {name for name, _ in model.named_modules() if name.endswith("pre_global_context")}
    assert sac == {f"stage5.block{i}.conv2_bn_act.pre_global_context" for i in (1, 2, 3)}
    with torch.device("meta"):
        model = resnet.swidernet_sac_1_1_1(output_stride=32)
    # At stride 2 DeepLab2 keeps the global context but uses a plain convolution.
    assert isinstance(model.stage5.block1.conv2_bn_act.conv, torch.nn.Conv2d)
    assert model.stage5.block1.conv2_bn_act.pre_global_context is not None


def test_errors() -> None:
    with pytest.raises(ValueError, match="output_stride"):
        resnet.resnet50(output_stride=4)
    # 'axial' / 'global' are registered by deeplab_zoo.layers.attention_blocks now.
    with pytest.raises(ValueError, match="unsupported block type 'nonexistent'"):
        resnet.BlockGroup(64, [resnet.BlockSpec("nonexistent", (64, 64, 256), 1, 1, 1, False,
                                                1.0)])
    with pytest.raises(ValueError, match="backbone_type"):
        ResNet(backbone_type="vgg")
    with pytest.raises(ValueError, match="schedule"):
        get_drop_path_keep_prob(0.8, "cosine", 1, 4)


def test_drop_path() -> None:
    layer = DropPath(0.5)
    x = torch.ones(64, 2, 3, 3)
    assert layer.eval()(x) is x
    out = layer.train()(x)
    kept = out[:, 0, 0, 0]
    assert set(kept.tolist()) <= {0.0, 2.0}
    assert (out == kept.view(-1, 1, 1, 1)).all()


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_trace() -> None:
    model = resnet.swidernet_sac_1_1_1(width_multiplier=0.0625, stem_width_multiplier=0.125,
                                       output_stride=16).eval()
    x = torch.randn(1, 3, 33, 33)
    traced = torch.jit.trace(model, x, strict=False)
    torch.testing.assert_close(traced(x)["res5"], model(x)["res5"])
