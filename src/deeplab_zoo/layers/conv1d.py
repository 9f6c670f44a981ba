"""DeepLab2's ``Conv1D`` wrapper: a 1x1 convolution over a sequence + optional BN + act.

DeepLab2 applies it to ``[batch, length, channels]`` tensors (mask-transformer
memories, cluster centres); here the layout is PyTorch's ``[batch, channels, length]``.
Attribute names follow DeepLab2 (``conv``, ``batch_norm``) so checkpoint keys
``.../_conv/kernel`` (``[1, in, out]``) map onto ``conv.weight`` (``[out, in, 1]``).
"""
from __future__ import annotations

import torch
from torch import nn

from .activations import get_activation
from .conv import NormLayer, default_norm_layer


def batch_norm_1d(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Applies a BatchNorm2d-style ``norm`` (e.g. from a ``NormLayer`` factory) to NCL ``x``."""
    return norm(x.unsqueeze(-1)).squeeze(-1)


class Conv1D(nn.Module):
    """``conv`` (kernel size 1) -> optional ``batch_norm`` -> optional activation, on NCL."""

    def __init__(self, in_channels: int, out_channels: int, *, use_bias: bool = True,
                 use_bn: bool = False, activation: str | None = None,
                 norm_layer: NormLayer = default_norm_layer):
        super().__init__()
        if use_bn and use_bias:
            raise ValueError("Conv1D: use_bias and use_bn are mutually exclusive")
        self.conv = nn.Conv1d(in_channels, out_channels, 1, bias=use_bias)
        self.batch_norm = norm_layer(out_channels) if use_bn else None
        self.activation = get_activation(activation)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.batch_norm is not None:
            x = batch_norm_1d(self.batch_norm, x)
        return self.activation(x)
