"""Squeeze-and-excite layers (DeepLab2 ``model/layers/squeeze_and_excite.py``).

* :class:`SqueezeAndExcite` - the original two-layer SE (reduce, activation,
  expand, gating). MobileNetV3's inverted bottlenecks use it with ``relu`` inside
  and a plain ``sigmoid`` gate (DeepLab2's ``InvertedBottleneckBlock`` defaults),
  not the hard sigmoid of the MobileNetV3 paper.
* :class:`SimplifiedSqueezeAndExcite` - one 1x1 conv and a hard-sigmoid gate
  (CenterMask), used by DeepLab2's axial blocks.
"""
from __future__ import annotations

import torch
from torch import nn

from .activations import get_activation
from .utils import make_divisible


class SqueezeAndExcite(nn.Module):
    """``x * gate(expand(act(reduce(mean_hw(x)))))``.

    The reduced width is ``make_divisible(max(1, int(in_filters * se_ratio)),
    divisible_by)``; ``out_filters`` must equal the channels of the input it gates.
    """

    def __init__(self, in_filters: int, out_filters: int, se_ratio: float, *,
                 divisible_by: int = 1, activation: str = "relu",
                 gating_activation: str = "sigmoid"):
        super().__init__()
        reduced = make_divisible(max(1, int(in_filters * se_ratio)), divisible_by)
        self.se_reduce = nn.Conv2d(out_filters, reduced, 1, bias=True)
        self.se_expand = nn.Conv2d(reduced, out_filters, 1, bias=True)
        self.activation = get_activation(activation)
        self.gating_activation = get_activation(gating_activation)
        self.reduced_filters = reduced

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        s = self.activation(self.se_reduce(s))
        s = self.gating_activation(self.se_expand(s))
        return s * x


class SimplifiedSqueezeAndExcite(nn.Module):
    """``hard_sigmoid(conv1x1(mean_hw(x))) * x`` with a single biased 1x1 conv."""

    def __init__(self, in_channels: int, squeeze_channels: int):
        super().__init__()
        self.se_conv = nn.Conv2d(in_channels, squeeze_channels, 1, bias=True)
        self.hard_sigmoid = get_activation("hard_sigmoid")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3), keepdim=True)
        return self.hard_sigmoid(self.se_conv(pooled)) * x
