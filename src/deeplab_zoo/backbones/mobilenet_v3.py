"""MobileNetV3-Small / -Large encoders (DeepLab2 ``model/encoder/mobilenet.py``).

Blocks live in ``self.blocks`` (a ``ModuleList``, DeepLab2's ``_blocks``): a
``Conv2dSame`` for ``conv_bn`` layers, an :class:`InvertedBottleneckBlock`
otherwise. Five blocks are marked as endpoints ``res1`` ... ``res5``; for an
inverted bottleneck the endpoint is its depthwise output (before squeeze-excite
and projection), for ``conv_bn`` the block output.

Output stride: once the running stride reaches ``output_stride``, later blocks
run at stride 1; each such block convolves at the rate accumulated *before* it,
and then multiplies the rate by its nominal stride (so the first block that would
have downsampled still uses rate 1). Residuals follow the nominal stride.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from ..layers.conv import Conv2dSame, NormLayer, default_norm_layer
from ..layers.inverted_bottleneck import InvertedBottleneckBlock
from ..layers.utils import make_divisible
from ..registry import register_model
from .base import Backbone, FeatureSpec

__all__ = ["MobileNetV3", "mobilenet_v3_large", "mobilenet_v3_small"]

_SUPPORTED_OUTPUT_STRIDES = (4, 8, 16, 32)


@dataclass(frozen=True)
class _Block:
    kind: str  # "conv_bn" or "ibn" (inverted bottleneck)
    kernel_size: int
    stride: int
    filters: int
    activation: str
    se_ratio: float | None = None
    expand_ratio: float | None = None
    is_endpoint: bool = False


def _conv(k: int, s: int, f: int, act: str, endpoint: bool) -> _Block:
    return _Block("conv_bn", k, s, f, act, is_endpoint=endpoint)


def _ibn(k: int, s: int, f: int, act: str, se: float | None, expand: float,
         endpoint: bool = False) -> _Block:
    return _Block("ibn", k, s, f, act, se, expand, endpoint)


_RE, _HS = "relu", "hard_swish"

#: MobileNetV3-Small: (kernel, stride, filters, activation, se_ratio, expand_ratio).
SMALL_BLOCKS: tuple[_Block, ...] = (
    _conv(3, 2, 16, _HS, True),
    _ibn(3, 2, 16, _RE, 0.25, 1, True),
    _ibn(3, 2, 24, _RE, None, 72.0 / 16),
    _ibn(3, 1, 24, _RE, None, 88.0 / 24, True),
    _ibn(5, 2, 40, _HS, 0.25, 4.0),
    _ibn(5, 1, 40, _HS, 0.25, 6.0),
    _ibn(5, 1, 40, _HS, 0.25, 6.0),
    _ibn(5, 1, 48, _HS, 0.25, 3.0),
    _ibn(5, 1, 48, _HS, 0.25, 3.0, True),
    _ibn(5, 2, 96, _HS, 0.25, 6.0),
    _ibn(5, 1, 96, _HS, 0.25, 6.0),
    _ibn(5, 1, 96, _HS, 0.25, 6.0),
    _conv(1, 1, 576, _HS, True),
)

#: MobileNetV3-Large.
LARGE_BLOCKS: tuple[_Block, ...] = (
    _conv(3, 2, 16, _HS, False),
    _ibn(3, 1, 16, _RE, None, 1.0, True),
    _ibn(3, 2, 24, _RE, None, 4.0),
    _ibn(3, 1, 24, _RE, None, 3.0, True),
    _ibn(5, 2, 40, _RE, 0.25, 3.0),
    _ibn(5, 1, 40, _RE, 0.25, 3.0),
    _ibn(5, 1, 40, _RE, 0.25, 3.0, True),
    _ibn(3, 2, 80, _HS, None, 6.0),
    _ibn(3, 1, 80, _HS, None, 2.5),
    _ibn(3, 1, 80, _HS, None, 2.3),
    _ibn(3, 1, 80, _HS, None, 2.3),
    _ibn(3, 1, 112, _HS, 0.25, 6.0),
    _ibn(3, 1, 112, _HS, 0.25, 6.0, True),
    _ibn(5, 2, 160, _HS, 0.25, 6.0),
    _ibn(5, 1, 160, _HS, 0.25, 6.0),
    _ibn(5, 1, 160, _HS, 0.25, 6.0),
    _conv(1, 1, 960, _HS, True),
)

_DIVISIBLE_BY = 8


def _scale_blocks(blocks: tuple[_Block, ...], width_multiplier: float,
                  reduce_last_block_filters: bool) -> list[_Block]:
    """Applies the width multiplier (and optional last-stage halving) as DeepLab2 does."""
    out = []
    level = 1
    previous_was_endpoint = False
    for block in blocks:
        filters = make_divisible(block.filters * width_multiplier, _DIVISIBLE_BY, min_value=8)
        expand_ratio = block.expand_ratio
        if reduce_last_block_filters and level >= 5:
            filters //= 2
            if previous_was_endpoint and expand_ratio is not None:
                expand_ratio = expand_ratio // 2
        out.append(replace(block, filters=filters, expand_ratio=expand_ratio))
        if block.is_endpoint:
            level += 1
        previous_was_endpoint = block.is_endpoint
    return out


class MobileNetV3(Backbone):
    """DeepLab2's MobileNetV3 encoder; ``forward`` returns ``{'res1': ..., 'res5': ...}``."""

    def __init__(self, blocks: tuple[_Block, ...], *, output_stride: int = 32,
                 width_multiplier: float = 1.0, reduce_last_block_filters: bool = False,
                 norm_layer: NormLayer = default_norm_layer, in_channels: int = 3):
        super().__init__()
        if output_stride not in _SUPPORTED_OUTPUT_STRIDES:
            raise ValueError(f"MobileNetV3: output_stride must be one of "
                             f"{_SUPPORTED_OUTPUT_STRIDES}, got {output_stride!r}")
        if width_multiplier <= 0:
            raise ValueError(f"MobileNetV3: width_multiplier must be > 0, got {width_multiplier}")
        self.output_stride = output_stride
        specs = _scale_blocks(blocks, width_multiplier, reduce_last_block_filters)

        self.blocks = nn.ModuleList()
        self.endpoint_names: list[str | None] = []
        self.feature_specs: list[FeatureSpec] = []
        current_stride, rate, level, channels = 1, 1, 1, in_channels
        for index, spec in enumerate(specs):
            if level > 5:  # nothing after res5 is needed
                break
            if current_stride == output_stride:
                layer_stride, layer_rate = 1, rate
                rate *= spec.stride
            else:
                layer_stride, layer_rate = spec.stride, 1
                current_stride *= spec.stride

            if spec.kind == "conv_bn":
                block: nn.Module = Conv2dSame(
                    channels, spec.filters, spec.kernel_size, stride=layer_stride,
                    atrous_rate=layer_rate, use_bias=False, use_bn=True,
                    activation=spec.activation, norm_layer=norm_layer)
                endpoint_module, endpoint_channels = f"blocks.{index}", spec.filters
            else:
                block = InvertedBottleneckBlock(
                    channels, spec.filters, spec.expand_ratio, layer_stride,
                    kernel_size=spec.kernel_size, se_ratio=spec.se_ratio,
                    activation=spec.activation, expand_se_in_filters=True,
                    atrous_rate=layer_rate if spec.kernel_size != 1 else 1,
                    divisible_by=_DIVISIBLE_BY, use_residual=spec.stride == 1,
                    norm_layer=norm_layer)
                endpoint_module = f"blocks.{index}.conv2_bn_act"
                endpoint_channels = block.expand_filters
            self.blocks.append(block)
            channels = spec.filters

            if spec.is_endpoint:
                name = f"res{level}"
                self.endpoint_names.append(name)
                self.feature_specs.append(FeatureSpec(name, endpoint_channels, current_stride,
                                                      endpoint_module))
                level += 1
            else:
                self.endpoint_names.append(None)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        endpoints: dict[str, torch.Tensor] = {}
        for block, name in zip(self.blocks, self.endpoint_names, strict=True):
            if isinstance(block, InvertedBottleneckBlock):
                x, endpoint = block(x)
            else:
                x = block(x)
                endpoint = x
            if name is not None:
                endpoints[name] = endpoint
        return endpoints


@register_model
def mobilenet_v3_small(*, output_stride: int = 32, width_multiplier: float = 1.0,
                       norm_layer: NormLayer = default_norm_layer, **kwargs) -> MobileNetV3:
    """MobileNetV3-Small encoder (endpoints res1..res5: 16, 16, 88, 144, 576 channels)."""
    return MobileNetV3(SMALL_BLOCKS, output_stride=output_stride,
                       width_multiplier=width_multiplier, norm_layer=norm_layer, **kwargs)


@register_model
def mobilenet_v3_large(*, output_stride: int = 32, width_multiplier: float = 1.0,
                       norm_layer: NormLayer = default_norm_layer, **kwargs) -> MobileNetV3:
    """MobileNetV3-Large encoder (endpoints res1..res5: 16, 72, 120, 672, 960 channels)."""
    return MobileNetV3(LARGE_BLOCKS, output_stride=output_stride,
                       width_multiplier=width_multiplier, norm_layer=norm_layer, **kwargs)
