"""Layer normalisation over the channel axis of NCHW maps (Keras ``LayerNormalization``).

DeepLab2 normalises NHWC tensors over their last (channel) axis; on our NCHW layout
that is a normalisation over dimension 1 at every pixel. Parameters are named
``weight``/``bias`` (Keras ``gamma``/``beta``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """``nn.LayerNorm(channels)`` applied to the channels of an NCHW tensor.

    Keras' default epsilon is 1e-3; every DeepLab2 use in kMaX/ConvNeXt passes 1e-6.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__(num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)
