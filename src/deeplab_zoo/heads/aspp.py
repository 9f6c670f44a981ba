"""Atrous Spatial Pyramid Pooling, as DeepLab2's ``model/decoder/aspp.py``."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.conv import Conv2dSame, NormLayer, default_norm_layer
from ..layers.resize import resize_align_corners


class ASPPConv(nn.Module):
    """3x3 atrous convolution + BN + activation."""

    def __init__(self, in_channels: int, out_channels: int, atrous_rate: int, *,
                 norm_layer: NormLayer = default_norm_layer, activation: str = "relu"):
        super().__init__()
        self.conv_bn_act = Conv2dSame(in_channels, out_channels, 3, atrous_rate=atrous_rate,
                                      use_bias=False, use_bn=True, activation=activation,
                                      norm_layer=norm_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_bn_act(x)


class ASPPPool(nn.Module):
    """Image pooling branch: average pool, 1x1 conv + BN + act, resize back.

    ``pool_size=None`` is global average pooling. A ``(h, w)`` pool size is DeepLab2's
    tiled pooling (stride 1, 'valid'), used when the input is larger than the training
    crop; the pool is clamped to the feature size so smaller inputs still work.
    """

    def __init__(self, in_channels: int, out_channels: int, *,
                 norm_layer: NormLayer = default_norm_layer, activation: str = "relu"):
        super().__init__()
        self.conv_bn_act = Conv2dSame(in_channels, out_channels, 1, use_bias=False, use_bn=True,
                                      activation=activation, norm_layer=norm_layer)
        self.pool_size: tuple[int, int] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if self.pool_size is None:
            pooled = x.mean(dim=(2, 3), keepdim=True)
        else:
            kernel = (min(self.pool_size[0], height), min(self.pool_size[1], width))
            pooled = F.avg_pool2d(x, kernel, stride=1)
        return resize_align_corners(self.conv_bn_act(pooled), (height, width))


class ASPP(nn.Module):
    """Five branches (1x1, three atrous 3x3, image pooling), concatenated and projected.

    With ``use_only_1x1_proj_conv`` the module degenerates to one 1x1 projection, as in
    DeepLab2. Dropout (0.1) follows the projection in the five-branch form.
    """

    def __init__(self, in_channels: int, out_channels: int, atrous_rates: Sequence[int], *,
                 use_only_1x1_proj_conv: bool = False, norm_layer: NormLayer = default_norm_layer,
                 activation: str = "relu"):
        super().__init__()
        if not use_only_1x1_proj_conv and len(atrous_rates) != 3:
            raise ValueError(f"ASPP needs exactly 3 atrous_rates, got {list(atrous_rates)}")
        self.use_only_1x1_proj_conv = use_only_1x1_proj_conv
        conv_args = dict(norm_layer=norm_layer, activation=activation)
        proj_in = in_channels if use_only_1x1_proj_conv else 5 * out_channels
        self.proj_conv_bn_act = Conv2dSame(proj_in, out_channels, 1, use_bias=False, use_bn=True,
                                           **conv_args)
        if not use_only_1x1_proj_conv:
            self.conv_bn_act = Conv2dSame(in_channels, out_channels, 1, use_bias=False,
                                          use_bn=True, **conv_args)
            rate1, rate2, rate3 = atrous_rates
            self.aspp_conv1 = ASPPConv(in_channels, out_channels, rate1, **conv_args)
            self.aspp_conv2 = ASPPConv(in_channels, out_channels, rate2, **conv_args)
            self.aspp_conv3 = ASPPConv(in_channels, out_channels, rate3, **conv_args)
            self.aspp_pool = ASPPPool(in_channels, out_channels, **conv_args)
            self.proj_drop = nn.Dropout(0.1)
        self.out_channels = out_channels

    def set_pool_size(self, pool_size: tuple[int, int] | None) -> None:
        """Sets the image-pooling window (None = global average pooling)."""
        if not self.use_only_1x1_proj_conv:
            self.aspp_pool.pool_size = None if pool_size is None else tuple(pool_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_only_1x1_proj_conv:
            return self.proj_conv_bn_act(x)
        branches = [self.conv_bn_act(x), self.aspp_conv1(x), self.aspp_conv2(x),
                    self.aspp_conv3(x), self.aspp_pool(x)]
        return self.proj_drop(self.proj_conv_bn_act(torch.cat(branches, dim=1)))
