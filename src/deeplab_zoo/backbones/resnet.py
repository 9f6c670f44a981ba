"""DeepLab2's ResNet family: ResNet-50, ResNet-50-beta, Wide-ResNet-41 and SWideRNets.

DeepLab2 builds them all with ``AxialResNet`` (``model/encoder/axial_resnet.py``)
in classification mode, configured by ``axial_resnet_instances.py``: a stem and
block groups ``stage1``..``stage5`` (``stage1`` only for wide ResNets), each a
sequence of residual blocks ``block1``, ``block2``, ... The block type of each
block is planned by :func:`plan_block_group` and built from :data:`BLOCK_TYPES`,
so attention blocks can be registered later with :func:`register_block_type`.

Differences from torchvision's ResNet that matter for weights: there is no max
pool (the first 3x3 conv of ``stage2`` has stride 2 instead), the stride of a
stage sits in its first block's 3x3 conv, and every block applies the activation
to its input (its output is not activated).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..layers.activations import get_activation
from ..layers.conv import NormLayer, default_norm_layer
from ..layers.drop_path import get_drop_path_keep_prob
from ..layers.residual_blocks import BasicBlock, BottleneckBlock, ResidualBlock
from ..layers.stems import build_stem
from ..registry import register_model
from .base import Backbone, FeatureSpec

_SUPPORTED_OUTPUT_STRIDES = (8, 16, 32)
_BACKBONE_TYPES = ("resnet", "resnet_beta", "wider_resnet")

#: Residual block classes by block type. Every class is called as
#: ``cls(in_channels, filters, *, stride, atrous_rate, second_conv_atrous_rate,
#: use_sac, use_squeeze_and_excite, drop_path_keep_prob, activation, norm_layer,
#: **block_config)``.
BLOCK_TYPES: dict[str, Callable[..., ResidualBlock]] = {
    "bottleneck": BottleneckBlock,
    "basic": BasicBlock,
}


def register_block_type(name: str, block_cls: Callable[..., ResidualBlock]) -> None:
    """Makes ``name`` (e.g. ``'axial'``, ``'global'``) buildable by :class:`BlockGroup`."""
    if name in BLOCK_TYPES:
        raise ValueError(f"block type {name!r} is registered twice")
    BLOCK_TYPES[name] = block_cls


@dataclass(frozen=True)
class BlockSpec:
    """Everything that differs between the blocks of a DeepLab2 block group."""

    block_type: str
    filters: tuple[int, ...]
    stride: int
    atrous_rate: int
    second_conv_atrous_rate: int
    use_sac: bool
    drop_path_keep_prob: float


def plan_block_group(*, filters: int, num_blocks: int, original_resnet_stride: int,
                     original_resnet_input_stride: int, output_stride: int,
                     backbone_type: str, use_global_beyond_stride: int = 0,
                     use_axial_beyond_stride: int = 0, use_sac_beyond_stride: int = 0,
                     drop_path_keep_prob: float = 1.0, drop_path_beyond_stride: int = 16,
                     drop_path_schedule: str = "constant",
                     attention_bottleneck_expansion: int = 2) -> list[BlockSpec]:
    """Per-block settings of a block group, exactly as DeepLab2's ``BlockGroup`` derives them.

    ``original_resnet_input_stride`` is the group's input stride in the undilated
    network and ``original_resnet_stride`` its own stride (1 or 2). The stride is
    applied in the first block only while the input stride is below
    ``output_stride``; beyond it blocks are dilated by
    ``current_original_stride // output_stride``, except that the first block of
    a group keeps its (undilated) rate for the first 3x3 conv and only a basic
    block's second conv gets the new rate.
    """
    for name, value in (("original_resnet_input_stride", original_resnet_input_stride),
                        ("output_stride", output_stride)):
        if value <= 0 or value & (value - 1):
            raise ValueError(f"{name} must be a power of 2, got {value}")
    group_stride = original_resnet_input_stride * original_resnet_stride
    use_sac = group_stride >= use_sac_beyond_stride > 0
    current = original_resnet_input_stride
    specs = []
    for index in range(num_blocks):
        stride = original_resnet_stride if index == 0 and current < output_stride else 1
        rate = current // output_stride if current > output_stride else 1
        if index == 0 and group_stride > output_stride:
            second_rate = group_stride // output_stride
        else:
            second_rate = rate
        if current >= drop_path_beyond_stride:
            keep_prob = get_drop_path_keep_prob(
                drop_path_keep_prob, drop_path_schedule,
                current_stage=int(round(math.log2(current) - 1)), num_stages=4)
        else:
            keep_prob = 1.0

        if current >= use_global_beyond_stride > 0:
            block_type = "global"
            block_filters = (filters * attention_bottleneck_expansion, filters, filters * 4)
        elif current >= use_axial_beyond_stride > 0:
            block_type = "axial"
            block_filters = (filters * attention_bottleneck_expansion, filters, filters * 4)
        elif backbone_type in ("resnet", "resnet_beta"):
            block_type, block_filters = "bottleneck", (filters, filters, filters * 4)
        elif backbone_type == "wider_resnet":
            if group_stride < 32:  # basic blocks except in the last stage
                block_type, block_filters = "basic", (filters * 4, filters * 4)
            else:  # an expanded bottleneck in the last stage
                block_type, block_filters = "bottleneck", (filters, filters * 2, filters * 4)
        else:
            raise ValueError(f"backbone_type must be one of {_BACKBONE_TYPES}, "
                             f"got {backbone_type!r}")
        specs.append(BlockSpec(block_type, block_filters, stride, rate, second_rate, use_sac,
                               keep_prob))
        if index == 0 and original_resnet_stride > 1:
            current *= original_resnet_stride
    return specs


class BlockGroup(nn.Module):
    """A sequence of residual blocks ``block1``, ``block2``, ... (DeepLab2 ``BlockGroup``)."""

    def __init__(self, in_channels: int, specs: list[BlockSpec], *,
                 use_squeeze_and_excite: bool = False, activation: str = "relu",
                 norm_layer: NormLayer = default_norm_layer,
                 block_config: dict[str, Any] | None = None):
        super().__init__()
        self.block_names: list[str] = []
        channels = in_channels
        for index, spec in enumerate(specs):
            if spec.block_type not in BLOCK_TYPES:
                raise ValueError(f"unsupported block type {spec.block_type!r}; supported: "
                                 f"{sorted(BLOCK_TYPES)}")
            extra = (block_config or {}).get(spec.block_type, {})
            block = BLOCK_TYPES[spec.block_type](
                channels, spec.filters, stride=spec.stride, atrous_rate=spec.atrous_rate,
                second_conv_atrous_rate=spec.second_conv_atrous_rate, use_sac=spec.use_sac,
                use_squeeze_and_excite=use_squeeze_and_excite,
                drop_path_keep_prob=spec.drop_path_keep_prob, activation=activation,
                norm_layer=norm_layer, **extra)
            name = f"block{index + 1}"
            self.add_module(name, block)
            self.block_names.append(name)
            channels = spec.filters[-1]
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.block_names:
            x = getattr(self, name)(x)
        return x


class ResNet(Backbone):
    """DeepLab2's ``AxialResNet`` skeleton in classification mode (convolutional blocks).

    ``forward`` returns DeepLab2's endpoints: ``stage1``..``stage5`` (block group
    outputs, NOT activated; ``stage1`` is the stem output unless the network has
    a ``stage1`` block group, as wide ResNets do), ``res1``..``res5`` (their
    activations) and ``backbone_output`` (= ``res5``). Strides: stem 2, then
    4, 8, 16, 32, capped at ``output_stride`` (later stages are dilated).

    Args:
        num_blocks: blocks of the last four groups (before ``backbone_layer_multiplier``).
        backbone_type: ``'resnet'`` (7x7 stem), ``'resnet_beta'`` (inception stem) or
            ``'wider_resnet'`` (3x3 stem, five groups of basic blocks, bottlenecks last).
        width_multiplier / stem_width_multiplier / backbone_layer_multiplier: DeepLab2's
            channel and depth scaling (``int(n * multiplier)`` blocks per group; a wide
            ResNet's ``stage1`` always has 3 blocks and scales with the stem width).
        use_sac_beyond_stride: switchable atrous convs (with global context) in groups
            whose undilated output stride is >= this value; <= 0 disables.
        drop_path_*: stochastic depth for blocks whose undilated stride is
            >= ``drop_path_beyond_stride`` (training only).
        use_axial_beyond_stride / use_global_beyond_stride / attention_bottleneck_expansion:
            select attention block types ('axial' / 'global', registered by
            ``deeplab_zoo.layers.attention_blocks``; see ``backbones/axial_resnet.py``).
        block_config: extra keyword arguments per block type, e.g. ``{'axial': {...}}``.
        in_channels: input channels (7 for Motion-DeepLab).
        group_factory: builds each block group, called as ``group_factory(stage_index,
            in_channels, specs, **group_kwargs)`` (``stage_index`` 0..4 for ``stage1``..
            ``stage5``); default :class:`BlockGroup` (a dual-path MaX-DeepLab encoder
            adds its transformer layers this way).
    """

    def __init__(self, *, num_blocks: tuple[int, ...] = (3, 4, 6, 3),
                 backbone_type: str = "resnet", output_stride: int = 32,
                 width_multiplier: float = 1.0, stem_width_multiplier: float = 1.0,
                 backbone_layer_multiplier: float = 1.0, use_sac_beyond_stride: int = 0,
                 use_squeeze_and_excite: bool = False, drop_path_keep_prob: float = 1.0,
                 drop_path_beyond_stride: int = 16, drop_path_schedule: str = "constant",
                 use_axial_beyond_stride: int = 0, use_global_beyond_stride: int = 0,
                 attention_bottleneck_expansion: int = 2,
                 block_config: dict[str, Any] | None = None, activation: str = "relu",
                 in_channels: int = 3, norm_layer: NormLayer = default_norm_layer,
                 group_factory: Callable[..., nn.Module] | None = None):
        super().__init__()
        if output_stride not in _SUPPORTED_OUTPUT_STRIDES:
            raise ValueError(f"ResNet: output_stride must be one of "
                             f"{_SUPPORTED_OUTPUT_STRIDES}, got {output_stride!r}")
        backbone_type = backbone_type.lower()
        if backbone_type not in _BACKBONE_TYPES:
            raise ValueError(f"ResNet: backbone_type must be one of {_BACKBONE_TYPES}, "
                             f"got {backbone_type!r}")
        if len(num_blocks) != 4:
            raise ValueError(f"ResNet: num_blocks must have 4 entries, got {num_blocks!r}")
        self.output_stride = output_stride
        self.backbone_type = backbone_type

        total_strides = [1, 2, 4, 8, 16]
        strides = [2] * 5
        blocks_per_group = [3] + [int(n * backbone_layer_multiplier) for n in num_blocks]
        filters = [int(round(s * 32 * (stem_width_multiplier
                                       if backbone_type == "wider_resnet" and i == 0
                                       else width_multiplier)))
                   for i, s in enumerate(total_strides)]

        self.stem, channels = build_stem(backbone_type, in_channels,
                                         width_multiplier=stem_width_multiplier,
                                         activation=activation, norm_layer=norm_layer)
        if backbone_type == "wider_resnet":
            # The stem already has stride 2, so the first group keeps the resolution.
            first_group, strides[0], total_strides[0] = 0, 1, 2
        else:
            first_group = 1
        self.activation = get_activation(activation)

        self.stage_names: list[str] = []
        self.feature_specs = [FeatureSpec("res1", channels, 2, "stem")]
        for index in range(first_group, 5):
            specs = plan_block_group(
                filters=filters[index], num_blocks=blocks_per_group[index],
                original_resnet_stride=strides[index],
                original_resnet_input_stride=total_strides[index],
                output_stride=output_stride, backbone_type=backbone_type,
                use_global_beyond_stride=use_global_beyond_stride,
                use_axial_beyond_stride=use_axial_beyond_stride,
                use_sac_beyond_stride=use_sac_beyond_stride,
                drop_path_keep_prob=drop_path_keep_prob,
                drop_path_beyond_stride=drop_path_beyond_stride,
                drop_path_schedule=drop_path_schedule,
                attention_bottleneck_expansion=attention_bottleneck_expansion)
            group_kwargs = dict(use_squeeze_and_excite=use_squeeze_and_excite,
                                activation=activation, norm_layer=norm_layer,
                                block_config=block_config)
            if group_factory is None:
                group = BlockGroup(channels, specs, **group_kwargs)
            else:
                group = group_factory(index, channels, specs, **group_kwargs)
            name = f"stage{index + 1}"
            self.add_module(name, group)
            self.stage_names.append(name)
            channels = group.out_channels
            reduction = min(total_strides[index] * strides[index], output_stride)
            spec = FeatureSpec(f"res{index + 1}", channels, reduction, name)
            if index == 0:
                self.feature_specs[0] = spec
            else:
                self.feature_specs.append(spec)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        endpoints = {"stage1": x, "res1": self.activation(x)}
        for name in self.stage_names:
            x = getattr(self, name)(x)
            endpoints[name] = x
            endpoints["res" + name[len("stage"):]] = self.activation(x)
        endpoints["backbone_output"] = endpoints["res5"]
        return endpoints


def _build(defaults: dict[str, Any], output_stride: int, norm_layer: NormLayer,
           drop_path_keep_prob: float, kwargs: dict[str, Any]) -> ResNet:
    return ResNet(**{**defaults, **kwargs}, output_stride=output_stride, norm_layer=norm_layer,
                  drop_path_keep_prob=drop_path_keep_prob)


_RESNET50 = {"num_blocks": (3, 4, 6, 3), "backbone_type": "resnet"}
_SWIDERNET = {"num_blocks": (3, 6, 3, 3), "backbone_type": "wider_resnet",
              "drop_path_beyond_stride": 4}


@register_model
def resnet50(*, output_stride: int = 32, norm_layer: NormLayer = default_norm_layer,
             drop_path_keep_prob: float = 1.0, **kwargs: Any) -> ResNet:
    """DeepLab2 ResNet-50 (7x7 stem, no max pool); res1..res5: 64, 256, 512, 1024, 2048 ch."""
    return _build(_RESNET50, output_stride, norm_layer, drop_path_keep_prob, kwargs)


@register_model
def resnet50_beta(*, output_stride: int = 32, norm_layer: NormLayer = default_norm_layer,
                  drop_path_keep_prob: float = 1.0, **kwargs: Any) -> ResNet:
    """ResNet-50 with the inception stem; res1..res5: 128, 256, 512, 1024, 2048 channels."""
    defaults = {**_RESNET50, "backbone_type": "resnet_beta"}
    return _build(defaults, output_stride, norm_layer, drop_path_keep_prob, kwargs)


@register_model
def swidernet(*, output_stride: int = 32, norm_layer: NormLayer = default_norm_layer,
              drop_path_keep_prob: float = 1.0, stem_width_multiplier: float = 1.0,
              width_multiplier: float = 1.0, backbone_layer_multiplier: float = 1.0,
              use_sac_beyond_stride: int = -1, **kwargs: Any) -> ResNet:
    """SWideRNet (s, w, l) = (``stem_width_multiplier``, ``width_multiplier``,
    ``backbone_layer_multiplier``), DeepLab2's ``swidernet`` backbone name."""
    defaults = {**_SWIDERNET, "stem_width_multiplier": stem_width_multiplier,
                "width_multiplier": width_multiplier,
                "backbone_layer_multiplier": backbone_layer_multiplier,
                "use_sac_beyond_stride": use_sac_beyond_stride}
    return _build(defaults, output_stride, norm_layer, drop_path_keep_prob, kwargs)


@register_model
def wide_resnet41(*, output_stride: int = 32, norm_layer: NormLayer = default_norm_layer,
                  drop_path_keep_prob: float = 1.0, **kwargs: Any) -> ResNet:
    """Wide-ResNet-41 (= SWideRNet (1, 1, 1) without SAC); res1..res5: 128, 256, 512,
    1024, 2048 channels."""
    return _build(_SWIDERNET, output_stride, norm_layer, drop_path_keep_prob, kwargs)


def _swidernet_sac(layer_multiplier: float) -> dict[str, Any]:
    return {**_SWIDERNET, "backbone_layer_multiplier": layer_multiplier,
            "use_sac_beyond_stride": 32}


@register_model
def swidernet_sac_1_1_1(*, output_stride: int = 32, norm_layer: NormLayer = default_norm_layer,
                        drop_path_keep_prob: float = 1.0, **kwargs: Any) -> ResNet:
    """SWideRNet-SAC (1, 1, 1): Wide-ResNet-41 with switchable atrous convs in stage5."""
    return _build(_swidernet_sac(1.0), output_stride, norm_layer, drop_path_keep_prob, kwargs)


@register_model
def swidernet_sac_1_1_3(*, output_stride: int = 32, norm_layer: NormLayer = default_norm_layer,
                        drop_path_keep_prob: float = 1.0, **kwargs: Any) -> ResNet:
    """SWideRNet-SAC (1, 1, 3): 3 + (9, 18, 9, 9) blocks, SAC in stage5."""
    return _build(_swidernet_sac(3.0), output_stride, norm_layer, drop_path_keep_prob, kwargs)


@register_model
def swidernet_sac_1_1_4_5(*, output_stride: int = 32,
                          norm_layer: NormLayer = default_norm_layer,
                          drop_path_keep_prob: float = 1.0, **kwargs: Any) -> ResNet:
    """SWideRNet-SAC (1, 1, 4.5): 3 + (13, 27, 13, 13) blocks, SAC in stage5."""
    return _build(_swidernet_sac(4.5), output_stride, norm_layer, drop_path_keep_prob, kwargs)
