"""MobileNet inverted bottleneck (DeepLab2 ``model/layers/blocks.py``).

Layout (attribute names as in DeepLab2): ``conv1_bn_act`` (1x1 expansion, only
when ``expand_ratio > 1``), ``conv2_bn_act`` (depthwise, carries the stride and
atrous rate), ``squeeze_excitation`` (optional), ``conv3_bn`` (1x1 linear
projection), plus a residual add when ``use_residual`` and the widths agree.
"""
from __future__ import annotations

import torch
from torch import nn

from .conv import Conv2dSame, DepthwiseConv2dSame, NormLayer, default_norm_layer
from .squeeze_excite import SqueezeAndExcite
from .utils import make_divisible


class InvertedBottleneckBlock(nn.Module):
    """Inverted bottleneck with depthwise conv; ``forward`` returns ``(out, depthwise_out)``.

    ``depthwise_out`` is the output of the depthwise conv + BN + activation, taken
    before squeeze-and-excite; DeepLab2's MobileNet uses it as the endpoint.
    """

    def __init__(self, in_filters: int, out_filters: int, expand_ratio: float, stride: int, *,
                 kernel_size: int = 3, se_ratio: float | None = None,
                 activation: str = "relu", se_inner_activation: str = "relu",
                 se_gating_activation: str = "sigmoid",
                 depthwise_activation: str | None = None,
                 expand_se_in_filters: bool = False, atrous_rate: int = 1,
                 divisible_by: int = 1, use_residual: bool = True,
                 norm_layer: NormLayer = default_norm_layer):
        super().__init__()
        self.in_filters = in_filters
        self.out_filters = out_filters
        if depthwise_activation is None:
            depthwise_activation = activation

        expand_filters = in_filters
        self.conv1_bn_act: nn.Module | None = None
        if expand_ratio > 1:
            expand_filters = make_divisible(in_filters * expand_ratio, divisible_by)
            self.conv1_bn_act = Conv2dSame(in_filters, expand_filters, 1, use_bias=False,
                                           use_bn=True, activation=activation,
                                           norm_layer=norm_layer)
        self.conv2_bn_act = DepthwiseConv2dSame(expand_filters, kernel_size, stride=stride,
                                                atrous_rate=atrous_rate, use_bias=False,
                                                use_bn=True, activation=depthwise_activation,
                                                norm_layer=norm_layer)
        self.squeeze_excitation: nn.Module | None = None
        if se_ratio is not None and se_ratio > 0:
            se_in = expand_filters if expand_se_in_filters else in_filters
            self.squeeze_excitation = SqueezeAndExcite(
                se_in, expand_filters, se_ratio, divisible_by=divisible_by,
                activation=se_inner_activation, gating_activation=se_gating_activation)
        self.conv3_bn = Conv2dSame(expand_filters, out_filters, 1, use_bias=False, use_bn=True,
                                   activation=None, norm_layer=norm_layer)
        self.residual = use_residual and in_filters == out_filters
        self.expand_filters = expand_filters

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shortcut = x
        if self.conv1_bn_act is not None:
            x = self.conv1_bn_act(x)
        x = self.conv2_bn_act(x)
        depthwise_output = x
        if self.squeeze_excitation is not None:
            x = self.squeeze_excitation(x)
        x = self.conv3_bn(x)
        if self.residual:
            x = x + shortcut
        return x, depthwise_output
