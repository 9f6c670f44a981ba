"""The MaX-DeepLab prediction head (DeepLab2 ``model/decoder/max_deeplab.py``).

Shared by MaX-DeepLab and kMaX-DeepLab (also as kMaX's per-layer auxiliary
clustering predictor). From pixel features and mask-slot embeddings it predicts:

* ``pixel_space_normalized_feature`` - 5x5 separable conv head, BN, L2 normalisation;
* ``transformer_class_logits`` ``[N, K, C + 1]`` - 1x1 conv of the class embeddings,
  with DeepLab2's constant bias towards the void (last) channel;
* ``pixel_space_mask_logits`` ``[N, K, H, W]`` - dot products of the normalised pixel
  features with the mask embeddings (after a 1x1 conv + BN), then a one-channel BN;
* ``semantic_logits`` - optional auxiliary semantic head (optionally on an auxiliary
  Panoptic-DeepLab-style semantic decoder when the semantic feature is coarser).

Memories (class/mask features) use the ``[N, channels, K]`` layout.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..layers.conv import NormLayer, default_norm_layer
from ..layers.conv1d import Conv1D
from .panoptic_deeplab import PanopticDeepLabSingleDecoder, PanopticDeepLabSingleHead


def transformer_class_head_num_classes(num_classes: int, ignore_label: int) -> int:
    """Class channels of the transformer class head: the dataset classes plus void,
    unless the ignore label is itself one of the classes (COCO: label 0)."""
    return num_classes + 1 if ignore_label >= num_classes else num_classes


def void_prior_bias(num_channels: int, void_prior_prob: float = 0.9) -> list[float]:
    """DeepLab2's constant logit bias: only the last (void) channel, log((C-1) p / (1-p))."""
    bias = [0.0] * num_channels
    bias[-1] = math.log((num_channels - 1) * void_prior_prob / (1 - void_prior_prob))
    return bias


def l2_normalize(x: torch.Tensor, dim: int = 1, eps: float = 1e-12) -> torch.Tensor:
    """``x * rsqrt(max(sum(x^2), eps))`` as ``tf.math.l2_normalize``."""
    return x * torch.rsqrt(torch.clamp((x * x).sum(dim=dim, keepdim=True), min=eps))


class MaXDeepLabHead(nn.Module):
    """Pixel-space, mask and class heads of MaX-DeepLab (+ optional auxiliary semantic head).

    Args:
        panoptic_channels: channels of ``feature_panoptic`` (the pixel decoder output).
        num_classes: dataset classes (the auxiliary semantic head's output channels).
        ignore_label: the dataset's ignore label (decides the void channel, see
            :func:`transformer_class_head_num_classes`).
        memory_channels: channels of the class / mask embeddings.
        pixel_space_head_channels / pixel_space_channels: head width and the dimension
            of the normalised pixel features (= mask embedding dimension).
        semantic_channels: channels of ``feature_semantic``; None = no semantic head.
        semantic_decoder_features: endpoint channels (``feature_semantic``, ``res3``,
            ``res2``) for the auxiliary semantic decoder; None = no decoder.
    """

    def __init__(self, panoptic_channels: int, num_classes: int, *, ignore_label: int,
                 memory_channels: int = 256, pixel_space_head_channels: int = 256,
                 pixel_space_channels: int = 128, semantic_channels: int | None = None,
                 semantic_head_channels: int = 256,
                 semantic_decoder_features: Mapping[str, int] | None = None,
                 semantic_low_level: Sequence[tuple[str, int]] = (("res3", 64), ("res2", 32)),
                 atrous_rates: Sequence[int] = (6, 12, 18), aspp_channels: int = 256,
                 decoder_channels: int = 256, activation: str = "relu",
                 norm_layer: NormLayer = default_norm_layer):
        super().__init__()
        self.has_semantic_head = semantic_channels is not None
        self.has_semantic_decoder = self.has_semantic_head and semantic_decoder_features is not None
        if self.has_semantic_decoder:
            self.semantic_decoder = PanopticDeepLabSingleDecoder(
                semantic_decoder_features, feature_key="feature_semantic",
                low_level=semantic_low_level, atrous_rates=atrous_rates,
                aspp_channels=aspp_channels, decoder_channels=decoder_channels,
                norm_layer=norm_layer, activation=activation)
            semantic_channels = self.semantic_decoder.out_channels
        if self.has_semantic_head:
            self.semantic_head = PanopticDeepLabSingleHead(
                semantic_channels, semantic_head_channels, num_classes,
                norm_layer=norm_layer, activation=activation)
        self.pixel_space_head = PanopticDeepLabSingleHead(
            panoptic_channels, pixel_space_head_channels, pixel_space_channels,
            norm_layer=norm_layer, activation=activation)
        self.transformer_mask_head = Conv1D(memory_channels, pixel_space_channels,
                                            use_bias=False, use_bn=True, norm_layer=norm_layer)
        class_channels = transformer_class_head_num_classes(num_classes, ignore_label)
        self.transformer_class_head = Conv1D(memory_channels, class_channels, use_bias=True)
        self.pixel_space_feature_batch_norm = norm_layer(pixel_space_channels)
        self.pixel_space_mask_batch_norm = norm_layer(1)
        self.void_bias = void_prior_bias(class_channels)
        self.num_classes = num_classes
        self.num_class_channels = class_channels

    @property
    def tf_checkpoint_items(self) -> dict[str, str]:
        """DeepLab2 checkpoint item names -> attribute paths below this module."""
        items = {name: name for name in (
            "pixel_space_head", "transformer_mask_head", "transformer_class_head",
            "pixel_space_feature_batch_norm", "pixel_space_mask_batch_norm")}
        if self.has_semantic_decoder:
            items["semantic_decoder"] = "semantic_decoder"
        if self.has_semantic_head:
            items["semantic_head_without_last_layer"] = "semantic_head.conv_block"
            items["semantic_last_layer"] = "semantic_head.final_conv"
        return items

    def set_pool_size(self, pool_size: tuple[int, int] | None) -> None:
        """ASPP image pooling window of the auxiliary semantic decoder (None = global)."""
        if self.has_semantic_decoder:
            self.semantic_decoder.aspp.set_pool_size(pool_size)

    def forward(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``features``: ``feature_panoptic`` NCHW, ``transformer_class_feature`` and
        ``transformer_mask_feature`` ``[N, C, K]``; ``feature_semantic`` (+ ``res3``,
        ``res2`` for the decoder) when there is a semantic head."""
        results = {}
        panoptic = features["feature_panoptic"]
        if self.has_semantic_head:
            semantic = features["feature_semantic"]
            if self.has_semantic_decoder and semantic.shape[-2:] != panoptic.shape[-2:]:
                semantic = self.semantic_decoder(features)
            results["semantic_logits"] = self.semantic_head(semantic)

        pixel = self.pixel_space_feature_batch_norm(self.pixel_space_head(panoptic))
        pixel = l2_normalize(pixel, dim=1)
        results["pixel_space_normalized_feature"] = pixel

        class_logits = self.transformer_class_head(features["transformer_class_feature"])
        results["transformer_class_logits"] = (class_logits.transpose(1, 2)
                                               + class_logits.new_tensor(self.void_bias))

        mask_kernel = self.transformer_mask_head(features["transformer_mask_feature"])
        logits = torch.einsum("ndhw,ndk->nkhw", pixel, mask_kernel)
        n, k, h, w = logits.shape
        logits = self.pixel_space_mask_batch_norm(logits.reshape(n, 1, k, h * w))
        results["pixel_space_mask_logits"] = logits.reshape(n, k, h, w)
        return results
