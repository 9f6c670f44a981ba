"""ResNet-v1-50/101 "beta" of research/deeplab (``core/resnet_v1_beta.py``).

The 7x7 stem is replaced by three 3x3 convolutions (64 stride 2, 64, 128), followed by
a 3x3 stride-2 max pool with TF 'SAME' padding. Bottleneck units (1x1 -> 3x3 -> 1x1,
BN after each, ReLU after the first two and after the residual add) stride in the
3x3 convolution of the *last* unit of blocks 1-3; the shortcut is a 1x1 conv + BN where
the depth changes, else a subsampling (every ``stride``-th pixel). As in research/deeplab:

- strided 3x3 convolutions pad explicitly (``conv2d_same``) = :class:`PaddedConv2d`;
- the output stride is reached as ``resnet_utils.stack_blocks_dense`` does (target
  ``output_stride / 4`` after the stem and pool), and block4's units use atrous rate
  ``rate * multi_grid[i]`` (research/deeplab recommends ``multi_grid=(1, 2, 4)`` with
  its released checkpoints; the code default is ``(1, 1, 1)``);
- batch norm epsilon 1e-5.

Endpoints ``res2``/``res3``/``res4`` are research/deeplab's decoder end points
(``block{1,2,3}/unit_{n-1}/bottleneck_v1/conv3``: the last stride-1 unit's ``conv3`` BN
output, before the residual add and ReLU), ``res5`` the backbone output.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.conv import Conv2dSame, NormLayer, batch_norm
from ..registry import register_model
from ..weights.convert import SKIP
from ..weights.tf_slim import is_training_variable, map_slim_key
from .base import Backbone, FeatureSpec
from .xception import plan_atrous_units

#: research/deeplab's ResNet batch norm (epsilon 1e-5).
RESNET_V1_BETA_NORM: NormLayer = batch_norm(eps=1e-5, momentum=0.997)


def tf_same_max_pool(x: torch.Tensor, kernel_size: int, stride: int) -> torch.Tensor:
    """Max pooling with TF 'SAME' padding (asymmetric on even sizes, padding ignored)."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max((math.ceil(size / stride) - 1) * stride + kernel_size - size, 0)
        pads += [total // 2, total - total // 2]
    if any(pads):
        x = F.pad(x, pads, value=float("-inf"))
    return F.max_pool2d(x, kernel_size, stride)


class BottleneckV1(nn.Module):
    """research/deeplab ``bottleneck``: ``relu(shortcut + conv3(conv2(conv1(x))))``.

    Returns ``(output, conv3 output)``; the latter is the decoder end point.
    """

    def __init__(self, in_channels: int, depth: int, depth_bottleneck: int, *, stride: int,
                 rate: int, norm_layer: NormLayer = RESNET_V1_BETA_NORM):
        super().__init__()
        conv = {"use_bias": False, "use_bn": True, "norm_layer": norm_layer}
        self.stride = stride
        if depth != in_channels:
            self.shortcut = Conv2dSame(in_channels, depth, 1, stride=stride, activation=None,
                                       **conv)
        else:
            self.shortcut = None
        self.conv1 = Conv2dSame(in_channels, depth_bottleneck, 1, activation="relu", **conv)
        self.conv2 = Conv2dSame(depth_bottleneck, depth_bottleneck, 3, stride=stride,
                                atrous_rate=rate, activation="relu", **conv)
        self.conv3 = Conv2dSame(depth_bottleneck, depth, 1, activation=None, **conv)
        self.out_channels = depth

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.shortcut is not None:
            shortcut = self.shortcut(x)
        else:
            shortcut = x[..., :: self.stride, :: self.stride] if self.stride > 1 else x
        residual = self.conv3(self.conv2(self.conv1(x)))
        return F.relu(shortcut + residual), residual


class ResNetV1Beta(Backbone):
    """research/deeplab's ResNet-v1 beta (``num_units`` per block, e.g. (3, 4, 23, 3)).

    ``output_stride`` 8, 16 or 32 (None = 32); ``multi_grid``: block4's unit rates.
    """

    def __init__(self, num_units: Sequence[int] = (3, 4, 6, 3), *, tf_scope: str = "resnet_v1_50",
                 output_stride: int | None = 32, multi_grid: Sequence[int] | None = None,
                 in_channels: int = 3, norm_layer: NormLayer = RESNET_V1_BETA_NORM):
        super().__init__()
        if output_stride is not None and output_stride % 4:
            raise ValueError(f"output_stride must be a multiple of 4, got {output_stride}")
        multi_grid = tuple(multi_grid or (1,) * num_units[3])
        if len(multi_grid) != num_units[3]:
            raise ValueError(f"multi_grid needs {num_units[3]} rates, got {multi_grid}")
        self.tf_scope = tf_scope
        conv = {"use_bias": False, "use_bn": True, "activation": "relu", "norm_layer": norm_layer}
        self.conv1_1 = Conv2dSame(in_channels, 64, 3, stride=2, **conv)
        self.conv1_2 = Conv2dSame(64, 64, 3, **conv)
        self.conv1_3 = Conv2dSame(64, 128, 3, **conv)
        # Units: blocks 1-3 stride in their last unit; block4 keeps stride 1 (rates x grid).
        units = []
        for block, (count, base) in enumerate(zip(num_units, (64, 128, 256, 512)), 1):
            for index in range(count):
                stride = 2 if block < 4 and index == count - 1 else 1
                grid = multi_grid[index] if block == 4 else 1
                units.append((block, index, base, stride, grid))
        plan = plan_atrous_units([u[3] for u in units], None if output_stride is None
                                 else output_stride // 4)
        channels = 128
        self.units: list[str] = []
        self.endpoint_units: dict[str, str] = {}
        specs = []
        for (block, index, base, _, grid), (stride, rate) in zip(units, plan):
            if index == 0:
                self.add_module(f"block{block}", nn.Module())
            unit = BottleneckV1(channels, base * 4, base, stride=stride, rate=rate * grid,
                                norm_layer=norm_layer)
            getattr(self, f"block{block}").add_module(f"unit_{index + 1}", unit)
            path = f"block{block}.unit_{index + 1}"
            self.units.append(path)
            if block < 4 and index == num_units[block - 1] - 2:
                self.endpoint_units[path] = f"res{block + 1}"
                specs.append(FeatureSpec(f"res{block + 1}", base * 4, 2 ** (block + 1),
                                         f"{path}.conv3"))
            channels = unit.out_channels
        specs.append(FeatureSpec("res5", channels, 32, self.units[-1]))
        self.feature_specs = specs
        self.output_stride = output_stride or 32

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.conv1_3(self.conv1_2(self.conv1_1(x)))
        x = tf_same_max_pool(x, 3, 2)
        endpoints: dict[str, torch.Tensor] = {}
        for path in self.units:
            x, conv3 = self.get_submodule(path)(x)
            if path in self.endpoint_units:
                endpoints[self.endpoint_units[path]] = conv3
        endpoints["res5"] = x
        return endpoints

    def tf_name_map(self, key: str) -> str | None:
        """TF-Slim name (``resnet_v1_101/block1/unit_1/bottleneck_v1/conv1/...``) -> ours."""
        return tf_slim_name_map(key, self.tf_scope)


def tf_slim_name_map(key: str, scope: str) -> str | None:
    """ResNet-v1-beta rename table: drop the network scope and ``bottleneck_v1``.

    ``resnet_v1_101/block3/unit_7/bottleneck_v1/conv2/BatchNorm/beta`` ->
    ``block3.unit_7.conv2.batch_norm.bias``. ``<scope>/logits`` (ImageNet classifier)
    and TF1 training variables are skipped.
    """
    if is_training_variable(key):
        return SKIP
    if not key.startswith(scope + "/"):
        return None
    if key.startswith(f"{scope}/logits/"):
        return SKIP
    return map_slim_key(key, lambda parts: [p for p in parts[1:] if p != "bottleneck_v1"])


@register_model
def resnet_v1_50_beta(*, output_stride: int | None = 32, norm_layer: NormLayer | None = None,
                      **kwargs: Any) -> ResNetV1Beta:
    """ResNet-v1-50 beta (3, 4, 6, 3 units); res2..res5: 256, 512, 1024, 2048 channels."""
    return ResNetV1Beta((3, 4, 6, 3), tf_scope="resnet_v1_50", output_stride=output_stride,
                        norm_layer=norm_layer or RESNET_V1_BETA_NORM, **kwargs)


@register_model
def resnet_v1_101_beta(*, output_stride: int | None = 32, norm_layer: NormLayer | None = None,
                       **kwargs: Any) -> ResNetV1Beta:
    """ResNet-v1-101 beta (3, 4, 23, 3 units); res2..res5: 256, 512, 1024, 2048 channels."""
    return ResNetV1Beta((3, 4, 23, 3), tf_scope="resnet_v1_101", output_stride=output_stride,
                        norm_layer=norm_layer or RESNET_V1_BETA_NORM, **kwargs)
