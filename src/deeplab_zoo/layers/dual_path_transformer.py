"""MaX-DeepLab's dual-path transformer layer (DeepLab2 ``model/layers/dual_path_transformer.py``).

A global memory path (``[N, C, K]``: K mask slots) runs beside the pixel path CNN.
One layer, placed after a residual block of the pixel path, performs:

* memory-to-pixel + memory-to-memory attention: the memory queries attend to the
  concatenation of the pixel keys/values and the memory keys/values (pixels first),
  then ``memory_conv3_bn`` and a residual add, the activation, and an optional
  feed-forward network (``memory_ffn_conv1_bn_act`` -> ``memory_ffn_conv2_bn``, residual,
  activation);
* pixel-to-memory feedback attention: the pixel queries attend to the memory
  keys/values of the layer's input memory, then ``pixel_conv3_bn`` and a residual add.
  The pixel output is NOT activated (as every residual block output).

Both paths are first projected by 1x1 convs (``memory_conv1_bn_act``, and
``pixel_conv1_bn_act`` on the activated pixels) to the bottleneck width, then to
queries/keys/values (``*_qkv_conv_bn``; ``memory_query_conv_bn`` / ``pixel_kv_conv_bn``
when only part of them is needed). The attention core is :class:`AttentionOperation`
(batch norm on the similarities per head, softmax, batch norm on the retrieved values
per head and channel, activation). The k-means cross-attention of kMaX-DeepLab, which
DeepLab2 builds from the same class, lives in
:mod:`deeplab_zoo.heads.kmax_transformer_decoder`.

Layouts: memories ``[N, C, K]``, pixels NCHW; channels are head-major
(``head * depth + d``) as DeepLab2's reshapes make them.
"""
from __future__ import annotations

import torch
from torch import nn

from .activations import get_activation
from .axial_attention import norm_layer_settings
from .conv import NormLayer, default_norm_layer
from .conv1d import Conv1D
from .drop_path import DropPath
from .keras_batch_norm import KerasAxesBatchNorm
from .positional_encodings import truncated_normal_

_TRANSFORMER_ACTIVATIONS = ("softmax", "sigmoid")


def _split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``[N, heads * d, L]`` -> ``[N, heads, L, d]``."""
    n, channels, length = x.shape
    return x.reshape(n, num_heads, channels // num_heads, length).transpose(2, 3)


def _zero_gamma(conv: Conv1D) -> None:
    """DeepLab2 starts the BN gamma of each residual branch's last conv at zero."""
    weight = getattr(conv.batch_norm, "weight", None)
    if isinstance(weight, nn.Parameter):
        with torch.no_grad():
            weight.zero_()


class AttentionOperation(nn.Module):
    """``act(BN_v(attention(BN_s(q k^T)) v))``: DeepLab2's multi-head ``AttentionOperation``.

    ``batch_norm_similarity`` normalises the ``[N, heads, L, M]`` logits per head;
    ``batch_norm_retrieved_value`` keeps DeepLab2's ``[1, heads, 1, depth]`` parameters.

    Args:
        num_heads / value_depth_per_head: attention layout.
        activation: applied to the retrieved values.
        transformer_activation: ``'softmax'`` (over keys) or ``'sigmoid'``.
    """

    def __init__(self, num_heads: int, value_depth_per_head: int, *, activation: str = "relu",
                 transformer_activation: str = "softmax",
                 norm_layer: NormLayer = default_norm_layer):
        super().__init__()
        transformer_activation = transformer_activation.lower()
        if transformer_activation not in _TRANSFORMER_ACTIVATIONS:
            raise ValueError(f"transformer_activation must be one of {_TRANSFORMER_ACTIVATIONS}, "
                             f"got {transformer_activation!r}")
        eps, momentum = norm_layer_settings(norm_layer)
        self.batch_norm_similarity = norm_layer(num_heads)
        self.batch_norm_retrieved_value = KerasAxesBatchNorm(
            (1, num_heads, 1, value_depth_per_head), eps=eps,
            momentum=0.01 if momentum is None else momentum)
        self.activation = get_activation(activation)
        self.transformer_activation = transformer_activation

    def forward(self, query: torch.Tensor, key: torch.Tensor,
                value: torch.Tensor) -> torch.Tensor:
        """``query`` ``[N, h, L, d]``, ``key`` ``[N, h, M, d]``, ``value`` ``[N, h, M, dv]``
        -> ``[N, h * dv, L]``."""
        logits = self.batch_norm_similarity(torch.einsum("nhld,nhmd->nhlm", query, key))
        if self.transformer_activation == "softmax":
            weights = torch.softmax(logits, dim=-1)
        else:
            weights = torch.sigmoid(logits)
        retrieved = torch.einsum("nhlm,nhmd->nhld", weights, value)
        retrieved = self.activation(self.batch_norm_retrieved_value(retrieved))
        n, heads, length, depth = retrieved.shape
        return retrieved.permute(0, 1, 3, 2).reshape(n, heads * depth, length)


class DualPathTransformerLayer(nn.Module):
    """One MaX-DeepLab dual-path transformer layer (pixel <-> memory attention).

    Args:
        pixel_channels: channels of the (non-activated) pixel input.
        memory_channels: channels of the memory.
        filters: base width: bottleneck ``filters * bottleneck_expansion``, keys
            ``filters * key_expansion``, values ``filters * value_expansion`` (rounded).
        num_heads: attention heads.
        feed_forward_network_channels: width of the memory FFN (0: no FFN).
        use_memory_self_attention / use_memory2pixel_feedback_attention /
            use_pixel2memory_feedback_attention: which attentions run (DeepLab2 flags).
        transformer_activation: ``'softmax'`` or ``'sigmoid'``.
        drop_path_keep_prob: stochastic depth of the three residual updates (training).
    """

    def __init__(self, pixel_channels: int, memory_channels: int, *, filters: int = 128,
                 num_heads: int = 8, bottleneck_expansion: float = 2, key_expansion: float = 1,
                 value_expansion: float = 2, feed_forward_network_channels: int = 2048,
                 use_memory_self_attention: bool = True,
                 use_memory2pixel_feedback_attention: bool = True,
                 use_pixel2memory_feedback_attention: bool = True,
                 transformer_activation: str = "softmax", drop_path_keep_prob: float = 1.0,
                 activation: str = "relu", norm_layer: NormLayer = default_norm_layer):
        super().__init__()
        bottleneck = int(round(filters * bottleneck_expansion))
        key_depth = int(round(filters * key_expansion))
        value_depth = int(round(filters * value_expansion))
        if key_depth % num_heads:
            raise ValueError("Total_key_depth should be divisible by num_heads.")
        if value_depth % num_heads:
            raise ValueError("Total_value_depth should be divisible by num_heads.")
        if not use_memory2pixel_feedback_attention:
            raise ValueError("MaX-DeepLab's dual-path layer needs memory2pixel attention (the "
                             "k-means variant is kMaX-DeepLab's KMaXTransformerLayer)")
        self.num_heads = num_heads
        self.key_depth = key_depth
        self.value_depth = value_depth
        self.use_memory_self_attention = use_memory_self_attention
        self.use_pixel2memory_feedback_attention = use_pixel2memory_feedback_attention
        self.activation = get_activation(activation)
        conv = dict(use_bias=False, use_bn=True, norm_layer=norm_layer)
        init_std = bottleneck ** -0.5

        self.memory_conv1_bn_act = Conv1D(memory_channels, bottleneck, activation=activation,
                                          **conv)
        self.pixel_conv1_bn_act = Conv1D(pixel_channels, bottleneck, activation=activation,
                                         **conv)
        self.memory_qkv_conv_bn = self.memory_query_conv_bn = None
        if use_memory_self_attention or use_pixel2memory_feedback_attention:
            self.memory_qkv_conv_bn = Conv1D(bottleneck, 2 * key_depth + value_depth, **conv)
            truncated_normal_(self.memory_qkv_conv_bn.conv.weight, init_std)
        else:
            self.memory_query_conv_bn = Conv1D(bottleneck, key_depth, **conv)
            truncated_normal_(self.memory_query_conv_bn.conv.weight, init_std)
        self.pixel_qkv_conv_bn = self.pixel_kv_conv_bn = None
        if use_pixel2memory_feedback_attention:
            self.pixel_qkv_conv_bn = Conv1D(bottleneck, 2 * key_depth + value_depth, **conv)
            truncated_normal_(self.pixel_qkv_conv_bn.conv.weight, init_std)
        else:
            self.pixel_kv_conv_bn = Conv1D(bottleneck, key_depth + value_depth, **conv)
            truncated_normal_(self.pixel_kv_conv_bn.conv.weight, init_std)

        attention = dict(activation=activation, transformer_activation=transformer_activation,
                         norm_layer=norm_layer)
        self.memory_attention = AttentionOperation(num_heads, value_depth // num_heads,
                                                   **attention)
        self.pixel_attention = None
        if use_pixel2memory_feedback_attention:
            self.pixel_attention = AttentionOperation(num_heads, value_depth // num_heads,
                                                      **attention)

        self.memory_conv3_bn = Conv1D(value_depth, memory_channels, **conv)
        _zero_gamma(self.memory_conv3_bn)
        self.memory_ffn_conv1_bn_act = self.memory_ffn_conv2_bn = None
        if feed_forward_network_channels > 0:
            self.memory_ffn_conv1_bn_act = Conv1D(memory_channels, feed_forward_network_channels,
                                                  activation=activation, **conv)
            self.memory_ffn_conv2_bn = Conv1D(feed_forward_network_channels, memory_channels,
                                              **conv)
            _zero_gamma(self.memory_ffn_conv2_bn)
        self.pixel_conv3_bn = None
        if use_pixel2memory_feedback_attention:
            self.pixel_conv3_bn = Conv1D(value_depth, pixel_channels, **conv)
            _zero_gamma(self.pixel_conv3_bn)

        self.drop_path_pixel = DropPath(drop_path_keep_prob)
        self.drop_path_attention = DropPath(drop_path_keep_prob)
        self.drop_path_ffn = DropPath(drop_path_keep_prob)

    def forward(self, pixel: torch.Tensor, memory: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``pixel`` NCHW (not activated), ``memory`` ``[N, C, K]`` -> (pixel, memory)."""
        n, pixel_channels, height, width = pixel.shape
        pixel_input = pixel.flatten(2)
        memory_space = self.memory_conv1_bn_act(memory)
        pixel_space = self.pixel_conv1_bn_act(self.activation(pixel_input))
        heads = self.num_heads
        keys_values = [self.key_depth, self.key_depth, self.value_depth]

        if self.memory_qkv_conv_bn is not None:
            memory_query, memory_key, memory_value = torch.split(
                self.memory_qkv_conv_bn(memory_space), keys_values, dim=1)
            memory_key = _split_heads(memory_key, heads)
            memory_value = _split_heads(memory_value, heads)
        else:
            memory_query = self.memory_query_conv_bn(memory_space)
        memory_query = _split_heads(memory_query, heads)

        if self.pixel_qkv_conv_bn is not None:
            pixel_query, pixel_key, pixel_value = torch.split(
                self.pixel_qkv_conv_bn(pixel_space), keys_values, dim=1)
            pixel_query = _split_heads(pixel_query, heads)
        else:
            pixel_key, pixel_value = torch.split(self.pixel_kv_conv_bn(pixel_space),
                                                 keys_values[1:], dim=1)
        pixel_key = _split_heads(pixel_key, heads)
        pixel_value = _split_heads(pixel_value, heads)

        # Memory-to-pixel (+ memory-to-memory) attention: pixel keys first, then memory.
        keys, values = pixel_key, pixel_value
        if self.use_memory_self_attention:
            keys = torch.cat([pixel_key, memory_key], dim=2)
            values = torch.cat([pixel_value, memory_value], dim=2)
        attended = self.memory_conv3_bn(self.memory_attention(memory_query, keys, values))
        memory_output = self.activation(memory + self.drop_path_attention(attended))
        if self.memory_ffn_conv1_bn_act is not None:
            update = self.memory_ffn_conv2_bn(self.memory_ffn_conv1_bn_act(memory_output))
            memory_output = self.activation(memory_output + self.drop_path_ffn(update))

        # Pixel-to-memory feedback attention, on the layer's input memory.
        pixel_output = pixel_input
        if self.pixel_attention is not None:
            feedback = self.pixel_conv3_bn(self.pixel_attention(pixel_query, memory_key,
                                                                memory_value))
            pixel_output = pixel_input + self.drop_path_pixel(feedback)
        return pixel_output.reshape(n, pixel_channels, height, width), memory_output
