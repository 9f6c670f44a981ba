"""Convolutional residual blocks of DeepLab2's ResNet family (``model/layers/axial_blocks.py``).

DeepLab2 builds all of them with one class (``AxialBlock``); the shared frame is
:class:`ResidualBlock`, whose subclasses only define the residual branch:

* :class:`BottleneckBlock` - 1x1 ``conv1_bn_act``, 3x3 ``conv2_bn_act`` (stride,
  atrous rate, optional switchable atrous conv), 1x1 ``conv3_bn``;
* :class:`BasicBlock` - 3x3 ``conv1_bn_act`` (stride), 3x3 ``conv2_bn`` (wide ResNets).

A block takes the NON-activated output of the previous block (or stem), applies
the activation first, and returns ``branch + shortcut`` without activation.
Attention blocks (a later addition) subclass :class:`ResidualBlock` the same way.
"""
from __future__ import annotations

import abc
from collections.abc import Sequence

import torch
from torch import nn

from .activations import get_activation
from .conv import Conv2dSame, NormLayer, default_norm_layer
from .drop_path import DropPath
from .squeeze_excite import SimplifiedSqueezeAndExcite


def _zero_init_gamma(conv: Conv2dSame) -> None:
    """DeepLab2 starts the last BN of a residual branch at gamma = 0 (identity blocks)."""
    weight = getattr(conv.batch_norm, "weight", None)
    if isinstance(weight, nn.Parameter):
        with torch.no_grad():
            weight.zero_()


class ResidualBlock(nn.Module, abc.ABC):
    """``drop_path(se(branch(act(x)))) + shortcut(act(x))``, not activated.

    The shortcut is a strided 1x1 conv + BN (``shortcut``) when the channel count
    changes, else the (subsampled, for stride > 1) activated input.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1,
                 use_squeeze_and_excite: bool = False, drop_path_keep_prob: float = 1.0,
                 activation: str = "relu", norm_layer: NormLayer = default_norm_layer):
        super().__init__()
        self.activation = get_activation(activation)
        self.stride = stride
        self.out_channels = out_channels
        self.shortcut = None
        if in_channels != out_channels:
            self.shortcut = Conv2dSame(in_channels, out_channels, 1, stride=stride,
                                       use_bias=False, use_bn=True, activation=None,
                                       norm_layer=norm_layer)
        self.squeeze_and_excite = (SimplifiedSqueezeAndExcite(out_channels, out_channels)
                                   if use_squeeze_and_excite else None)
        self.drop_path = DropPath(drop_path_keep_prob)

    @abc.abstractmethod
    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch applied to the activated input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(x)
        if self.shortcut is not None:
            shortcut = self.shortcut(x)
        elif self.stride != 1:
            shortcut = x[:, :, ::self.stride, ::self.stride]
        else:
            shortcut = x
        out = self.branch(x)
        if self.squeeze_and_excite is not None:
            out = self.squeeze_and_excite(out)
        return self.drop_path(out) + shortcut


class BottleneckBlock(ResidualBlock):
    """1x1 -> 3x3 (stride, atrous rate, optional SAC) -> 1x1 bottleneck.

    ``filters`` = (conv1, conv2, conv3) widths. With ``use_sac`` the 3x3 conv is a
    switchable atrous conv (only at stride 1, as in DeepLab2) wrapped in pre/post
    global context (at any stride). ``second_conv_atrous_rate`` is accepted for a
    signature shared with :class:`BasicBlock` and ignored (as in DeepLab2).
    """

    def __init__(self, in_channels: int, filters: Sequence[int], *, stride: int = 1,
                 atrous_rate: int = 1, second_conv_atrous_rate: int | None = None,
                 use_sac: bool = False, use_squeeze_and_excite: bool = False,
                 drop_path_keep_prob: float = 1.0, activation: str = "relu",
                 norm_layer: NormLayer = default_norm_layer):
        if len(filters) != 3:
            raise ValueError(f"BottleneckBlock needs 3 filter numbers, got {list(filters)}")
        super().__init__(in_channels, filters[2], stride=stride,
                         use_squeeze_and_excite=use_squeeze_and_excite,
                         drop_path_keep_prob=drop_path_keep_prob, activation=activation,
                         norm_layer=norm_layer)
        self.conv1_bn_act = Conv2dSame(in_channels, filters[0], 1, use_bias=False, use_bn=True,
                                       activation=activation, norm_layer=norm_layer)
        self.conv2_bn_act = Conv2dSame(filters[0], filters[1], 3, stride=stride,
                                       atrous_rate=atrous_rate, use_bias=False, use_bn=True,
                                       activation=activation, norm_layer=norm_layer,
                                       use_switchable_atrous_conv=use_sac,
                                       use_global_context_in_sac=use_sac)
        self.conv3_bn = Conv2dSame(filters[1], filters[2], 1, use_bias=False, use_bn=True,
                                   activation=None, norm_layer=norm_layer)
        _zero_init_gamma(self.conv3_bn)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3_bn(self.conv2_bn_act(self.conv1_bn_act(x)))


class BasicBlock(ResidualBlock):
    """Two 3x3 convs: ``conv1_bn_act`` (stride, ``atrous_rate``) and ``conv2_bn``.

    The second conv uses ``second_conv_atrous_rate`` (DeepLab2's
    ``basic_block_second_conv_atrous_rate``; defaults to ``atrous_rate``). With
    ``use_sac`` both convs are switchable atrous convs with global context.
    """

    def __init__(self, in_channels: int, filters: Sequence[int], *, stride: int = 1,
                 atrous_rate: int = 1, second_conv_atrous_rate: int | None = None,
                 use_sac: bool = False, use_squeeze_and_excite: bool = False,
                 drop_path_keep_prob: float = 1.0, activation: str = "relu",
                 norm_layer: NormLayer = default_norm_layer):
        if len(filters) != 2:
            raise ValueError(f"BasicBlock needs 2 filter numbers, got {list(filters)}")
        super().__init__(in_channels, filters[1], stride=stride,
                         use_squeeze_and_excite=use_squeeze_and_excite,
                         drop_path_keep_prob=drop_path_keep_prob, activation=activation,
                         norm_layer=norm_layer)
        if second_conv_atrous_rate is None:
            second_conv_atrous_rate = atrous_rate
        self.conv1_bn_act = Conv2dSame(in_channels, filters[0], 3, stride=stride,
                                       atrous_rate=atrous_rate, use_bias=False, use_bn=True,
                                       activation=activation, norm_layer=norm_layer,
                                       use_switchable_atrous_conv=use_sac,
                                       use_global_context_in_sac=use_sac)
        self.conv2_bn = Conv2dSame(filters[0], filters[1], 3,
                                   atrous_rate=second_conv_atrous_rate, use_bias=False,
                                   use_bn=True, activation=None, norm_layer=norm_layer,
                                   use_switchable_atrous_conv=use_sac,
                                   use_global_context_in_sac=use_sac)
        _zero_init_gamma(self.conv2_bn)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2_bn(self.conv1_bn_act(x))
