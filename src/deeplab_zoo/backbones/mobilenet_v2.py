"""MobileNetV2 as research/deeplab builds it (``research/slim/nets/mobilenet``).

``V2_DEF``: a 3x3 stride-2 ``Conv`` (32) and 17 ``expanded_conv`` blocks (expansion 1x1
-> depthwise 3x3 -> linear projection 1x1; BN everywhere, ReLU6 after expansion and
depthwise; residual when stride 1 and depths match; no expansion in the first block).
research/deeplab stops at ``layer_18`` (320 channels): the final 1280-channel 1x1 conv
is not built. As in TF-Slim:

- padding is TF 'SAME' everywhere (``use_explicit_padding=False``): strided convs on
  even sizes pad 0 before / 1 after, unlike the explicit padding of the other backbones;
- the output stride is reached as ``mobilenet_base`` does: the first layer that would
  exceed it runs at stride 1 and every later depthwise conv is dilated;
- ``depth_multiplier`` scales every ``num_outputs`` with ``_make_divisible`` (divisible
  by 8 and at least 8 at multiplier 1, else divisible by 1), expansions stay
  divisible by 8;
- batch norm epsilon 1e-3.

Endpoints (research/deeplab's decoder end points): ``res2`` = ``layer_4/depthwise_output``
(stride 4), ``res3`` = ``layer_7/depthwise_output``, ``res4`` = ``layer_14/depthwise_output``,
``res5`` = ``layer_18`` (the backbone output).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.conv import Conv2dSame, DepthwiseConv2dSame, NormLayer, batch_norm
from ..layers.utils import make_divisible
from ..registry import register_model
from ..weights.convert import SKIP
from ..weights.tf_slim import is_training_variable, map_slim_key
from .base import Backbone, FeatureSpec

#: TF-Slim's default batch norm (epsilon 1e-3; MobileNet decay 0.997).
MOBILENET_V2_NORM: NormLayer = batch_norm(eps=1e-3, momentum=0.997)

# (num_outputs, stride, expansion factor) of layer_2 .. layer_18 (``V2_DEF['spec'][1:18]``).
_V2_BLOCKS = ((16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6), (32, 1, 6), (32, 1, 6),
              (64, 2, 6), (64, 1, 6), (64, 1, 6), (64, 1, 6), (96, 1, 6), (96, 1, 6),
              (96, 1, 6), (160, 2, 6), (160, 1, 6), (160, 1, 6), (320, 1, 6))
# layer index (1-based, ``layer_N``) whose depthwise output is an end point.
_ENDPOINT_LAYERS = {4: "res2", 7: "res3", 14: "res4"}


def tf_same_padding(size: int, kernel_size: int, stride: int, rate: int = 1) -> tuple[int, int]:
    """(begin, end) padding of TF 'SAME' for one axis of length ``size``."""
    effective = kernel_size + (kernel_size - 1) * (rate - 1)
    total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


class TFSameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TF 'SAME' padding, which depends on the input size when strided."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = tf_same_padding(x.shape[-2], self.kernel_size[0], self.stride[0],
                                      self.dilation[0])
        left, right = tf_same_padding(x.shape[-1], self.kernel_size[1], self.stride[1],
                                      self.dilation[1])
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _tf_same(conv: nn.Conv2d) -> TFSameConv2d:
    """A TF-'SAME' copy of a (padded) strided convolution of ``layers.conv``."""
    return TFSameConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                        dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None)


class ExpandedConv(nn.Module):
    """TF-Slim ``expanded_conv``: ``expand`` (optional) -> ``depthwise`` -> ``project``.

    Returns ``(output, depthwise output)``.
    """

    def __init__(self, in_channels: int, out_channels: int, inner_channels: int, *,
                 stride: int, rate: int, norm_layer: NormLayer = MOBILENET_V2_NORM):
        super().__init__()
        conv = {"use_bias": False, "use_bn": True, "norm_layer": norm_layer}
        self.expand = (Conv2dSame(in_channels, inner_channels, 1, activation="relu6", **conv)
                       if inner_channels > in_channels else None)
        channels = inner_channels if self.expand is not None else in_channels
        self.depthwise = DepthwiseConv2dSame(channels, 3, stride=stride, atrous_rate=rate,
                                             activation="relu6", **conv)
        if stride > 1:
            self.depthwise.depthwise_conv = _tf_same(self.depthwise.depthwise_conv)
        self.project = Conv2dSame(channels, out_channels, 1, activation=None, **conv)
        self.residual = stride == 1 and in_channels == out_channels
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inner = self.expand(x) if self.expand is not None else x
        depthwise = self.depthwise(inner)
        out = self.project(depthwise)
        return (out + x if self.residual else out), depthwise


class MobileNetV2(Backbone):
    """research/deeplab's MobileNetV2 feature extractor (up to ``layer_18``)."""

    tf_scope = "MobilenetV2"

    def __init__(self, *, depth_multiplier: float = 1.0, output_stride: int | None = 32,
                 divisible_by: int | None = None, in_channels: int = 3,
                 norm_layer: NormLayer = MOBILENET_V2_NORM):
        super().__init__()
        if depth_multiplier <= 0:
            raise ValueError(f"depth_multiplier must be > 0, got {depth_multiplier}")
        if output_stride is not None and (output_stride < 1 or
                                          (output_stride > 1 and output_stride % 2)):
            raise ValueError(f"output_stride must be 1 or a multiple of 2, got {output_stride}")
        if divisible_by is None:
            divisible_by = 8 if depth_multiplier == 1.0 else 1
        min_depth = 8 if depth_multiplier == 1.0 else 1

        def depth(d: int) -> int:
            return make_divisible(d * depth_multiplier, divisible_by, min_depth)

        conv = {"use_bias": False, "use_bn": True, "norm_layer": norm_layer}
        current, rate = 1, 1

        def next_layer(stride: int) -> tuple[int, int]:
            nonlocal current, rate
            if output_stride is not None and current == output_stride:
                layer_stride, layer_rate = 1, rate
                rate *= stride
            else:
                layer_stride, layer_rate = stride, 1
                current *= stride
            return layer_stride, layer_rate

        stride, _ = next_layer(2)
        channels = depth(32)
        self.conv = Conv2dSame(in_channels, channels, 3, stride=stride, activation="relu6",
                               **conv)
        if stride > 1:
            self.conv.conv = _tf_same(self.conv.conv)
        self.blocks: list[str] = []
        specs = []
        nominal = 2
        for index, (outputs, block_stride, factor) in enumerate(_V2_BLOCKS):
            layer = index + 2  # layer_1 is the stem conv
            layer_stride, layer_rate = next_layer(block_stride)
            # expand_input_by_factor(6) is divisible by 8; the first block's factor 1 by 1.
            inner = make_divisible(channels * factor, 8 if factor != 1 else 1)
            block = ExpandedConv(channels, depth(outputs), inner, stride=layer_stride,
                                 rate=layer_rate, norm_layer=norm_layer)
            name = "expanded_conv" if index == 0 else f"expanded_conv_{index}"
            self.add_module(name, block)
            self.blocks.append(name)
            nominal *= block_stride
            if layer in _ENDPOINT_LAYERS:
                width = block.depthwise.depthwise_conv.out_channels
                specs.append(FeatureSpec(_ENDPOINT_LAYERS[layer], width, nominal,
                                         f"{name}.depthwise"))
            channels = block.out_channels
        self._endpoint_blocks = {f"expanded_conv_{layer - 2}": endpoint
                                 for layer, endpoint in _ENDPOINT_LAYERS.items()}
        specs.append(FeatureSpec("res5", channels, nominal, self.blocks[-1]))
        self.feature_specs = specs
        self.output_stride = output_stride or 32

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.conv(x)
        endpoints: dict[str, torch.Tensor] = {}
        for name in self.blocks:
            x, depthwise = getattr(self, name)(x)
            if name in self._endpoint_blocks:
                endpoints[self._endpoint_blocks[name]] = depthwise
        endpoints["res5"] = x
        return endpoints

    def tf_name_map(self, key: str) -> str | None:
        """TF-Slim name (``MobilenetV2/expanded_conv_3/expand/weights``) -> ours."""
        return tf_slim_name_map(key, self.tf_scope)


def tf_slim_name_map(key: str, scope: str = "MobilenetV2") -> str | None:
    """MobileNetV2 rename table: drop the scope; ``Conv`` -> ``conv``.

    ``MobilenetV2/expanded_conv_3/depthwise/depthwise_weights`` ->
    ``expanded_conv_3.depthwise.depthwise_conv.weight``. The layers research/deeplab does
    not build (``Conv_1``, ``Logits`` of ImageNet checkpoints) and TF1 training variables
    are skipped.
    """
    if is_training_variable(key):
        return SKIP
    if not key.startswith(scope + "/"):
        return None
    if key.split("/")[1] in ("Conv_1", "Logits"):
        return SKIP
    return map_slim_key(key, lambda parts: [{"Conv": "conv"}.get(p, p) for p in parts[1:]])


@register_model
def mobilenet_v2(*, output_stride: int | None = 32, depth_multiplier: float = 1.0,
                 norm_layer: NormLayer | None = None, **kwargs: Any) -> MobileNetV2:
    """MobileNetV2 (TF-Slim, up to ``layer_18``); res2..res5: 144, 192, 576, 320 channels."""
    return MobileNetV2(output_stride=output_stride, depth_multiplier=depth_multiplier,
                       norm_layer=norm_layer or MOBILENET_V2_NORM, **kwargs)
