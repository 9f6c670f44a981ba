"""Axial-ResNets: DeepLab2's ResNet skeleton with axial-attention blocks.

As DeepLab2's ``axial_resnet_instances.py``, these are :class:`~.resnet.ResNet`
configurations whose blocks at and beyond ``use_axial_beyond_stride`` are
:class:`~deeplab_zoo.layers.attention_blocks.AxialBlock` s:

* ``axial_resnet_s`` / ``axial_resnet_l``: ResNet-50 (7x7 stem) with axial attention
  in every block (``use_axial_beyond_stride=2``), width 0.5 / 1.0;
* ``axial_deeplab_s`` / ``axial_deeplab_l``: the same with the inception stem;
* ``axial_swidernet`` (and ``axial_swidernet_1_1_{1,3,4_5}``): SWideRNet with axial
  blocks in the last two stages (``use_axial_beyond_stride=16``, bottleneck expansion
  4, key / value expansion 2 / 4).

Crop size: DeepLab2 builds each attention layer for the training crop and only
implements global attention, so it fails (``NotImplementedError``) when a feature
map that an attention layer sees is longer than ``query_shape`` (129) along the
attended axis. Our layers take the length from each input (any size up to 129 per
axis works and matches DeepLab2 built at that size); a builder given
``crop_size`` checks it as DeepLab2's build does (:func:`check_input_size`).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..layers import attention_blocks as attention_blocks  # registers 'axial' / 'global'
from ..layers.axial_attention import AxialAttention2D
from ..layers.conv import NormLayer, default_norm_layer
from ..registry import register_model
from .resnet import ResNet

#: DeepLab2's default ``axial_layer_config`` (``axial_resnet_instances._get_default_config``).
DEFAULT_AXIAL_LAYER_CONFIG: dict[str, Any] = {
    "query_shape": (129, 129),
    "key_expansion": 1,
    "value_expansion": 2,
    "memory_flange": (32, 32),
    "num_heads": 8,
    "use_query_rpe_similarity": True,
    "use_key_rpe_similarity": True,
    "use_content_similarity": True,
    "retrieve_value_rpe": True,
    "retrieve_value_content": True,
    "initialization_std_for_query_key_rpe": 1.0,
    "initialization_std_for_value_rpe": 1.0,
    "self_attention_activation": "softmax",
}
_RPE_FLAGS = ("use_query_rpe_similarity", "use_key_rpe_similarity", "retrieve_value_rpe")


def attention_block_config(**overrides: Any) -> dict[str, dict[str, Any]]:
    """``ResNet(block_config=...)`` for attention blocks: DeepLab2's default axial layer
    config updated with ``overrides``. Global blocks get it without the relative
    positional encodings (they have none)."""
    axial = {**DEFAULT_AXIAL_LAYER_CONFIG, **overrides}
    global_ = {k: v for k, v in axial.items() if k not in _RPE_FLAGS}
    return {"axial": axial, "global": global_}


def _same_size(size: int, stride: int) -> int:
    # Output size of DeepLab2's explicitly padded stride-s convolutions / subsampling.
    return (size - 1) // stride + 1


def check_input_size(backbone: ResNet, size: Sequence[int]) -> None:
    """Raises ``NotImplementedError`` where DeepLab2, built for input ``size`` (H, W),
    would need local axial attention (an attended length > ``query_shape``)."""
    height, width = (_same_size(int(s), 2) for s in size)  # every stem has stride 2
    for stage_name in backbone.stage_names:
        stage = getattr(backbone, stage_name)
        for block_name in stage.block_names:
            block = getattr(stage, block_name)
            attention = getattr(block, "attention", None)
            if isinstance(attention, AxialAttention2D):
                # The width axis runs after the rows are subsampled but on full width.
                attention.height_axis.check_length(height)
                attention.width_axis.check_length(width)
            height, width = _same_size(height, block.stride), _same_size(width, block.stride)


def _build(defaults: dict[str, Any], *, output_stride: int, norm_layer: NormLayer,
           drop_path_keep_prob: float, crop_size: Sequence[int] | None,
           axial_layer_config: dict[str, Any] | None, kwargs: dict[str, Any]) -> ResNet:
    layer_config = {**defaults.pop("axial_layer_config", {}), **(axial_layer_config or {})}
    model = ResNet(**{**defaults, "block_config": attention_block_config(**layer_config),
                      **kwargs},
                   output_stride=output_stride, norm_layer=norm_layer,
                   drop_path_keep_prob=drop_path_keep_prob)
    if crop_size is not None:
        check_input_size(model, crop_size)
    return model


def _axial_resnet(backbone_type: str, width_multiplier: float) -> dict[str, Any]:
    return {"num_blocks": (3, 4, 6, 3), "backbone_type": backbone_type,
            "width_multiplier": width_multiplier, "use_axial_beyond_stride": 2}


def _axial_swidernet(stem_width_multiplier: float, width_multiplier: float,
                     backbone_layer_multiplier: float) -> dict[str, Any]:
    return {"num_blocks": (3, 6, 3, 3), "backbone_type": "wider_resnet",
            "stem_width_multiplier": stem_width_multiplier,
            "width_multiplier": width_multiplier,
            "backbone_layer_multiplier": backbone_layer_multiplier,
            "drop_path_beyond_stride": 4, "use_axial_beyond_stride": 16,
            "attention_bottleneck_expansion": 4,
            "axial_layer_config": {"key_expansion": 2, "value_expansion": 4}}


@register_model
def axial_resnet_s(*, output_stride: int = 32, norm_layer: NormLayer = default_norm_layer,
                   drop_path_keep_prob: float = 1.0, crop_size: Sequence[int] | None = None,
                   axial_layer_config: dict[str, Any] | None = None,
                   **kwargs: Any) -> ResNet:
    """Axial-ResNet-S: ResNet-50 (7x7 stem), width 0.5, axial attention in all 16 blocks;
    res1..res5: 64, 128, 256, 512, 1024 channels. Attention runs from stride 2 on, so
    inputs up to 257 px per side (``query_shape`` 129 at stride 2)."""
    return _build(_axial_resnet("resnet", 0.5), output_stride=output_stride,
                  norm_layer=norm_layer, drop_path_keep_prob=drop_path_keep_prob,
                  crop_size=crop_size, axial_layer_config=axial_layer_config, kwargs=kwargs)


@register_model
def axial_resnet_l(*, output_stride: int = 32, norm_layer: NormLayer = default_norm_layer,
                   drop_path_keep_prob: float = 1.0, crop_size: Sequence[int] | None = None,
                   axial_layer_config: dict[str, Any] | None = None,
                   **kwargs: Any) -> ResNet:
    """Axial-ResNet-L: ResNet-50 (7x7 stem), width 1.0, axial attention in all blocks;
    res1..res5: 64, 256, 512, 1024, 2048 channels."""
    return _build(_axial_resnet("resnet", 1.0), output_stride=output_stride,
                  norm_layer=norm_layer, drop_path_keep_prob=drop_path_keep_prob,
                  crop_size=crop_size, axial_layer_config=axial_layer_config, kwargs=kwargs)


@register_model
def axial_deeplab_s(*, output_stride: int = 32, norm_layer: NormLayer = default_norm_layer,
                    drop_path_keep_prob: float = 1.0, crop_size: Sequence[int] | None = None,
                    axial_layer_config: dict[str, Any] | None = None,
                    **kwargs: Any) -> ResNet:
    """Axial-DeepLab-S backbone: Axial-ResNet-S with the inception stem (res1: 128 ch)."""
    return _build(_axial_resnet("resnet_beta", 0.5), output_stride=output_stride,
                  norm_layer=norm_layer, drop_path_keep_prob=drop_path_keep_prob,
                  crop_size=crop_size, axial_layer_config=axial_layer_config, kwargs=kwargs)


@register_model
def axial_deeplab_l(*, output_stride: int = 32, norm_layer: NormLayer = default_norm_layer,
                    drop_path_keep_prob: float = 1.0, crop_size: Sequence[int] | None = None,
                    axial_layer_config: dict[str, Any] | None = None,
                    **kwargs: Any) -> ResNet:
    """Axial-DeepLab-L backbone: Axial-ResNet-L with the inception stem (res1: 128 ch)."""
    return _build(_axial_resnet("resnet_beta", 1.0), output_stride=output_stride,
                  norm_layer=norm_layer, drop_path_keep_prob=drop_path_keep_prob,
                  crop_size=crop_size, axial_layer_config=axial_layer_config, kwargs=kwargs)


@register_model
def axial_swidernet(*, output_stride: int = 32, norm_layer: NormLayer = default_norm_layer,
                    drop_path_keep_prob: float = 1.0, stem_width_multiplier: float = 1.0,
                    width_multiplier: float = 1.0, backbone_layer_multiplier: float = 1.0,
                    crop_size: Sequence[int] | None = None,
                    axial_layer_config: dict[str, Any] | None = None,
                    **kwargs: Any) -> ResNet:
    """Axial-SWideRNet (s, w, l) = (``stem_width_multiplier``, ``width_multiplier``,
    ``backbone_layer_multiplier``): SWideRNet without SAC, axial blocks from stride 16."""
    return _build(_axial_swidernet(stem_width_multiplier, width_multiplier,
                                   backbone_layer_multiplier),
                  output_stride=output_stride, norm_layer=norm_layer,
                  drop_path_keep_prob=drop_path_keep_prob, crop_size=crop_size,
                  axial_layer_config=axial_layer_config, kwargs=kwargs)


@register_model
def axial_swidernet_1_1_1(*, output_stride: int = 32,
                          norm_layer: NormLayer = default_norm_layer,
                          drop_path_keep_prob: float = 1.0,
                          crop_size: Sequence[int] | None = None,
                          axial_layer_config: dict[str, Any] | None = None,
                          **kwargs: Any) -> ResNet:
    """Axial-SWideRNet-(1, 1, 1): 3 + (3, 6, 3, 3) blocks, the last 2 + 3 axial;
    res1..res5: 128, 256, 512, 1024, 2048 channels."""
    return _build(_axial_swidernet(1.0, 1.0, 1.0), output_stride=output_stride,
                  norm_layer=norm_layer, drop_path_keep_prob=drop_path_keep_prob,
                  crop_size=crop_size, axial_layer_config=axial_layer_config, kwargs=kwargs)


@register_model
def axial_swidernet_1_1_3(*, output_stride: int = 32,
                          norm_layer: NormLayer = default_norm_layer,
                          drop_path_keep_prob: float = 1.0,
                          crop_size: Sequence[int] | None = None,
                          axial_layer_config: dict[str, Any] | None = None,
                          **kwargs: Any) -> ResNet:
    """Axial-SWideRNet-(1, 1, 3): 3 + (9, 18, 9, 9) blocks, axial from stage4's block2."""
    return _build(_axial_swidernet(1.0, 1.0, 3.0), output_stride=output_stride,
                  norm_layer=norm_layer, drop_path_keep_prob=drop_path_keep_prob,
                  crop_size=crop_size, axial_layer_config=axial_layer_config, kwargs=kwargs)


@register_model
def axial_swidernet_1_1_4_5(*, output_stride: int = 32,
                            norm_layer: NormLayer = default_norm_layer,
                            drop_path_keep_prob: float = 1.0,
                            crop_size: Sequence[int] | None = None,
                            axial_layer_config: dict[str, Any] | None = None,
                            **kwargs: Any) -> ResNet:
    """Axial-SWideRNet-(1, 1, 4.5): 3 + (13, 27, 13, 13) blocks, axial from stage4's
    block2."""
    return _build(_axial_swidernet(1.0, 1.0, 4.5), output_stride=output_stride,
                  norm_layer=norm_layer, drop_path_keep_prob=drop_path_keep_prob,
                  crop_size=crop_size, axial_layer_config=axial_layer_config, kwargs=kwargs)
