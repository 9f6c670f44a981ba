"""Stems of DeepLab2's ResNet family (``model/layers/stems.py`` and ``axial_resnet.py``).

Every stem has stride 2 and returns a NON-activated tensor (the network's
``stage1`` endpoint; ``res1`` is its activation). DeepLab2's ResNets have no
max pool: the stride-4 downsampling happens in the first block of ``stage2``.
"""
from __future__ import annotations

import torch
from torch import nn

from .conv import Conv2dSame, NormLayer, default_norm_layer


class InceptionStem(nn.Module):
    """Three 3x3 convolutions (stride 2, 1, 1): ``conv1_bn_act``, ``conv2_bn_act``, ``conv3_bn``.

    Widths are ``int(64 * m)``, ``int(64 * m)`` and ``int(128 * m)`` for width
    multiplier ``m``; the last convolution has batch norm but no activation.
    """

    def __init__(self, in_channels: int = 3, *, width_multiplier: float = 1.0,
                 activation: str = "relu", norm_layer: NormLayer = default_norm_layer):
        super().__init__()
        narrow, wide = int(64 * width_multiplier), int(128 * width_multiplier)
        self.conv1_bn_act = Conv2dSame(in_channels, narrow, 3, stride=2, use_bias=False,
                                       use_bn=True, activation=activation, norm_layer=norm_layer)
        self.conv2_bn_act = Conv2dSame(narrow, narrow, 3, use_bias=False, use_bn=True,
                                       activation=activation, norm_layer=norm_layer)
        self.conv3_bn = Conv2dSame(narrow, wide, 3, use_bias=False, use_bn=True,
                                   activation=None, norm_layer=norm_layer)
        self.out_channels = wide

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3_bn(self.conv2_bn_act(self.conv1_bn_act(x)))


#: Stem kinds by DeepLab2 ``backbone_type``.
STEM_TYPES = ("resnet", "resnet_beta", "wider_resnet")


def build_stem(backbone_type: str, in_channels: int = 3, *, width_multiplier: float = 1.0,
               activation: str = "relu",
               norm_layer: NormLayer = default_norm_layer) -> tuple[nn.Module, int]:
    """The stem DeepLab2 uses for ``backbone_type``, and its output channels.

    * ``'resnet'``: one 7x7 stride-2 conv + BN (no activation), ``round(64 * m)`` channels;
    * ``'wider_resnet'``: one 3x3 stride-2 conv + BN (no activation), ``round(64 * m)``;
    * ``'resnet_beta'``: :class:`InceptionStem`, ``int(128 * m)`` channels.
    """
    kind = backbone_type.lower()
    if kind == "resnet_beta":
        stem = InceptionStem(in_channels, width_multiplier=width_multiplier,
                             activation=activation, norm_layer=norm_layer)
        return stem, stem.out_channels
    if kind in ("resnet", "wider_resnet"):
        channels = int(round(64 * width_multiplier))
        kernel_size = 7 if kind == "resnet" else 3
        stem = Conv2dSame(in_channels, channels, kernel_size, stride=2, use_bias=False,
                          use_bn=True, activation=None, norm_layer=norm_layer)
        return stem, channels
    raise ValueError(f"backbone_type must be one of {STEM_TYPES}, got {backbone_type!r}")
