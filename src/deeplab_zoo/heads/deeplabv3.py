"""DeepLabv3 head: ASPP + 3x3 classifier conv + 1x1 logits (DeepLab2 ``decoder/deeplabv3.py``)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..layers.conv import Conv2dSame, NormLayer, default_norm_layer
from .aspp import ASPP


class DeepLabV3Head(nn.Module):
    """Semantic segmentation head of DeepLabv3 on the ``feature_key`` endpoint."""

    def __init__(self, in_channels: int, num_classes: int, *, feature_key: str = "res5",
                 atrous_rates: Sequence[int] = (6, 12, 18), aspp_channels: int = 256,
                 decoder_channels: int = 256, norm_layer: NormLayer = default_norm_layer):
        super().__init__()
        self.feature_key = feature_key
        self.aspp = ASPP(in_channels, aspp_channels, atrous_rates, norm_layer=norm_layer)
        self.classifier_conv_bn_act = Conv2dSame(aspp_channels, decoder_channels, 3,
                                                 use_bias=False, use_bn=True, activation="relu",
                                                 norm_layer=norm_layer)
        self.final_conv = Conv2dSame(decoder_channels, num_classes, 1)

    #: DeepLab2 checkpoint item name -> our attribute path (see deeplab_zoo.weights).
    tf_checkpoint_items = {
        "deeplab_v3_aspp": "aspp",
        "classifier_conv_bn_act": "classifier_conv_bn_act",
        "semantic_last_layer": "final_conv",
    }

    def set_pool_size(self, pool_size: tuple[int, int] | None) -> None:
        self.aspp.set_pool_size(pool_size)

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = self.classifier_conv_bn_act(self.aspp(features[self.feature_key]))
        return {"semantic_logits": self.final_conv(x)}
