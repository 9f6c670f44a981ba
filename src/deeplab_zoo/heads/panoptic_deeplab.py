"""Panoptic-DeepLab heads: dual ASPP, dual decoder, semantic/centre/offset heads.

Follows DeepLab2's ``model/decoder/panoptic_deeplab.py``. The semantic and the
instance branch each have their own ASPP + decoder that fuses low-level features
from coarse to fine; three small heads predict semantic logits, the instance
centre heatmap and the (dy, dx) centre offsets.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..layers.conv import Conv2dSame, NormLayer, StackedConv2dSame, default_norm_layer
from ..layers.resize import resize_align_corners
from .aspp import ASPP

LowLevel = Sequence[tuple[str, int]]  # (endpoint name, projection channels), coarse to fine


class PanopticDeepLabSingleDecoder(nn.Module):
    """ASPP on the high-level feature, then one projection + fusion per low-level feature."""

    def __init__(self, feature_channels: Mapping[str, int], *, feature_key: str,
                 low_level: LowLevel, atrous_rates: Sequence[int], aspp_channels: int,
                 decoder_channels: int, aspp_use_only_1x1_proj_conv: bool = False,
                 decoder_conv_type: str = "depthwise_separable_conv",
                 norm_layer: NormLayer = default_norm_layer, activation: str = "relu"):
        super().__init__()
        self.feature_key = feature_key
        self.low_level_keys = [key for key, _ in low_level]
        self.aspp = ASPP(feature_channels[feature_key], aspp_channels, atrous_rates,
                         use_only_1x1_proj_conv=aspp_use_only_1x1_proj_conv,
                         norm_layer=norm_layer, activation=activation)
        channels = aspp_channels
        for index, (key, project_channels) in enumerate(low_level, start=1):
            self.add_module(f"low_level_conv{index}", Conv2dSame(
                feature_channels[key], project_channels, 1, use_bias=False, use_bn=True,
                activation=activation, norm_layer=norm_layer))
            self.add_module(f"fusion_conv{index}", StackedConv2dSame(
                1, decoder_conv_type, channels + project_channels, decoder_channels, 5,
                use_bias=False, use_bn=True, activation=activation, norm_layer=norm_layer))
            channels = decoder_channels
        self.out_channels = channels

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        x = self.aspp(features[self.feature_key])
        for index, key in enumerate(self.low_level_keys, start=1):
            low = getattr(self, f"low_level_conv{index}")(features[key])
            x = resize_align_corners(x, low.shape[-2:])
            x = getattr(self, f"fusion_conv{index}")(torch.cat([x, low], dim=1))
        return x


class PanopticDeepLabSingleHead(nn.Module):
    """One 5x5 (separable) conv block and a 1x1 prediction conv with bias."""

    def __init__(self, in_channels: int, head_channels: int, out_channels: int, *,
                 conv_type: str = "depthwise_separable_conv",
                 norm_layer: NormLayer = default_norm_layer, activation: str = "relu"):
        super().__init__()
        self.conv_block = StackedConv2dSame(1, conv_type, in_channels, head_channels, 5,
                                            use_bias=False, use_bn=True, activation=activation,
                                            norm_layer=norm_layer)
        self.final_conv = nn.Conv2d(head_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_conv(self.conv_block(x))


class PanopticDeepLabHead(nn.Module):
    """Semantic branch plus (optionally) the class-agnostic instance branch."""

    def __init__(self, feature_channels: Mapping[str, int], num_classes: int, *,
                 feature_key: str = "res5", atrous_rates: Sequence[int] = (3, 6, 9),
                 aspp_channels: int = 256, decoder_channels: int = 256,
                 low_level: LowLevel = (("res3", 64), ("res2", 32)),
                 semantic_head_channels: int = 256, instance: bool = True,
                 instance_low_level: LowLevel = (("res3", 32), ("res2", 16)),
                 instance_atrous_rates: Sequence[int] | None = None,
                 instance_aspp_channels: int = 256, instance_decoder_channels: int = 128,
                 center_head_channels: int = 32, regression_head_channels: int = 32,
                 aspp_use_only_1x1_proj_conv: bool = False,
                 decoder_conv_type: str = "depthwise_separable_conv",
                 head_conv_type: str = "depthwise_separable_conv",
                 norm_layer: NormLayer = default_norm_layer, activation: str = "relu"):
        super().__init__()
        common = dict(aspp_use_only_1x1_proj_conv=aspp_use_only_1x1_proj_conv,
                      decoder_conv_type=decoder_conv_type, norm_layer=norm_layer,
                      activation=activation)
        head_args = dict(conv_type=head_conv_type, norm_layer=norm_layer, activation=activation)
        self.semantic_decoder = PanopticDeepLabSingleDecoder(
            feature_channels, feature_key=feature_key, low_level=low_level,
            atrous_rates=atrous_rates, aspp_channels=aspp_channels,
            decoder_channels=decoder_channels, **common)
        self.semantic_head = PanopticDeepLabSingleHead(
            self.semantic_decoder.out_channels, semantic_head_channels, num_classes, **head_args)
        self.has_instance = instance
        if instance:
            self.instance_decoder = PanopticDeepLabSingleDecoder(
                feature_channels, feature_key=feature_key, low_level=instance_low_level,
                atrous_rates=instance_atrous_rates or atrous_rates,
                aspp_channels=instance_aspp_channels,
                decoder_channels=instance_decoder_channels, **common)
            channels = self.instance_decoder.out_channels
            self.instance_center_head = PanopticDeepLabSingleHead(
                channels, center_head_channels, 1, **head_args)
            self.instance_regression_head = PanopticDeepLabSingleHead(
                channels, regression_head_channels, 2, **head_args)

    @property
    def tf_checkpoint_items(self) -> dict[str, str]:
        items = {
            "semantic_decoder": "semantic_decoder",
            "semantic_head_without_last_layer": "semantic_head.conv_block",
            "semantic_last_layer": "semantic_head.final_conv",
        }
        if self.has_instance:
            items.update({
                "instance_decoder": "instance_decoder",
                "instance_center_head_without_last_layer": "instance_center_head.conv_block",
                "instance_center_head_last_layer": "instance_center_head.final_conv",
                "instance_regression_head_without_last_layer":
                    "instance_regression_head.conv_block",
                "instance_regression_head_last_layer": "instance_regression_head.final_conv",
            })
        return items

    def set_pool_size(self, pool_size: tuple[int, int] | None) -> None:
        self.semantic_decoder.aspp.set_pool_size(pool_size)
        if self.has_instance:
            self.instance_decoder.aspp.set_pool_size(pool_size)

    def forward(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {"semantic_logits": self.semantic_head(self.semantic_decoder(features))}
        if self.has_instance:
            instance_features = self.instance_decoder(features)
            out["center_heatmap"] = self.instance_center_head(instance_features)
            out["offset_map"] = self.instance_regression_head(instance_features)
        return out
