"""DeepLab2's ``ResizedFuse`` (``model/layers/resized_fuse.py``): fuse maps of any size.

Every input is brought to ``num_channels`` channels and the target spatial size,
then all are summed. Per input, DeepLab2 picks one of three paths from the shapes it
was BUILT with (the training crop):

* ``'identity'`` - channels already match: only a bilinear (align-corners) resize;
* ``'strided'`` - ``(size + 1) // 2`` equals the target: activation, strided 1x1 conv
  + BN (``strided_conv_bn{i}``);
* ``'resized'`` - otherwise: activation, 1x1 conv + BN (``resized_conv_bn{i}``), resize.

Here the target size is the size of the call's ``target`` argument (DeepLab2 uses the
build-time size, identical when the input has the crop size), so the module works for
any input size; the path per input is fixed at construction (:func:`fuse_kinds`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .activations import get_activation
from .conv import Conv2dSame, NormLayer, default_norm_layer
from .resize import resize_align_corners

FUSE_KINDS = ("identity", "strided", "resized")


def fuse_kind(channels: int, size: Sequence[int] | None, num_channels: int,
              target_size: Sequence[int] | None) -> str:
    """DeepLab2's choice of path for one input of ``channels`` x ``size``.

    Sizes may be None (unknown crop): the strided path then never applies (it only
    does for 1x1 targets in kMaX, i.e. crops of at most 16 pixels).
    """
    if channels == num_channels:
        return "identity"
    if size is not None and target_size is not None and \
            (size[0] + 1) // 2 == target_size[0] and (size[1] + 1) // 2 == target_size[1]:
        return "strided"
    return "resized"


class ResizedFuse(nn.Module):
    """Sums its inputs after projecting each to ``num_channels`` at the target size.

    Args:
        in_channels: channels of each input, in call order.
        num_channels: output channels.
        kinds: path per input (see :data:`FUSE_KINDS`); default from channels only.
        activation: applied before each projection (DeepLab2 follows act-conv-bn).
    """

    def __init__(self, in_channels: Sequence[int], num_channels: int, *,
                 kinds: Sequence[str] | None = None, activation: str = "relu",
                 norm_layer: NormLayer = default_norm_layer):
        super().__init__()
        if kinds is None:
            kinds = [fuse_kind(c, None, num_channels, None) for c in in_channels]
        if len(kinds) != len(in_channels):
            raise ValueError("ResizedFuse: one kind per input is needed")
        for kind, channels in zip(kinds, in_channels):
            if kind not in FUSE_KINDS:
                raise ValueError(f"unknown ResizedFuse kind {kind!r}; expected {FUSE_KINDS}")
            if (kind == "identity") != (channels == num_channels):
                raise ValueError(f"kind {kind!r} does not fit {channels} -> {num_channels} "
                                 "channels")
        self.kinds = tuple(kinds)
        self.num_channels = num_channels
        self.activation = get_activation(activation)
        for index, (kind, channels) in enumerate(zip(self.kinds, in_channels), start=1):
            if kind == "identity":
                continue
            self.add_module(f"{kind}_conv_bn{index}", Conv2dSame(
                channels, num_channels, 1, stride=2 if kind == "strided" else 1,
                use_bias=False, use_bn=True, activation=None, norm_layer=norm_layer))

    def forward(self, inputs: Sequence[torch.Tensor],
                target_size: Sequence[int] | None = None) -> torch.Tensor:
        """``target_size`` defaults to the spatial size of the LAST input."""
        if len(inputs) != len(self.kinds):
            raise ValueError(f"ResizedFuse expects {len(self.kinds)} inputs, got {len(inputs)}")
        size = tuple(target_size) if target_size is not None else tuple(inputs[-1].shape[-2:])
        out = None
        for index, (kind, feature) in enumerate(zip(self.kinds, inputs), start=1):
            if kind != "identity":
                feature = getattr(self, f"{kind}_conv_bn{index}")(self.activation(feature))
            # A no-op at the target size (always for 'strided' at the build crop).
            feature = resize_align_corners(feature, size)
            out = feature if out is None else out + feature
        return out
