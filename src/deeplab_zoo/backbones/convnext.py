"""ConvNeXt (Liu et al., CVPR 2022) as DeepLab2's kMaX pixel encoder
(``model/pixel_encoder/convnext.py``).

A stride-4 patchify stem, then four stages of ConvNeXt blocks (7x7 depthwise conv,
layer norm, 4x MLP with GELU, layer scale, residual), separated by 2x2 stride-2
downsampling convs preceded by layer norm. As in kMaX (``zero_padding_for_downstream``)
the input of the stem is zero-padded by (1, 2) and that of every downsampling layer
by (0, 1) (top/left, bottom/right), so odd sizes map as ``(n - 1) // stride + 1``
(65 -> 17 -> 9 -> 5 -> 3). The padding comes BEFORE the downsampling layer norm, as
in DeepLab2 (padded pixels become ``beta``, not zero, at the conv).

Endpoints (DeepLab2 names): ``stage1`` (stem output, stride 4), ``stage2``..``stage5``
(stage outputs, strides 4, 8, 16, 32) and their GELU activations ``res1``..``res5``.

Weights: DeepLab2 builds the layers as Keras ``Sequential`` models, so checkpoint keys
read ``downsample_layers/1/layer_with_weights-1/kernel``; the converter maps
``layer_with_weights-N`` to ``N`` (the N-th layer with weights), which is the index in
our ``nn.Sequential`` modules (same layout as the official PyTorch ConvNeXt).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..layers.drop_path import DropPath
from ..layers.layer_norm import LayerNorm2d
from ..registry import register_model
from .base import Backbone, FeatureSpec


class ConvNeXtBlock(nn.Module):
    """``x + drop_path(layer_scale * pw2(gelu(pw1(norm(dwconv7x7(x))))))``."""

    def __init__(self, dim: int, *, drop_path_keep_prob: float = 1.0,
                 layer_scale_init_value: float = 1e-6):
        super().__init__()
        self.depthwise_conv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pointwise_conv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pointwise_conv2 = nn.Linear(4 * dim, dim)
        self.layer_scale = None
        if layer_scale_init_value > 0:
            # Keras shape [1, 1, 1, dim]: broadcasts over the channels-last MLP output.
            self.layer_scale = nn.Parameter(torch.full((1, 1, 1, dim), layer_scale_init_value))
        self.drop_path = DropPath(drop_path_keep_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.depthwise_conv(x).permute(0, 2, 3, 1)
        y = self.pointwise_conv2(self.act(self.pointwise_conv1(self.norm(y))))
        if self.layer_scale is not None:
            y = self.layer_scale * y
        return x + self.drop_path(y.permute(0, 3, 1, 2))


class PaddedSequential(nn.Sequential):
    """``nn.Sequential`` whose input is first zero-padded by ``(top_left, bottom_right)``."""

    def __init__(self, *layers: nn.Module, padding: tuple[int, int] = (0, 0)):
        super().__init__(*layers)
        self.padding = tuple(padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding != (0, 0):
            before, after = self.padding
            x = F.pad(x, (before, after, before, after))
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"padding={self.padding}"


class ConvNeXt(Backbone):
    """ConvNeXt feature extractor with DeepLab2's endpoints (see the module docstring).

    Args:
        depths / dims: blocks and channels per stage.
        drop_path_keep_prob: keep probability of the LAST block; it decreases linearly
            from 1.0 over all blocks (training only).
        zero_padding_for_downstream: kMaX's padding before the stem and downsampling
            convs (True, as DeepLab2 builds it for kMaX); False = the classification
            network (input sizes should then be multiples of 32).
    """

    def __init__(self, *, depths: Sequence[int] = (3, 3, 9, 3),
                 dims: Sequence[int] = (96, 192, 384, 768), drop_path_keep_prob: float = 1.0,
                 layer_scale_init_value: float = 1e-6, zero_padding_for_downstream: bool = True,
                 in_channels: int = 3):
        super().__init__()
        if len(depths) != 4 or len(dims) != 4:
            raise ValueError("ConvNeXt needs 4 depths and 4 dims")
        if not 0.0 < drop_path_keep_prob <= 1.0:
            raise ValueError(f"drop_path_keep_prob must be in (0, 1], got {drop_path_keep_prob}")
        self.downsample_layers = nn.ModuleList([PaddedSequential(
            nn.Conv2d(in_channels, dims[0], 4, stride=4), LayerNorm2d(dims[0], eps=1e-6),
            padding=(1, 2) if zero_padding_for_downstream else (0, 0))])
        for i in range(3):
            self.downsample_layers.append(PaddedSequential(
                LayerNorm2d(dims[i], eps=1e-6), nn.Conv2d(dims[i], dims[i + 1], 2, stride=2),
                padding=(0, 1) if zero_padding_for_downstream else (0, 0)))
        total = sum(depths)
        keep = np.linspace(1.0, drop_path_keep_prob, total, dtype=np.float32).tolist()
        self.stages = nn.ModuleList()
        start = 0
        for depth, dim in zip(depths, dims):
            self.stages.append(nn.Sequential(*(
                ConvNeXtBlock(dim, drop_path_keep_prob=keep[start + j],
                              layer_scale_init_value=layer_scale_init_value)
                for j in range(depth))))
            start += depth
        self.act = nn.GELU()
        self.feature_specs = [FeatureSpec(f"res{i + 2}", dim, 4 * 2 ** i, f"stages.{i}")
                              for i, dim in enumerate(dims)]
        #: Stride of the ``stage1``/``res1`` (stem) endpoint.
        self.stem_reduction = 4

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        endpoints = {}
        for i in range(4):
            x = self.downsample_layers[i](x)
            if i == 0:
                endpoints["stage1"] = x
                endpoints["res1"] = self.act(x)
            x = self.stages[i](x)
            endpoints[f"stage{i + 2}"] = x
            endpoints[f"res{i + 2}"] = self.act(x)
        endpoints["backbone_output"] = endpoints["res5"]
        return endpoints


_VARIANTS = {
    "convnext_tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "convnext_small": ((3, 3, 27, 3), (96, 192, 384, 768)),
    "convnext_base": ((3, 3, 27, 3), (128, 256, 512, 1024)),
    "convnext_large": ((3, 3, 27, 3), (192, 384, 768, 1536)),
}


def _build(name: str, kwargs: dict[str, Any]) -> ConvNeXt:
    depths, dims = _VARIANTS[name]
    # Accepted for a signature shared with the ResNets (ConvNeXt has no BN, stride 32 only).
    kwargs.pop("norm_layer", None)
    output_stride = kwargs.pop("output_stride", 32)
    if output_stride != 32:
        raise ValueError(f"ConvNeXt only supports output_stride 32, got {output_stride}")
    return ConvNeXt(depths=depths, dims=dims, **kwargs)


@register_model
def convnext_tiny(**kwargs: Any) -> ConvNeXt:
    """ConvNeXt-T: depths (3, 3, 9, 3), res2..res5: 96, 192, 384, 768 channels."""
    return _build("convnext_tiny", kwargs)


@register_model
def convnext_small(**kwargs: Any) -> ConvNeXt:
    """ConvNeXt-S: depths (3, 3, 27, 3), res2..res5: 96, 192, 384, 768 channels."""
    return _build("convnext_small", kwargs)


@register_model
def convnext_base(**kwargs: Any) -> ConvNeXt:
    """ConvNeXt-B: depths (3, 3, 27, 3), res2..res5: 128, 256, 512, 1024 channels."""
    return _build("convnext_base", kwargs)


@register_model
def convnext_large(**kwargs: Any) -> ConvNeXt:
    """ConvNeXt-L: depths (3, 3, 27, 3), res2..res5: 192, 384, 768, 1536 channels."""
    return _build("convnext_large", kwargs)
