"""kMaX-DeepLab's transformer decoder with k-means cross-attention.

DeepLab2: ``model/transformer_decoder/kmax.py`` and the k-means path of
``model/layers/dual_path_transformer.py``. Mask slots are cluster centres. Each
layer (1) predicts mask logits with an auxiliary MaX-DeepLab head and assigns every
pixel to its arg-max cluster (hard assignment, no gradient), (2) adds the BN-projected
sum of the assigned pixels' values to each centre, (3) runs multi-head self-attention
between the centres and (4) a feed-forward network. Two layers run on each of the
pixel decoder's stride-32, 16 and 8 features; the final centres are projected to
class and mask embeddings for the prediction head.

Memories use the ``[N, channels, K]`` layout; pixel features are NCHW.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..layers.activations import get_activation
from ..layers.conv import NormLayer, default_norm_layer
from ..layers.conv1d import Conv1D, batch_norm_1d
from ..layers.drop_path import DropPath
from ..layers.dual_path_transformer import AttentionOperation
from .max_deeplab_head import MaXDeepLabHead


class KMaXTransformerLayer(nn.Module):
    """DeepLab2's ``DualPathTransformerLayer`` as kMaX configures it.

    Memory self-attention and k-means cross-attention only (no memory-to-pixel or
    pixel-to-memory attention), so the pixel features are not updated.

    Args:
        pixel_channels: channels of the (non-activated) pixel feature.
        memory_channels: channels of the cluster centres.
        num_classes / ignore_label: dataset, for the auxiliary clustering predictor.
        filters: base width (bottleneck = 2x, keys = 1x, values = 2x, as DeepLab2).
        drop_path_keep_prob: stochastic depth of the three memory updates (training).
    """

    def __init__(self, pixel_channels: int, memory_channels: int = 256, *, num_classes: int,
                 ignore_label: int, filters: int = 128, num_heads: int = 8,
                 bottleneck_expansion: float = 2, key_expansion: float = 1,
                 value_expansion: float = 2, feed_forward_network_channels: int = 2048,
                 pixel_space_channels: int = 128, drop_path_keep_prob: float = 1.0,
                 activation: str = "gelu", norm_layer: NormLayer = default_norm_layer):
        super().__init__()
        bottleneck = int(round(filters * bottleneck_expansion))
        key_depth = int(round(filters * key_expansion))
        value_depth = int(round(filters * value_expansion))
        if key_depth % num_heads or value_depth % num_heads:
            raise ValueError("key and value depths must be divisible by num_heads")
        self.num_heads = num_heads
        self.key_depth = key_depth
        self.value_depth = value_depth
        self.activation = get_activation(activation)
        conv = dict(use_bias=False, use_bn=True, norm_layer=norm_layer)
        self.memory_conv1_bn_act = Conv1D(memory_channels, bottleneck, activation=activation,
                                          **conv)
        self.pixel_conv1_bn_act = Conv1D(pixel_channels, bottleneck, activation=activation,
                                         **conv)
        self.memory_qkv_conv_bn = Conv1D(bottleneck, 2 * key_depth + value_depth, **conv)
        self.pixel_v_conv_bn = Conv1D(bottleneck, value_depth, **conv)
        self.memory_attention = AttentionOperation(num_heads, value_depth // num_heads,
                                                   activation=activation, norm_layer=norm_layer)
        self.auxiliary_clustering_predictor = MaXDeepLabHead(
            bottleneck, num_classes, ignore_label=ignore_label, memory_channels=bottleneck,
            pixel_space_channels=pixel_space_channels, activation=activation,
            norm_layer=norm_layer)
        self.memory_conv3_bn = Conv1D(value_depth, memory_channels, **conv)
        self.memory_ffn_conv1_bn_act = Conv1D(memory_channels, feed_forward_network_channels,
                                              activation=activation, **conv)
        self.memory_ffn_conv2_bn = Conv1D(feed_forward_network_channels, memory_channels,
                                          **conv)
        self.kmeans_memory_batch_norm_retrieved_value = norm_layer(value_depth)
        self.kmeans_memory_conv3_bn = Conv1D(value_depth, memory_channels, **conv)
        self.drop_path_kmeans = DropPath(drop_path_keep_prob)
        self.drop_path_attention = DropPath(drop_path_keep_prob)
        self.drop_path_ffn = DropPath(drop_path_keep_prob)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, heads * d, L]`` -> ``[N, heads, L, d]``."""
        n, channels, length = x.shape
        return x.reshape(n, self.num_heads, channels // self.num_heads, length).transpose(2, 3)

    def forward(self, pixel: torch.Tensor, memory: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``pixel`` NCHW (not activated), ``memory`` ``[N, C, K]`` -> (new memory, the
        auxiliary predictor's outputs for this layer)."""
        n, _, height, width = pixel.shape
        num_slots = memory.shape[-1]
        memory_space = self.memory_conv1_bn_act(memory)
        pixel_space = self.pixel_conv1_bn_act(self.activation(pixel).flatten(2))

        qkv = self.memory_qkv_conv_bn(memory_space)
        query, key, value = torch.split(qkv, [self.key_depth, self.key_depth, self.value_depth],
                                        dim=1)
        query, key = self._heads(query), self._heads(key)
        value = self._heads(value)
        pixel_value = self.pixel_v_conv_bn(pixel_space)

        # k-means assignment step: every pixel joins its arg-max mask slot.
        auxiliary = self.auxiliary_clustering_predictor({
            "feature_panoptic": pixel_space.reshape(n, -1, height, width),
            "transformer_class_feature": memory_space,
            "transformer_mask_feature": memory_space,
        })
        assignment = auxiliary["pixel_space_mask_logits"].detach().argmax(dim=1).flatten(1)
        # k-means update step: sum the values of each cluster's pixels.
        index = assignment[:, None, :].expand(-1, pixel_value.shape[1], -1)
        clustered = pixel_value.new_zeros(n, pixel_value.shape[1], num_slots)
        clustered = clustered.scatter_add(2, index, pixel_value)
        clustered = batch_norm_1d(self.kmeans_memory_batch_norm_retrieved_value, clustered)
        output = memory + self.drop_path_kmeans(self.kmeans_memory_conv3_bn(clustered))

        attended = self.memory_attention(query, key, value)
        output = output + self.drop_path_attention(self.memory_conv3_bn(attended))
        output = self.activation(output)

        update = self.memory_ffn_conv2_bn(self.memory_ffn_conv1_bn_act(output))
        output = self.activation(output + self.drop_path_ffn(update))
        return output, auxiliary


class KMaXTransformerBlockGroup(nn.Module):
    """DeepLab2 wraps each layer in a one-block ``BlockGroup`` (``block1_transformer``)."""

    def __init__(self, layer: KMaXTransformerLayer):
        super().__init__()
        self.block1_transformer = layer

    def forward(self, pixel: torch.Tensor, memory: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.block1_transformer(pixel, memory)


class KMaXTransformerDecoder(nn.Module):
    """Cluster centres refined by k-means cross-attention (DeepLab2 ``KMaXTransformerDecoder``).

    Args:
        pixel_channels: channels of the pixel decoder features at strides 32, 16, 8.
        num_classes / ignore_label: dataset, for the auxiliary clustering predictors.
        num_mask_slots: number of cluster centres K (256 Cityscapes, 128 COCO/ADE20K).
        num_blocks: transformer layers per stride (32, 16, 8).
        drop_path_keep_prob: stochastic depth of the layers (training only).
    """

    def __init__(self, pixel_channels: Sequence[int], *, num_classes: int, ignore_label: int,
                 num_mask_slots: int = 128, num_blocks: Sequence[int] = (2, 2, 2),
                 memory_channels: int = 256, pixel_space_channels: int = 128,
                 drop_path_keep_prob: float = 1.0, activation: str = "gelu",
                 norm_layer: NormLayer = default_norm_layer):
        super().__init__()
        if len(pixel_channels) != 3 or len(num_blocks) != 3:
            raise ValueError("KMaXTransformerDecoder needs 3 feature levels (strides 32, 16, 8)")
        self.num_blocks = tuple(num_blocks)
        self.kmax_decoder = nn.ModuleList(
            KMaXTransformerBlockGroup(KMaXTransformerLayer(
                channels, memory_channels, num_classes=num_classes, ignore_label=ignore_label,
                pixel_space_channels=pixel_space_channels,
                drop_path_keep_prob=drop_path_keep_prob, activation=activation,
                norm_layer=norm_layer))
            for channels, count in zip(pixel_channels, num_blocks) for _ in range(count))
        self.cluster_centers = nn.Parameter(torch.empty(1, num_mask_slots, memory_channels))
        nn.init.trunc_normal_(self.cluster_centers, std=1.0, a=-2.0, b=2.0)
        conv = dict(use_bias=False, use_bn=True, activation=activation, norm_layer=norm_layer)
        self.class_embedding_projection = Conv1D(memory_channels, memory_channels, **conv)
        self.mask_embedding_projection = Conv1D(memory_channels, memory_channels, **conv)
        self.num_mask_slots = num_mask_slots

    def forward(self, features: Sequence[torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor, list[dict[str, torch.Tensor]]]:
        """``features``: pixel decoder maps at strides 32, 16, 8. Returns the class and
        mask embeddings ``[N, C, K]`` and the auxiliary predictions of every layer."""
        batch = features[0].shape[0]
        memory = self.cluster_centers.transpose(1, 2).expand(batch, -1, -1)
        auxiliary = []
        layers = iter(self.kmax_decoder)
        for feature, count in zip(features, self.num_blocks):
            for _ in range(count):
                memory, aux = next(layers)(feature, memory)
                auxiliary.append(aux)
        return (self.class_embedding_projection(memory),
                self.mask_embedding_projection(memory), auxiliary)
