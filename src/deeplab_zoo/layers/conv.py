"""Convolutions with DeepLab2's padding (``model/layers/convolutions.py``).

DeepLab2 pads every convolution symmetrically around the top-left aligned kernel:
``total = k_eff - 1`` with ``k_eff = k + (k - 1) * (rate - 1)``, ``begin = total // 2``,
``end = total - begin``. For stride 1 this is what TF 'SAME' does; for strided
convolutions DeepLab2 pads explicitly and convolves 'VALID', which differs from TF
'SAME' on even input sizes. We always pad explicitly, so both cases are one rule.

Module attribute names follow DeepLab2's Keras attribute names without the leading
underscore (``conv``, ``batch_norm``, ``depthwise``, ``pointwise``), so checkpoint
keys map onto ``state_dict`` keys by name (see ``deeplab_zoo.weights``).
"""
from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .activations import get_activation

NormLayer = Callable[[int], nn.Module]


def batch_norm(eps: float = 1e-3, momentum: float = 0.99) -> NormLayer:
    """A BatchNorm2d factory with Keras conventions (``momentum`` is Keras' decay)."""
    return functools.partial(nn.BatchNorm2d, eps=eps, momentum=1.0 - momentum)


#: DeepLab2's default batch norm (trainer.proto: epsilon 1e-3, momentum 0.99).
default_norm_layer: NormLayer = batch_norm()


def same_padding(kernel_size: int, atrous_rate: int = 1) -> tuple[int, int]:
    """(begin, end) zero padding DeepLab2 applies for a kernel and atrous rate."""
    effective = kernel_size + (kernel_size - 1) * (atrous_rate - 1)
    total = effective - 1
    return total // 2, total - total // 2


class PaddedConv2d(nn.Conv2d):
    """``nn.Conv2d`` with DeepLab2's symmetric 'same' padding for any stride."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 stride: int = 1, atrous_rate: int = 1, groups: int = 1, bias: bool = True):
        begin, end = same_padding(kernel_size, atrous_rate)
        # Symmetric padding goes into the conv itself (one kernel launch); only the
        # rare asymmetric case (even effective kernel) needs a separate F.pad.
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=begin if begin == end else 0, dilation=atrous_rate,
                         groups=groups, bias=bias)
        self.extra_padding = None if begin == end else (begin, end, begin, end)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.extra_padding is not None:
            x = F.pad(x, self.extra_padding)
        return super().forward(x)


class GlobalContext(nn.Module):
    """SAC's global context: ``x + conv1x1(global_avg_pool(x))``."""

    def __init__(self, channels: int):
        super().__init__()
        self.convolution = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.convolution(x.mean(dim=(2, 3), keepdim=True))


class SwitchableAtrousConv2d(nn.Module):
    """Switchable atrous convolution (DetectoRS), as DeepLab2 implements it.

    One kernel, applied at ``rate`` and ``3 * rate``; a per-pixel switch computed
    from a 5x5 average pool (padding excluded, as TF 'SAME' pooling) mixes them:
    ``s * conv_large + (1 - s) * conv_small``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 stride: int = 1, atrous_rate: int = 1, bias: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_normal_(self.weight, nonlinearity="relu")
        self.switch = nn.Conv2d(in_channels, 1, 1, stride=stride)
        self.stride = stride
        self.atrous_rate = atrous_rate
        self.kernel_size = kernel_size

    def _conv(self, x: torch.Tensor, rate: int) -> torch.Tensor:
        begin, end = same_padding(self.kernel_size, rate)
        if begin != end:
            x = F.pad(x, (begin, end, begin, end))
            begin = 0
        return F.conv2d(x, self.weight, None, self.stride, begin, rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
        switch = self.switch(pooled)
        small = self._conv(x, self.atrous_rate)
        large = self._conv(x, 3 * self.atrous_rate)
        out = switch * large + (1 - switch) * small
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return out


class Conv2dSame(nn.Module):
    """Convolution + optional batch norm + optional activation (DeepLab2 ``Conv2DSame``).

    With ``use_switchable_atrous_conv`` (only honoured at stride 1, as in DeepLab2)
    the convolution is a :class:`SwitchableAtrousConv2d`, optionally wrapped by
    pre/post :class:`GlobalContext` modules.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 stride: int = 1, atrous_rate: int = 1, use_bias: bool = True,
                 use_bn: bool = False, activation: str | None = None,
                 norm_layer: NormLayer = default_norm_layer,
                 use_switchable_atrous_conv: bool = False,
                 use_global_context_in_sac: bool = False):
        super().__init__()
        if use_bn and use_bias:
            raise ValueError("Conv2dSame: use_bias and use_bn are mutually exclusive")
        self.pre_global_context = GlobalContext(in_channels) if use_global_context_in_sac else None
        if use_switchable_atrous_conv and stride == 1:
            self.conv = SwitchableAtrousConv2d(in_channels, out_channels, kernel_size,
                                               stride=stride, atrous_rate=atrous_rate,
                                               bias=use_bias)
        else:
            self.conv = PaddedConv2d(in_channels, out_channels, kernel_size, stride=stride,
                                     atrous_rate=atrous_rate, bias=use_bias)
        self.post_global_context = (GlobalContext(out_channels) if use_global_context_in_sac
                                    else None)
        self.batch_norm = norm_layer(out_channels) if use_bn else None
        self.activation = get_activation(activation)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_global_context is not None:
            x = self.pre_global_context(x)
        x = self.conv(x)
        if self.post_global_context is not None:
            x = self.post_global_context(x)
        if self.batch_norm is not None:
            x = self.batch_norm(x)
        return self.activation(x)


class DepthwiseConv2dSame(nn.Module):
    """Depthwise convolution + optional BN + activation (DeepLab2 ``DepthwiseConv2DSame``)."""

    def __init__(self, channels: int, kernel_size: int, *, stride: int = 1,
                 atrous_rate: int = 1, use_bias: bool = True, use_bn: bool = False,
                 activation: str | None = None, norm_layer: NormLayer = default_norm_layer):
        super().__init__()
        if use_bn and use_bias:
            raise ValueError("DepthwiseConv2dSame: use_bias and use_bn are mutually exclusive")
        self.depthwise_conv = PaddedConv2d(channels, channels, kernel_size, stride=stride,
                                           atrous_rate=atrous_rate, groups=channels,
                                           bias=use_bias)
        self.batch_norm = norm_layer(channels) if use_bn else None
        self.activation = get_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.depthwise_conv(x)
        if self.batch_norm is not None:
            x = self.batch_norm(x)
        return self.activation(x)


class SeparableConv2dSame(nn.Module):
    """Depthwise then pointwise, each with BN and activation (``SeparableConv2DSame``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 stride: int = 1, atrous_rate: int = 1, use_bias: bool = True,
                 use_bn: bool = False, activation: str | None = None,
                 norm_layer: NormLayer = default_norm_layer):
        super().__init__()
        self.depthwise = DepthwiseConv2dSame(in_channels, kernel_size, stride=stride,
                                             atrous_rate=atrous_rate, use_bias=use_bias,
                                             use_bn=use_bn, activation=activation,
                                             norm_layer=norm_layer)
        self.pointwise = Conv2dSame(in_channels, out_channels, 1, use_bias=use_bias,
                                    use_bn=use_bn, activation=activation,
                                    norm_layer=norm_layer)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


def conv_bn_act_name(index: int, use_bn: bool, activation: str | None) -> str:
    """DeepLab2's ``utils.get_conv_bn_act_current_name`` without the underscore."""
    name = f"conv{index + 1}"
    if use_bn:
        name += "_bn"
    if activation is not None and activation.lower() not in ("none", "linear"):
        name += "_act"
    return name


class StackedConv2dSame(nn.Module):
    """``num_layers`` convolutions in sequence, named ``conv1_bn_act``, ``conv2_bn_act``..."""

    def __init__(self, num_layers: int, conv_type: str, in_channels: int,
                 out_channels: int, kernel_size: int, *, stride: int = 1,
                 atrous_rate: int = 1, use_bias: bool = True, use_bn: bool = False,
                 activation: str | None = None, norm_layer: NormLayer = default_norm_layer):
        super().__init__()
        if conv_type == "standard_conv":
            conv_cls = Conv2dSame
        elif conv_type == "depthwise_separable_conv":
            conv_cls = SeparableConv2dSame
        else:
            raise ValueError(f"conv_type must be 'standard_conv' or 'depthwise_separable_conv', "
                             f"got {conv_type!r}")
        self.names = []
        channels = in_channels
        for index in range(num_layers):
            name = conv_bn_act_name(index, use_bn, activation)
            self.add_module(name, conv_cls(channels, out_channels, kernel_size, stride=stride,
                                           atrous_rate=atrous_rate, use_bias=use_bias,
                                           use_bn=use_bn, activation=activation,
                                           norm_layer=norm_layer))
            self.names.append(name)
            channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.names:
            x = getattr(self, name)(x)
        return x
