"""Modified aligned Xception-41/65/71 of research/deeplab (``core/xception.py``).

The entry flow starts with two 3x3 convolutions (``conv1_1`` stride 2, ``conv1_2``);
every block unit is an Xception module: three separable convolutions (depthwise ->
BN, pointwise -> BN, each with its own batch norm) plus a 1x1-conv (``conv``), identity
(``sum``) or no (``none``) shortcut. Max pooling is replaced by the third separable
convolution striding. As in research/deeplab:

- ReLU is applied to the *input* of each separable convolution and none inside it,
  except in ``exit_flow/block2`` where depthwise and pointwise are each followed by
  BN + ReLU (``activation_fn_in_separable_conv``); nothing follows the residual add.
- Strided convolutions pad explicitly (``fixed_padding``: ``(k_eff - 1) // 2`` before,
  the rest after) and convolve VALID, which is what :class:`PaddedConv2d` does; at
  stride 1 this equals TF 'SAME'.
- The output stride is reached as ``stack_blocks_dense`` does (target ``output_stride / 2``
  because of the stride-2 stem): once reached, a unit that would stride runs at
  stride 1 and the atrous rate is multiplied by its stride afterwards; the rate
  (times ``multi_grid`` in ``exit_flow/block2``) applies to all three depthwise convs.
- Batch norm epsilon 1e-3.

Endpoints: ``res2``/``res3``/``res4`` are research/deeplab's decoder end points at
stride 4/8/16 (the second separable convolution's pointwise BN output of the unit
that strides next, *before* ReLU); ``res5`` is the backbone output.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.conv import Conv2dSame, NormLayer, SeparableConv2dSame, batch_norm
from ..registry import register_model
from ..weights.convert import SKIP
from ..weights.tf_slim import is_training_variable, map_slim_key
from .base import Backbone, FeatureSpec

#: research/deeplab's Xception batch norm (epsilon 1e-3, decay 0.9997).
XCEPTION_NORM: NormLayer = batch_norm(eps=1e-3, momentum=0.9997)


def plan_atrous_units(strides: Sequence[int], target_stride: int | None
                      ) -> list[tuple[int, int]]:
    """(stride, atrous rate) per unit, as research/deeplab's ``stack_blocks_dense``.

    ``target_stride`` None keeps every stride. Raises if it cannot be reached exactly.
    """
    current, rate, plan = 1, 1, []
    for stride in strides:
        if target_stride is not None and current > target_stride:
            raise ValueError(f"output stride {target_stride} cannot be reached")
        if target_stride is not None and current == target_stride:
            plan.append((1, rate))
            rate *= stride
        else:
            plan.append((stride, 1))
            current *= stride
    if target_stride is not None and current != target_stride:
        raise ValueError(f"output stride {target_stride} cannot be reached (network stride "
                         f"{current})")
    return plan


@dataclass(frozen=True)
class XceptionBlock:
    """One research/deeplab ``xception_block``: ``num_units`` identical units."""

    flow: str
    name: str
    depths: tuple[int, int, int]
    skip: str
    activation_in_separable: bool
    num_units: int
    stride: int
    use_multi_grid: bool = False


def _entry(name: str, depth: int, stride: int) -> XceptionBlock:
    return XceptionBlock("entry_flow", name, (depth,) * 3, "conv", False, 1, stride)


def _middle_exit(middle_units: int) -> list[XceptionBlock]:
    return [XceptionBlock("middle_flow", "block1", (728,) * 3, "sum", False, middle_units, 1),
            XceptionBlock("exit_flow", "block1", (728, 1024, 1024), "conv", False, 1, 2),
            XceptionBlock("exit_flow", "block2", (1536, 1536, 2048), "none", True, 1, 1, True)]


XCEPTION_BLOCKS: dict[str, list[XceptionBlock]] = {
    "xception_41": [_entry("block1", 128, 2), _entry("block2", 256, 2), _entry("block3", 728, 2),
                    *_middle_exit(8)],
    "xception_65": [_entry("block1", 128, 2), _entry("block2", 256, 2), _entry("block3", 728, 2),
                    *_middle_exit(16)],
    "xception_71": [_entry("block1", 128, 2), _entry("block2", 256, 1), _entry("block3", 256, 2),
                    _entry("block4", 728, 1), _entry("block5", 728, 2), *_middle_exit(16)],
}


class XceptionModule(nn.Module):
    """Three separable convolutions + shortcut (research/deeplab ``xception_module``).

    Returns ``(output, endpoint)`` where ``endpoint`` is ``separable_conv2``'s output.
    """

    def __init__(self, in_channels: int, depths: Sequence[int], *, skip: str, stride: int,
                 rate: int, unit_rates: Sequence[int], activation_in_separable: bool,
                 kernel_size: int = 3, norm_layer: NormLayer = XCEPTION_NORM):
        super().__init__()
        if skip not in ("conv", "sum", "none"):
            raise ValueError(f"skip must be 'conv', 'sum' or 'none', got {skip!r}")
        self.skip = skip
        self.pre_activation = not activation_in_separable
        activation = "relu" if activation_in_separable else None
        channels = in_channels
        for i in range(3):
            self.add_module(f"separable_conv{i + 1}", SeparableConv2dSame(
                channels, depths[i], kernel_size, stride=stride if i == 2 else 1,
                atrous_rate=rate * unit_rates[i], use_bias=False, use_bn=True,
                activation=activation, norm_layer=norm_layer))
            channels = depths[i]
        if skip == "conv":
            self.shortcut = Conv2dSame(in_channels, depths[-1], 1, stride=stride, use_bias=False,
                                       use_bn=True, activation=None, norm_layer=norm_layer)
        self.out_channels = depths[-1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        residual = x
        endpoint = x
        for i, conv in enumerate((self.separable_conv1, self.separable_conv2,
                                  self.separable_conv3)):
            if self.pre_activation:
                residual = F.relu(residual)
            residual = conv(residual)
            if i == 1:
                endpoint = residual
        if self.skip == "conv":
            return residual + self.shortcut(x), endpoint
        if self.skip == "sum":
            return residual + x, endpoint
        return residual, endpoint


class Xception(Backbone):
    """research/deeplab's modified aligned Xception (``xception_41``/``65``/``71``).

    ``output_stride`` 8, 16 or 32 (None = 32); ``multi_grid`` the three unit rates of
    ``exit_flow/block2``. Input: ``x * (2/255) - 1`` of 0..255 pixels (normalised).
    """

    def __init__(self, variant: str = "xception_65", *, output_stride: int | None = 32,
                 multi_grid: Sequence[int] | None = None, in_channels: int = 3,
                 norm_layer: NormLayer = XCEPTION_NORM):
        super().__init__()
        if variant not in XCEPTION_BLOCKS:
            raise ValueError(f"unknown Xception variant {variant!r}; "
                             f"expected one of {sorted(XCEPTION_BLOCKS)}")
        if output_stride is not None and output_stride % 2:
            raise ValueError(f"output_stride must be a multiple of 2, got {output_stride}")
        multi_grid = tuple(multi_grid or (1, 1, 1))
        if len(multi_grid) != 3:
            raise ValueError(f"multi_grid needs 3 rates, got {multi_grid}")
        self.tf_scope = variant
        blocks = XCEPTION_BLOCKS[variant]
        unit_strides = [b.stride for b in blocks for _ in range(b.num_units)]
        plan = iter(plan_atrous_units(unit_strides, None if output_stride is None
                                      else output_stride // 2))
        self.entry_flow, self.middle_flow, self.exit_flow = nn.Module(), nn.Module(), nn.Module()
        self.entry_flow.conv1_1 = Conv2dSame(in_channels, 32, 3, stride=2, use_bias=False,
                                             use_bn=True, activation="relu",
                                             norm_layer=norm_layer)
        self.entry_flow.conv1_2 = Conv2dSame(32, 64, 3, use_bias=False, use_bn=True,
                                             activation="relu", norm_layer=norm_layer)
        channels, nominal = 64, 2
        self.units: list[str] = []
        self.endpoint_units: dict[str, str] = {}
        specs = []
        for block in blocks:
            container = nn.Module()
            getattr(self, block.flow).add_module(block.name, container)
            for index in range(block.num_units):
                stride, rate = next(plan)
                unit = XceptionModule(
                    channels, block.depths, skip=block.skip, stride=stride, rate=rate,
                    unit_rates=multi_grid if block.use_multi_grid else (1, 1, 1),
                    activation_in_separable=block.activation_in_separable,
                    norm_layer=norm_layer)
                container.add_module(f"unit_{index + 1}", unit)
                path = f"{block.flow}.{block.name}.unit_{index + 1}"
                self.units.append(path)
                if block.stride == 2 and nominal >= 4:  # research/deeplab's decoder end points
                    endpoint = f"res{nominal.bit_length() - 1}"
                    self.endpoint_units[path] = endpoint
                    specs.append(FeatureSpec(endpoint, block.depths[1], nominal,
                                             f"{path}.separable_conv2"))
                channels = unit.out_channels
            nominal *= block.stride
        specs.append(FeatureSpec("res5", channels, nominal, self.units[-1]))
        self.feature_specs = specs
        self.output_stride = output_stride or 32

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.entry_flow.conv1_2(self.entry_flow.conv1_1(x))
        endpoints: dict[str, torch.Tensor] = {}
        for path in self.units:
            x, endpoint = self.get_submodule(path)(x)
            if path in self.endpoint_units:
                endpoints[self.endpoint_units[path]] = endpoint
        endpoints["res5"] = x
        return endpoints

    def tf_name_map(self, key: str) -> str | None:
        """TF-Slim name (``xception_65/entry_flow/...``) -> our ``state_dict`` key."""
        return tf_slim_name_map(key, self.tf_scope)


def tf_slim_name_map(key: str, scope: str) -> str | None:
    """Xception rename table: drop the network scope and ``xception_module``.

    ``xception_65/middle_flow/block1/unit_3/xception_module/separable_conv1_depthwise/
    BatchNorm/gamma`` -> ``middle_flow.block1.unit_3.separable_conv1.depthwise.batch_norm
    .weight``. The ImageNet classifier (``<scope>/logits``) and TF1 training variables
    are skipped.
    """
    if is_training_variable(key):
        return SKIP
    if not key.startswith(scope + "/"):
        return None
    if key.startswith(f"{scope}/logits/"):
        return SKIP

    def modules(parts: list[str]) -> list[str]:
        return [p for p in parts[1:] if p != "xception_module"]

    return map_slim_key(key, modules)


def _build(variant: str, output_stride: int | None, norm_layer: NormLayer | None,
           kwargs: dict[str, Any]) -> Xception:
    return Xception(variant, output_stride=output_stride,
                    norm_layer=norm_layer or XCEPTION_NORM, **kwargs)


@register_model
def xception41(*, output_stride: int | None = 32, norm_layer: NormLayer | None = None,
               **kwargs: Any) -> Xception:
    """Xception-41 (8 middle-flow units); res2..res5: 256, 728, 1024, 2048 channels."""
    return _build("xception_41", output_stride, norm_layer, kwargs)


@register_model
def xception65(*, output_stride: int | None = 32, norm_layer: NormLayer | None = None,
               **kwargs: Any) -> Xception:
    """Xception-65 (16 middle-flow units); res2..res5: 256, 728, 1024, 2048 channels."""
    return _build("xception_65", output_stride, norm_layer, kwargs)


@register_model
def xception71(*, output_stride: int | None = 32, norm_layer: NormLayer | None = None,
               **kwargs: Any) -> Xception:
    """Xception-71 (five entry-flow blocks); res2..res5: 256, 728, 1024, 2048 channels."""
    return _build("xception_71", output_stride, norm_layer, kwargs)
