"""research/deeplab's heads (``model.py``, ``core/dense_prediction_cell.py``).

- :class:`ClassicASPP`: image pooling (``image_pooling``), 1x1 (``aspp0``), one 3x3 per
  atrous rate (``aspp1..``: research/deeplab's split separable conv = depthwise -> BN ->
  ReLU -> pointwise -> BN -> ReLU, or a plain 3x3 conv), concatenated in that order and
  projected (``concat_projection``); dropout (identity at eval) follows.
- :class:`DensePredictionCell`: the searched DPC (``meta_architecture/branchN``: split
  separable 3x3 convs with per-axis rates times ``16 / output_stride``, or 1x1 convs;
  each branch reads the features or an earlier branch) + ``concat_projection``.
- :class:`ClassicDecoder`: DeepLabv3+ decoder (``decoder/feature_projection0`` 1x1 -> 48
  on the low-level end point, bilinear resize of the encoder output, concat,
  ``decoder_conv0``/``decoder_conv1`` split separable convs).
- :class:`ClassicDeepLabHead`: the above + ``logits/semantic`` (1x1 conv with bias).

Batch norm epsilon 1e-5 and ReLU everywhere; all resizes bilinear with align_corners.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..layers.conv import Conv2dSame, NormLayer, SeparableConv2dSame, batch_norm
from ..layers.resize import resize_align_corners
from ..weights.convert import SKIP
from ..weights.tf_slim import is_training_variable, map_slim_key
from .aspp import ASPPPool

#: research/deeplab's head batch norm (epsilon 1e-5, decay 0.9997).
CLASSIC_HEAD_NORM: NormLayer = batch_norm(eps=1e-5, momentum=0.9997)

#: ``core/dense_prediction_cell_branch5_top1_cityscapes.json`` (DPC searched on Cityscapes).
DPC_BRANCH5_TOP1_CITYSCAPES: tuple[dict[str, Any], ...] = (
    {"kernel": 3, "rate": [1, 6], "op": "conv", "input": -1},
    {"kernel": 3, "rate": [18, 15], "op": "conv", "input": 0},
    {"kernel": 3, "rate": [6, 3], "op": "conv", "input": 1},
    {"kernel": 3, "rate": [1, 1], "op": "conv", "input": 0},
    {"kernel": 3, "rate": [6, 21], "op": "conv", "input": 0},
)


def split_separable_conv(in_channels: int, out_channels: int, rate: int | Sequence[int] = 1, *,
                         kernel_size: int = 3,
                         norm_layer: NormLayer = CLASSIC_HEAD_NORM) -> SeparableConv2dSame:
    """research/deeplab ``utils.split_separable_conv2d`` with BN + ReLU after both convs.

    ``rate`` may be ``(rate_h, rate_w)`` (DPC); stride is 1, so TF 'SAME' pads
    ``(k - 1) / 2 * rate`` on each side of each axis.
    """
    rates = (rate, rate) if isinstance(rate, int) else tuple(int(r) for r in rate)
    conv = SeparableConv2dSame(in_channels, out_channels, kernel_size, atrous_rate=rates[0],
                               use_bias=False, use_bn=True, activation="relu",
                               norm_layer=norm_layer)
    if rates[0] != rates[1]:
        if kernel_size % 2 == 0:
            raise ValueError("per-axis atrous rates need an odd kernel size")
        depthwise = conv.depthwise.depthwise_conv
        depthwise.dilation = rates
        depthwise.padding = tuple((kernel_size - 1) // 2 * r for r in rates)
    return conv


class ClassicASPP(nn.Module):
    """research/deeplab's ASPP (``model.extract_features`` with ``aspp_with_batch_norm``).

    ``atrous_rates`` None gives image pooling + ``aspp0`` only (the MobileNetV2 models).
    """

    def __init__(self, in_channels: int, atrous_rates: Sequence[int] | None, *,
                 channels: int = 256, separable: bool = True, image_pooling: bool = True,
                 concat_projection: bool = True, norm_layer: NormLayer = CLASSIC_HEAD_NORM):
        super().__init__()
        conv = {"use_bias": False, "use_bn": True, "activation": "relu",
                "norm_layer": norm_layer}
        self.image_pooling = (ASPPPool(in_channels, channels, norm_layer=norm_layer)
                              if image_pooling else None)
        self.aspp0 = Conv2dSame(in_channels, channels, 1, **conv)
        self.rates = tuple(atrous_rates or ())
        for i, rate in enumerate(self.rates, 1):
            branch = (split_separable_conv(in_channels, channels, rate, norm_layer=norm_layer)
                      if separable else Conv2dSame(in_channels, channels, 3, atrous_rate=rate,
                                                   **conv))
            self.add_module(f"aspp{i}", branch)
        num_branches = 1 + len(self.rates) + int(image_pooling)
        self.concat_projection = (Conv2dSame(num_branches * channels, channels, 1, **conv)
                                  if concat_projection else None)
        self.dropout = nn.Dropout(0.1)
        self.out_channels = channels if concat_projection else num_branches * channels

    def set_pool_size(self, pool_size: tuple[int, int] | None) -> None:
        """Image pooling window from the crop (None = global average pooling)."""
        if self.image_pooling is not None:
            self.image_pooling.pool_size = None if pool_size is None else tuple(pool_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [] if self.image_pooling is None else [self.image_pooling(x)]
        branches.append(self.aspp0(x))
        branches += [getattr(self, f"aspp{i}")(x) for i in range(1, len(self.rates) + 1)]
        x = torch.cat(branches, dim=1)
        if self.concat_projection is not None:
            x = self.dropout(self.concat_projection(x))
        return x


class DensePredictionCell(nn.Module):
    """research/deeplab's Dense Prediction Cell (``conv`` operations only).

    ``rate_multiplier`` is research/deeplab's ``conv_rate_multiplier`` = 16 / output_stride.
    """

    def __init__(self, in_channels: int, config: Sequence[Mapping[str, Any]] = (
                 DPC_BRANCH5_TOP1_CITYSCAPES), *, channels: int = 256,
                 concat_channels: int = 256, rate_multiplier: int = 1,
                 norm_layer: NormLayer = CLASSIC_HEAD_NORM):
        super().__init__()
        self.inputs: list[int] = []
        for i, op in enumerate(config):
            if op.get("op") != "conv":
                raise ValueError(f"DPC branch {i}: only 'conv' operations are supported, "
                                 f"got {op.get('op')!r}")
            source = int(op["input"])
            if not -1 <= source < i:
                raise ValueError(f"DPC branch {i} reads branch {source}, which is not earlier")
            kernel = op["kernel"]
            branch_in = in_channels if source < 0 else channels
            if kernel in (1, [1, 1], (1, 1)):
                branch = Conv2dSame(branch_in, channels, 1, use_bias=False, use_bn=True,
                                    activation="relu", norm_layer=norm_layer)
            else:
                kernel = kernel if isinstance(kernel, int) else kernel[0]
                rates = [int(r) * rate_multiplier for r in op["rate"]]
                branch = split_separable_conv(branch_in, channels, rates, kernel_size=kernel,
                                              norm_layer=norm_layer)
            self.add_module(f"branch{i}", branch)
            self.inputs.append(source)
        self.dropout = nn.Dropout(0.1)
        self.concat_projection = Conv2dSame(len(self.inputs) * channels, concat_channels, 1,
                                            use_bias=False, use_bn=True, activation="relu",
                                            norm_layer=norm_layer)
        self.out_channels = concat_channels

    def set_pool_size(self, pool_size: tuple[int, int] | None) -> None:
        """No image pooling in the supported cells."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches: list[torch.Tensor] = []
        for i, source in enumerate(self.inputs):
            branches.append(getattr(self, f"branch{i}")(x if source < 0 else branches[source]))
        return self.concat_projection(self.dropout(torch.cat(branches, dim=1)))


class ClassicDecoder(nn.Module):
    """DeepLabv3+ decoder of research/deeplab (one stage, concat merge, separable convs)."""

    def __init__(self, in_channels: int, low_level_channels: int, *, channels: int = 256,
                 projection_channels: int = 48, norm_layer: NormLayer = CLASSIC_HEAD_NORM):
        super().__init__()
        self.feature_projection0 = Conv2dSame(low_level_channels, projection_channels, 1,
                                              use_bias=False, use_bn=True, activation="relu",
                                              norm_layer=norm_layer)
        self.decoder_conv0 = split_separable_conv(in_channels + projection_channels, channels,
                                                  norm_layer=norm_layer)
        self.decoder_conv1 = split_separable_conv(channels, channels, norm_layer=norm_layer)
        self.out_channels = channels

    def forward(self, x: torch.Tensor, low_level: torch.Tensor,
                size: Sequence[int]) -> torch.Tensor:
        """``size``: research/deeplab's decoder size, ``scale_dimension(crop, 1 / stride)``."""
        projected = resize_align_corners(self.feature_projection0(low_level), size)
        x = torch.cat([resize_align_corners(x, size), projected], dim=1)
        return self.decoder_conv1(self.decoder_conv0(x))


class ClassicDeepLabHead(nn.Module):
    """ASPP or DPC, optional DeepLabv3+ decoder, and the ``logits/semantic`` 1x1 conv.

    ``forward(features)`` returns ``{"semantic_logits": ...}`` at the logits stride
    (``decoder_output_stride`` or the backbone's output stride).
    """

    tf_checkpoint_items: dict[str, str] = {}  # TF-Slim names: see tf_slim_name_map

    def __init__(self, in_channels: int, num_classes: int, *,
                 atrous_rates: Sequence[int] | None = (6, 12, 18),
                 aspp_with_separable_conv: bool = True, add_image_level_feature: bool = True,
                 aspp_with_concat_projection: bool = True,
                 dense_prediction_cell: Sequence[Mapping[str, Any]] | None = None,
                 dpc_rate_multiplier: int = 1, low_level_channels: int | None = None,
                 feature_key: str = "res5", low_level_key: str = "res2",
                 decoder_output_stride: int | None = None,
                 norm_layer: NormLayer = CLASSIC_HEAD_NORM):
        super().__init__()
        self.feature_key = feature_key
        self.low_level_key = low_level_key
        self.decoder_output_stride = decoder_output_stride
        if dense_prediction_cell is not None:
            self.aspp = DensePredictionCell(in_channels, dense_prediction_cell,
                                            rate_multiplier=dpc_rate_multiplier,
                                            norm_layer=norm_layer)
        else:
            self.aspp = ClassicASPP(in_channels, atrous_rates, separable=aspp_with_separable_conv,
                                    image_pooling=add_image_level_feature,
                                    concat_projection=aspp_with_concat_projection,
                                    norm_layer=norm_layer)
        channels = self.aspp.out_channels
        if decoder_output_stride is not None:
            if low_level_channels is None:
                raise ValueError("the decoder needs low_level_channels")
            self.decoder = ClassicDecoder(channels, low_level_channels, norm_layer=norm_layer)
            channels = self.decoder.out_channels
        else:
            self.decoder = None
        self.logits = Conv2dSame(channels, num_classes, 1, use_bias=True)
        self.num_classes = num_classes

    def set_pool_size(self, pool_size: tuple[int, int] | None) -> None:
        self.aspp.set_pool_size(pool_size)

    def aspp_features(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Output of ASPP / DPC incl. ``concat_projection`` (research/deeplab's
        ``model.extract_features``)."""
        return self.aspp(features[self.feature_key])

    def forward(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = self.aspp_features(features)
        if self.decoder is not None:
            low = features[self.low_level_key]
            # research/deeplab resizes to scale_dimension(crop, 1/stride), which for every
            # backbone here is the size of the low-level end point itself.
            x = self.decoder(x, low, low.shape[-2:])
        return {"semantic_logits": self.logits(x)}

    def tf_name_map(self, key: str) -> str | None:
        """TF-Slim head name -> ``state_dict`` key relative to this head."""
        return tf_slim_name_map(key)


_ASPP_SCOPES = ("image_pooling", "concat_projection")


def tf_slim_name_map(key: str) -> str | None:
    """research/deeplab head rename table.

    ============================================  ===========================================
    ``image_pooling/...``                         ``aspp.image_pooling.conv_bn_act...``
    ``aspp0/...``, ``aspp1_depthwise/...``,        ``aspp.aspp0...``, ``aspp.aspp1.depthwise...``
    ``concat_projection/...``                     ``aspp.concat_projection...``
    ``meta_architecture/branch0_depthwise/...``   ``aspp.branch0.depthwise...`` (DPC)
    ``decoder/feature_projection0/...``           ``decoder.feature_projection0...``
    ``logits/semantic/...``                       ``logits...``
    ============================================  ===========================================
    """
    if is_training_variable(key):
        return SKIP

    def modules(parts: list[str]) -> list[str] | None:
        top = parts[0]
        if top == "image_pooling" and len(parts) == 1:
            return ["aspp", "image_pooling", "conv_bn_act"]
        if (top in _ASPP_SCOPES or (top.startswith("aspp") and top[4:].isdigit())) \
                and len(parts) <= 2:
            return ["aspp", *parts]
        if top == "meta_architecture" and len(parts) >= 2:
            return ["aspp", *parts[1:]]
        if top == "decoder" and len(parts) >= 2:
            return parts
        if parts[:2] == ["logits", "semantic"] and len(parts) == 2:
            return ["logits"]
        return None

    return map_slim_key(key, modules)

