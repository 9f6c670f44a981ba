"""Auto-DeepLab backbone: research/deeplab's ``nas_hnasnet`` (``core/nas_network.py``,
``core/nas_cell.py``).

Network level: a stem (3x3 conv stride 2, 3x3 conv, 3x3 conv stride 2; BN after each,
ReLU between) then 12 cells on the searched path ``[0, 0, 0, 1, 2, 1, 2, 2, 3, 3, 2, 1]``
(level ``l`` = stride ``4 * 2**l``): going one level down strides the cell and doubles
its filters, going up upsamples the input bilinearly (align_corners, to ``2n - 1``) and
halves them. The output is ReLU of the last cell (level 1 = stride 8, so the backbone
only supports output stride 8).

Cell level (``NASBaseCell`` with hnasnet's searched genotype): both inputs go through
ReLU -> 1x1 conv -> BN (the previous-previous input only when its width differs, after
a bilinear resize when its size differs); five blocks add two branches each; the cell
output concatenates the five block outputs (``5 * F * scale`` channels). Branch ops:
``separable_KxK_2`` (twice: ReLU -> separable conv -> BN, stride on the first) and
``atrous_KxK`` (ReLU -> KxK conv with rate 2 -> BN; when strided: bilinear resize to
``(n - 1) / 2 + 1`` then rate 1). Only branches reading a cell input stride. Strided
separable convs pad explicitly (``xception.separable_conv2d_same``). Convs have no bias;
batch norm epsilon 1e-3.

The TF-Slim names follow research/deeplab's master ``nas_cell.py`` (``separable_KxK_N/
{depthwise,pointwise}_weights``, ``bn_sep_KxK_N``, ``atrous_KxK``, ``bn_atr_KxK``,
``1x1`` + ``beginning_bn``, ``prev_1x1`` + ``prev_bn``); ``1x1`` is ``conv_1x1`` here.

Endpoints: ``res2``/``res3``/``res4`` are research/deeplab's decoder end points
``Cell_2``/``Cell_5``/``Cell_7`` (cell outputs at stride 4/8/16, before ReLU);
``res5`` is the backbone output (stride 8).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.conv import Conv2dSame, NormLayer, SeparableConv2dSame, batch_norm
from ..layers.resize import resize_align_corners, scale_dimension
from ..registry import register_model
from ..weights.convert import SKIP
from ..weights.tf_slim import is_training_variable, map_slim_key
from .base import Backbone, FeatureSpec

#: research/deeplab's NAS batch norm (epsilon 1e-3, decay 0.9997).
NAS_NORM: NormLayer = batch_norm(eps=1e-3, momentum=0.9997)

#: hnasnet's searched cell (``nas_network.hnasnet``).
HNASNET_OPERATIONS = ("atrous_5x5", "separable_3x3_2", "separable_3x3_2", "atrous_3x3",
                      "separable_3x3_2", "separable_3x3_2", "separable_5x5_2",
                      "separable_5x5_2", "separable_5x5_2", "atrous_5x5")
HNASNET_HIDDENSTATE_INDICES = (1, 0, 1, 0, 3, 1, 4, 2, 3, 5)
HNASNET_USED_HIDDENSTATES = (1, 1, 0, 0, 0, 0, 0)
#: hnasnet's searched network-level path (level l = stride 4 * 2**l).
HNASNET_BACKBONE = (0, 0, 0, 1, 2, 1, 2, 2, 3, 3, 2, 1)
#: Auto-DeepLab-S/M/L filter multipliers F (paper, Sec. 5).
AUTO_DEEPLAB_FILTERS = {"s": 20, "m": 32, "l": 48}


class SeparableOp(nn.Module):
    """``separable_KxK_N``: N x (ReLU -> separable conv -> BN); stride on the first."""

    def __init__(self, channels: int, kernel_size: int, num_layers: int, stride: int,
                 norm_layer: NormLayer):
        super().__init__()
        self.names = []
        for i in range(1, num_layers + 1):
            conv = f"separable_{kernel_size}x{kernel_size}_{i}"
            bn = f"bn_sep_{kernel_size}x{kernel_size}_{i}"
            self.add_module(conv, SeparableConv2dSame(
                channels, channels, kernel_size, stride=stride if i == 1 else 1,
                use_bias=False, use_bn=False, activation=None))
            self.add_module(bn, norm_layer(channels))
            self.names.append((conv, bn))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, bn in self.names:
            x = getattr(self, bn)(getattr(self, conv)(F.relu(x)))
        return x


class AtrousOp(nn.Module):
    """``atrous_KxK``: ReLU -> KxK conv (rate 2; strided: resize to half, rate 1) -> BN."""

    def __init__(self, channels: int, kernel_size: int, stride: int, norm_layer: NormLayer):
        super().__init__()
        self.stride = stride
        self.conv_name = f"atrous_{kernel_size}x{kernel_size}"
        self.bn_name = f"bn_atr_{kernel_size}x{kernel_size}"
        self.add_module(self.conv_name, Conv2dSame(
            channels, channels, kernel_size, atrous_rate=1 if stride == 2 else 2,
            use_bias=False))
        self.add_module(self.bn_name, norm_layer(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        if self.stride == 2:
            x = resize_align_corners(x, [scale_dimension(s, 0.5) for s in x.shape[-2:]])
        return getattr(self, self.bn_name)(getattr(self, self.conv_name)(x))


def _operation(name: str, channels: int, stride: int, norm_layer: NormLayer) -> nn.Module:
    kernel_size = int(name.split("x")[0][-1])
    if name.startswith("separable"):
        return SeparableOp(channels, kernel_size, int(name.split("_")[-1]), stride, norm_layer)
    if name.startswith("atrous"):
        if stride not in (1, 2):
            raise ValueError(f"atrous op supports stride 1 or 2, got {stride}")
        return AtrousOp(channels, kernel_size, stride, norm_layer)
    raise ValueError(f"unsupported NAS operation {name!r} (hnasnet uses separable/atrous only)")


class NASCell(nn.Module):
    """research/deeplab ``NASBaseCell`` with a fixed genotype."""

    def __init__(self, in_channels: int, prev_channels: int, filters: int, stride: int, *,
                 operations: Sequence[str] = HNASNET_OPERATIONS,
                 hiddenstate_indices: Sequence[int] = HNASNET_HIDDENSTATE_INDICES,
                 used_hiddenstates: Sequence[int] = HNASNET_USED_HIDDENSTATES,
                 norm_layer: NormLayer = NAS_NORM):
        super().__init__()
        if len(operations) != len(hiddenstate_indices) or len(operations) % 2:
            raise ValueError("need an even number of operations, one hidden state index each")
        self.hiddenstate_indices = tuple(hiddenstate_indices)
        self.num_states = 2 + len(operations) // 2
        self.output_states = [i for i in range(self.num_states)
                              if i >= len(used_hiddenstates) or not used_hiddenstates[i]]
        if filters != prev_channels:
            self.prev_1x1 = Conv2dSame(prev_channels, filters, 1, use_bias=False)
            self.prev_bn = norm_layer(filters)
        else:
            self.prev_1x1 = self.prev_bn = None
        self.conv_1x1 = Conv2dSame(in_channels, filters, 1, use_bias=False)
        self.beginning_bn = norm_layer(filters)
        for i in range(len(operations) // 2):
            block = nn.Module()
            for side, j in (("left", 2 * i), ("right", 2 * i + 1)):
                op_stride = stride if hiddenstate_indices[j] < 2 else 1
                block.add_module(side, _operation(operations[j], filters, op_stride, norm_layer))
            self.add_module(f"comb_iter_{i}", block)
        self.out_channels = filters * len(self.output_states)

    def forward(self, x: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        if prev.shape[-2:] != x.shape[-2:]:
            prev = resize_align_corners(prev, x.shape[-2:])
        if self.prev_1x1 is not None:
            prev = self.prev_bn(self.prev_1x1(F.relu(prev)))
        states = [self.beginning_bn(self.conv_1x1(F.relu(x))), prev]
        for i in range(self.num_states - 2):
            block = getattr(self, f"comb_iter_{i}")
            left = block.left(states[self.hiddenstate_indices[2 * i]])
            right = block.right(states[self.hiddenstate_indices[2 * i + 1]])
            states.append(left + right)
        return torch.cat([states[i] for i in self.output_states], dim=1)


class HNASNet(Backbone):
    """Auto-DeepLab's searched network (``nas_hnasnet``); ``filter_multiplier`` F = 20/32/48."""

    tf_scope = "hnasnet"

    def __init__(self, *, filter_multiplier: int = 20, output_stride: int | None = 8,
                 backbone: Sequence[int] = HNASNET_BACKBONE, in_channels: int = 3,
                 norm_layer: NormLayer = NAS_NORM):
        super().__init__()
        final_stride = 4 * 2 ** backbone[-1]
        if output_stride not in (None, final_stride):
            raise ValueError(f"this Auto-DeepLab network ends at stride {final_stride}; "
                             f"output_stride {output_stride} is not supported")
        self.conv0 = Conv2dSame(in_channels, 64, 3, stride=2, use_bias=False)
        self.conv0_bn = norm_layer(64)
        self.conv1 = Conv2dSame(64, 64, 3, use_bias=False)
        self.conv1_bn = norm_layer(64)
        self.conv2 = Conv2dSame(64, 128, 3, stride=2, use_bias=False)
        self.conv2_bn = norm_layer(128)
        channels = [64, 128]  # channels of the stem outputs / cell outputs so far
        scaling = 1.0
        self.upsample: list[bool] = []
        self.endpoints = {2: "res2", 5: "res3", 7: "res4"}
        specs = []
        for num, level in enumerate(backbone):
            stride, upsample = 1, False
            previous = backbone[num - 1] if num else 0
            if (num == 0 and level == 1) or (num and level == previous + 1):
                stride, scaling = 2, scaling * 2
            elif num and level == previous - 1:
                upsample, scaling = True, scaling / 2
            elif num and level != previous:
                raise ValueError(f"network path must move by one level per cell: {backbone}")
            cell = NASCell(channels[-1], channels[-2], int(filter_multiplier * scaling), stride,
                           norm_layer=norm_layer)
            self.add_module(f"cell_{num}", cell)
            self.upsample.append(upsample)
            channels.append(cell.out_channels)
            if num in self.endpoints:
                specs.append(FeatureSpec(self.endpoints[num], cell.out_channels,
                                         4 * 2 ** level, f"cell_{num}"))
        specs.append(FeatureSpec("res5", channels[-1], final_stride, f"cell_{len(backbone) - 1}"))
        self.feature_specs = specs
        self.output_stride = final_stride
        #: deepest stride on the path; inputs of size ``k * max_stride + 1`` keep every
        #: cell aligned (upsampling gives ``2n - 1``), as research/deeplab's crops do.
        self.max_stride = 4 * 2 ** max(backbone)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.conv1_bn(self.conv1(F.relu(self.conv0_bn(self.conv0(x)))))
        outputs = [x]
        x = self.conv2_bn(self.conv2(F.relu(x)))
        outputs.append(x)
        endpoints: dict[str, torch.Tensor] = {}
        for num, upsample in enumerate(self.upsample):
            if upsample:
                x = resize_align_corners(x, [scale_dimension(s, 2.0) for s in x.shape[-2:]])
            x = getattr(self, f"cell_{num}")(x, outputs[-2])
            outputs.append(x)
            if num in self.endpoints:
                endpoints[self.endpoints[num]] = x
        endpoints["res5"] = F.relu(x)
        return endpoints

    def tf_name_map(self, key: str) -> str | None:
        """TF-Slim name (``hnasnet/cell_3/comb_iter_0/left/atrous_5x5/weights``) -> ours."""
        return tf_slim_name_map(key, self.tf_scope)


def tf_slim_name_map(key: str, scope: str = "hnasnet") -> str | None:
    """hnasnet rename table: drop the scope; a cell's ``1x1`` is ``conv_1x1``.

    ``hnasnet/cell_0/comb_iter_1/left/separable_3x3_2/pointwise_weights`` ->
    ``cell_0.comb_iter_1.left.separable_3x3_2.pointwise.conv.weight``; bare batch norms
    (``hnasnet/cell_0/beginning_bn/gamma``) -> ``cell_0.beginning_bn.weight``.
    """
    if is_training_variable(key):
        return SKIP
    if not key.startswith(scope + "/"):
        return None
    return map_slim_key(key, lambda parts: [{"1x1": "conv_1x1"}.get(p, p) for p in parts[1:]])


def _auto_deeplab(size: str, output_stride: int | None, norm_layer: NormLayer | None,
                  kwargs: dict[str, Any]) -> HNASNet:
    return HNASNet(filter_multiplier=AUTO_DEEPLAB_FILTERS[size], output_stride=output_stride,
                   norm_layer=norm_layer or NAS_NORM, **kwargs)


@register_model
def hnasnet_s(*, output_stride: int | None = 8, norm_layer: NormLayer | None = None,
              **kwargs: Any) -> HNASNet:
    """Auto-DeepLab-S network (F = 20); res2..res5: 100, 200, 400, 200 channels."""
    return _auto_deeplab("s", output_stride, norm_layer, kwargs)


@register_model
def hnasnet_m(*, output_stride: int | None = 8, norm_layer: NormLayer | None = None,
              **kwargs: Any) -> HNASNet:
    """Auto-DeepLab-M network (F = 32); res2..res5: 160, 320, 640, 320 channels."""
    return _auto_deeplab("m", output_stride, norm_layer, kwargs)


@register_model
def hnasnet_l(*, output_stride: int | None = 8, norm_layer: NormLayer | None = None,
              **kwargs: Any) -> HNASNet:
    """Auto-DeepLab-L network (F = 48); res2..res5: 240, 480, 960, 480 channels."""
    return _auto_deeplab("l", output_stride, norm_layer, kwargs)
