"""DeepLabv3+ head: ASPP, low-level projection, fusion (DeepLab2 ``decoder/deeplabv3plus.py``)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..layers.conv import Conv2dSame, NormLayer, StackedConv2dSame, default_norm_layer
from ..layers.resize import resize_align_corners
from .aspp import ASPP


class DeepLabV3PlusHead(nn.Module):
    """ASPP on ``feature_key``, upsampled and fused with ``low_level_key`` features."""

    def __init__(self, in_channels: int, low_level_channels: int, num_classes: int, *,
                 feature_key: str = "res5", low_level_key: str = "res2",
                 low_level_project_channels: int = 48, atrous_rates: Sequence[int] = (6, 12, 18),
                 aspp_channels: int = 256, decoder_channels: int = 256,
                 norm_layer: NormLayer = default_norm_layer):
        super().__init__()
        self.feature_key = feature_key
        self.low_level_key = low_level_key
        self.aspp = ASPP(in_channels, aspp_channels, atrous_rates, norm_layer=norm_layer)
        self.project_conv_bn_act = Conv2dSame(low_level_channels, low_level_project_channels, 1,
                                              use_bias=False, use_bn=True, activation="relu",
                                              norm_layer=norm_layer)
        self.fuse = StackedConv2dSame(2, "depthwise_separable_conv",
                                      aspp_channels + low_level_project_channels,
                                      decoder_channels, 3, use_bias=False, use_bn=True,
                                      activation="relu", norm_layer=norm_layer)
        self.final_conv = Conv2dSame(decoder_channels, num_classes, 1)

    tf_checkpoint_items = {
        "deeplab_v3plus_aspp": "aspp",
        "deeplab_v3plus_project_conv_bn_act": "project_conv_bn_act",
        "deeplab_v3plus_fuse": "fuse",
        "semantic_last_layer": "final_conv",
    }

    def set_pool_size(self, pool_size: tuple[int, int] | None) -> None:
        self.aspp.set_pool_size(pool_size)

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        low = self.project_conv_bn_act(features[self.low_level_key])
        high = resize_align_corners(self.aspp(features[self.feature_key]), low.shape[-2:])
        x = self.fuse(torch.cat([high, low], dim=1))
        return {"semantic_logits": self.final_conv(x)}
