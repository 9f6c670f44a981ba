"""Attention residual blocks of Axial-ResNets (DeepLab2 ``AxialBlock`` with attention).

DeepLab2's ``AxialBlock`` replaces the 3x3 conv of a bottleneck by a
self-attention layer: ``conv1_bn_act`` (1x1), ``attention``, the activation,
``conv3_bn`` (1x1, BN gamma initialised to zero), plus the usual shortcut, optional
squeeze-excite and drop path of :class:`~.residual_blocks.ResidualBlock`.

* :class:`AxialBlock` (block type ``'axial'``): :class:`~.axial_attention.AxialAttention2D`;
* :class:`GlobalBlock` (block type ``'global'``): :class:`~.axial_attention.GlobalAttention2D`.

Importing this module registers both types with the ResNet skeleton
(:func:`deeplab_zoo.backbones.resnet.register_block_type`), so
``plan_block_group``'s attention blocks can be built. The stride sits in the
attention layer (subsampling after attending); atrous rates and switchable atrous
convs do not apply to attention and are ignored, as in DeepLab2. The blocks take
an NCHW map and return one, so a dual-path (MaX-DeepLab) block group can
interleave them with its transformer layers.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..backbones.resnet import register_block_type
from .axial_attention import AxialAttention2D, GlobalAttention2D
from .conv import Conv2dSame, NormLayer, default_norm_layer
from .residual_blocks import ResidualBlock, _zero_init_gamma


class AttentionBlock(ResidualBlock):
    """1x1 ``conv1_bn_act`` -> ``attention`` -> activation -> 1x1 ``conv3_bn``.

    ``filters`` = (conv1 width, attention base filters, output width), as DeepLab2's
    ``filters_list`` for attention blocks. ``attention_config`` holds DeepLab2's
    ``axial_layer_config`` (``key_expansion``, ``value_expansion``, ``num_heads``,
    ``query_shape``, ...).
    """

    attention_cls: type[nn.Module]

    def __init__(self, in_channels: int, filters: Sequence[int], *, stride: int = 1,
                 atrous_rate: int = 1, second_conv_atrous_rate: int | None = None,
                 use_sac: bool = False, use_squeeze_and_excite: bool = False,
                 drop_path_keep_prob: float = 1.0, activation: str = "relu",
                 norm_layer: NormLayer = default_norm_layer, **attention_config: Any):
        if len(filters) != 3:
            raise ValueError(f"{type(self).__name__} needs 3 filter numbers, got {list(filters)}")
        del atrous_rate, second_conv_atrous_rate, use_sac  # convolution-only settings
        super().__init__(in_channels, filters[2], stride=stride,
                         use_squeeze_and_excite=use_squeeze_and_excite,
                         drop_path_keep_prob=drop_path_keep_prob, activation=activation,
                         norm_layer=norm_layer)
        self.conv1_bn_act = Conv2dSame(in_channels, filters[0], 1, use_bias=False, use_bn=True,
                                       activation=activation, norm_layer=norm_layer)
        self.attention = self.attention_cls(filters[0], filters=filters[1], stride=stride,
                                            norm_layer=norm_layer, **attention_config)
        self.conv3_bn = Conv2dSame(self.attention.out_channels, filters[2], 1, use_bias=False,
                                   use_bn=True, activation=None, norm_layer=norm_layer)
        _zero_init_gamma(self.conv3_bn)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1_bn_act(x)
        x = self.activation(self.attention(x))
        return self.conv3_bn(x)


class AxialBlock(AttentionBlock):
    """Axial-attention block: height-axis then width-axis position-sensitive attention."""

    attention_cls = AxialAttention2D

    def __init__(self, in_channels: int, filters: Sequence[int], **kwargs: Any):
        if kwargs.pop("double_global_attention", False):
            raise ValueError("Double_global_attention takes no effect in AxialAttention2D.")
        super().__init__(in_channels, filters, **kwargs)


class GlobalBlock(AttentionBlock):
    """Global-attention block: content-only attention over all positions."""

    attention_cls = GlobalAttention2D


register_block_type("axial", AxialBlock)
register_block_type("global", GlobalBlock)
