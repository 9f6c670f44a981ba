"""MaX-DeepLab's encoder: DeepLab2's ``AxialResNet`` with a memory path and stacked decoders.

DeepLab2 (``model/encoder/axial_resnet.py``, ``model/layers/axial_block_groups.py``)
builds MaX-DeepLab's whole pixel path and memory path in one "encoder":

* an Axial-ResNet (stem, ``stage1``/``stage2``..``stage5``, see :mod:`.resnet`) whose
  block groups insert a dual-path transformer layer (``block{i}_transformer``,
  :class:`~deeplab_zoo.layers.dual_path_transformer.DualPathTransformerLayer`) after
  every block at and beyond ``backbone_use_transformer_beyond_stride``; the memory
  (``memory_feature``, ``[1, max_num_mask_slots, memory_channels]``) is shared by the
  batch and flows through them;
* without a backbone decoder, an extra block group ``stage5_extra`` on the backbone
  output;
* a stacked hour-glass decoder: ``decoder_stage{n}`` (backbone) / ``decoder_stage{n}_extra``
  block groups, each after a :class:`~deeplab_zoo.layers.resized_fuse.ResizedFuse`
  (``..._resized_fuse``) of the current feature with the last two features at the
  target stride; strides go down to ``high_resolution_output_stride`` and back up to
  the output stride once per stack (:func:`plan_stacked_decoder`);
* ``class_feature_extra`` / ``mask_feature_extra``: 1x1 convs of the final memory.

``forward`` returns DeepLab2's endpoints: ``stage1``..``stage5`` / ``res1``..``res5``,
``backbone_output`` and, for the full model, ``feature_panoptic`` (the last
high-resolution output), ``feature_semantic`` (the backbone output, or the first extra
high-resolution output with extra decoder stacks), ``transformer_class_feature`` and
``transformer_mask_feature`` (``[N, C, K]``). All pixel outputs of the decoder are
activated, as DeepLab2's.

Registered backbones (``classification_mode``, no transformer, DeepLab2's
``max_deeplab_{s,l}_backbone``): ``max_deeplab_s_backbone`` (ResNet-50-beta with axial
blocks from stride 16; no decoder) and ``max_deeplab_l_backbone`` (Axial-SWideRNet-(1,
1, 1) plus one backbone decoder stack). The full encoders are built by
:mod:`deeplab_zoo.meta.max_deeplab`.

Crop size: the resized-fuse layers choose a strided 1x1 conv where DeepLab2, built at
the training crop, does (``(size + 1) // 2`` equals the target size); for any crop this
is exactly the inputs one stride below the target, which is the rule used when no crop
is given. Attention lengths are checked against ``query_shape`` as in
:func:`~.axial_resnet.check_input_size`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..layers import attention_blocks as attention_blocks  # registers 'axial' / 'global'
from ..layers.axial_attention import AxialAttention2D
from ..layers.conv import NormLayer, default_norm_layer
from ..layers.conv1d import Conv1D
from ..layers.dual_path_transformer import DualPathTransformerLayer
from ..layers.positional_encodings import truncated_normal_
from ..layers.resized_fuse import ResizedFuse, fuse_kind
from ..registry import register_model
from .axial_resnet import attention_block_config, check_input_size
from .resnet import BlockGroup, BlockSpec, ResNet, plan_block_group

#: DeepLab2's default ``dual_path_transformer_layer_config`` (``axial_resnet_instances``).
DEFAULT_DUAL_PATH_CONFIG: dict[str, Any] = {
    "num_heads": 8,
    "bottleneck_expansion": 2,
    "key_expansion": 1,
    "value_expansion": 2,
    "feed_forward_network_channels": 2048,
    "use_memory_self_attention": True,
    "use_pixel2memory_feedback_attention": True,
    "transformer_activation": "softmax",
}


def transformer_filters(expansion: float) -> int:
    """Base width of a dual-path layer: DeepLab2's ``int(128 * transformer_expansion)``."""
    return int(128 * expansion)


class DualPathBlockGroup(BlockGroup):
    """A :class:`BlockGroup` with a dual-path transformer layer after every block.

    ``block{i}_transformer`` follows ``block{i}`` when ``transformer_filters`` is set
    (DeepLab2 inserts one after every block of a group whose stride reaches
    ``use_transformer_beyond_stride``); it uses the block's drop path keep probability.
    ``forward(x, memory)`` returns ``(x, memory)``; without transformers the memory
    passes through unchanged (it may be None).
    """

    def __init__(self, in_channels: int, specs: list[BlockSpec], *,
                 transformer_filters: int | None = None, memory_channels: int = 256,
                 transformer_config: dict[str, Any] | None = None,
                 use_squeeze_and_excite: bool = False, activation: str = "relu",
                 norm_layer: NormLayer = default_norm_layer,
                 block_config: dict[str, Any] | None = None):
        super().__init__(in_channels, specs, use_squeeze_and_excite=use_squeeze_and_excite,
                         activation=activation, norm_layer=norm_layer,
                         block_config=block_config)
        self.transformer_names: dict[str, str] = {}
        if transformer_filters:
            config = {**DEFAULT_DUAL_PATH_CONFIG, **(transformer_config or {})}
            for name, spec in zip(self.block_names, specs):
                layer = DualPathTransformerLayer(
                    spec.filters[-1], memory_channels, filters=transformer_filters,
                    drop_path_keep_prob=spec.drop_path_keep_prob, activation=activation,
                    norm_layer=norm_layer, **config)
                self.add_module(f"{name}_transformer", layer)
                self.transformer_names[name] = f"{name}_transformer"

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.transformer_names and memory is None:
            raise ValueError("this block group has transformer layers; pass the memory")
        for name in self.block_names:
            x = getattr(self, name)(x)
            transformer = self.transformer_names.get(name)
            if transformer is not None:
                x, memory = getattr(self, transformer)(x, memory)
        return x, memory


@dataclass(frozen=True)
class DecoderStage:
    """One stage of DeepLab2's stacked decoder (``decoder_stage{number}``)."""

    number: int
    stride: int
    #: stride the block group is configured with (32 at the output stride, as DeepLab2).
    original_resnet_input_stride: int
    #: a backbone block group ``decoder_stage{n}`` (and an un-suffixed fuse) runs first.
    backbone_group: bool
    #: the backbone ends after this stage's backbone group (its activated output is
    #: ``backbone_output``).
    completes_backbone: bool
    #: an extra block group ``decoder_stage{n}_extra`` runs (last).
    extra_group: bool
    #: the output is a high-resolution output (``high_resolution_output_stride``).
    high_resolution: bool

    @property
    def fuse_name(self) -> str:
        infix = "" if self.backbone_group else "_extra"
        return f"decoder_stage{self.number}{infix}_resized_fuse"


def plan_stacked_decoder(*, output_stride: int, high_resolution_output_stride: int,
                         backbone_decoder_num_stacks: int, extra_decoder_num_stacks: int,
                         classification_mode: bool) -> list[DecoderStage]:
    """DeepLab2's decoder schedule: from the output stride down to the high-resolution
    stride, then up and down again once per further stack, ending at the high-resolution
    stride. A classification backbone stops after its last backbone stack."""
    if high_resolution_output_stride >= output_stride:
        raise ValueError(f"high_resolution_output_stride ({high_resolution_output_stride}) "
                         f"must be below output_stride ({output_stride})")
    if backbone_decoder_num_stacks == 0 and classification_mode:
        return []
    total_stacks = backbone_decoder_num_stacks + extra_decoder_num_stacks
    is_backbone = backbone_decoder_num_stacks != 0
    stack, stride, downward, number = 0, output_stride, True, 0
    stages = []
    while stack < total_stacks or stride > high_resolution_output_stride:
        number += 1
        stride = stride // 2 if downward else stride * 2
        if stride == output_stride:
            stack += 1
            downward = True
        backbone_group = is_backbone
        completes = stride == output_stride and stack == backbone_decoder_num_stacks
        if completes:
            is_backbone = False
        high = stride == high_resolution_output_stride
        stages.append(DecoderStage(
            number=number, stride=stride,
            original_resnet_input_stride=32 if stride == output_stride else stride,
            backbone_group=backbone_group, completes_backbone=completes,
            extra_group=not is_backbone and not (completes and classification_mode),
            high_resolution=high and not classification_mode))
        if completes and classification_mode:
            break
        if high:
            downward = False
    return stages


def _size_at_stride(size: int, stride: int) -> int:
    """Spatial size after 'same' stride-2 reductions: DeepLab2's ``(n - 1) / s + 1``."""
    return (size - 1) // stride + 1


class MaXDeepLabEncoder(ResNet):
    """DeepLab2's ``AxialResNet`` with the memory path and stacked decoders (see module doc).

    Args (DeepLab2's names; the rest go to :class:`~.resnet.ResNet`):
        classification_mode: stop after the backbone (no extra layers, no memory unless
            the backbone has transformers).
        backbone_use_transformer_beyond_stride / extra_decoder_use_transformer_beyond_stride:
            dual-path layers in groups whose (undilated) stride reaches these (0: none).
        backbone_decoder_num_stacks / backbone_decoder_blocks_per_stage /
            extra_decoder_num_stacks / extra_decoder_blocks_per_stage: stacked decoder.
        max_num_mask_slots / num_mask_slots / memory_channels: the memory.
        base_transformer_expansion: transformer width at stride 16 (scales with stride).
        global_feed_forward_network_channels: width of the class / mask features.
        high_resolution_output_stride: stride of ``feature_panoptic``.
        transformer_config: overrides of :data:`DEFAULT_DUAL_PATH_CONFIG`.
        crop_size: training crop ``(H, W)``: resized-fuse paths and attention lengths.
    """

    def __init__(self, *, num_blocks: tuple[int, ...] = (3, 4, 6, 3),
                 backbone_type: str = "resnet_beta", output_stride: int = 16,
                 classification_mode: bool = False, use_axial_beyond_stride: int = 16,
                 backbone_use_transformer_beyond_stride: int = 32,
                 extra_decoder_use_transformer_beyond_stride: int = 32,
                 backbone_decoder_num_stacks: int = 0, backbone_decoder_blocks_per_stage: int = 1,
                 extra_decoder_num_stacks: int = 0, extra_decoder_blocks_per_stage: int = 1,
                 max_num_mask_slots: int = 128, num_mask_slots: int | None = 128,
                 memory_channels: int = 256, base_transformer_expansion: float = 1.0,
                 global_feed_forward_network_channels: int = 256,
                 high_resolution_output_stride: int = 4, activation: str = "relu",
                 width_multiplier: float = 1.0, use_global_beyond_stride: int = 0,
                 use_sac_beyond_stride: int = 0, drop_path_keep_prob: float = 1.0,
                 drop_path_beyond_stride: int = 16, drop_path_schedule: str = "constant",
                 attention_bottleneck_expansion: int = 2,
                 block_config: dict[str, Any] | None = None,
                 transformer_config: dict[str, Any] | None = None,
                 crop_size: Sequence[int] | None = None,
                 norm_layer: NormLayer = default_norm_layer, **kwargs: Any):
        if extra_decoder_blocks_per_stage <= 0:
            raise ValueError("Extra_decoder_blocks_per_stage should be great than zero.")
        group_args = dict(memory_channels=memory_channels, transformer_config=transformer_config)

        def stage_group(index: int, in_channels: int, specs: list[BlockSpec],
                        **group_kwargs: Any) -> DualPathBlockGroup:
            # DeepLab2 scales the width with the stage's input stride (2 ** index).
            use = 2 ** (index + 1) >= backbone_use_transformer_beyond_stride > 0
            filters = transformer_filters(base_transformer_expansion * 2 ** index / 16)
            return DualPathBlockGroup(in_channels, specs, transformer_filters=filters if use
                                      else None, **group_args, **group_kwargs)

        plan_args = dict(output_stride=output_stride, backbone_type=backbone_type,
                         use_global_beyond_stride=use_global_beyond_stride,
                         use_axial_beyond_stride=use_axial_beyond_stride,
                         use_sac_beyond_stride=use_sac_beyond_stride,
                         drop_path_keep_prob=drop_path_keep_prob,
                         drop_path_beyond_stride=drop_path_beyond_stride,
                         drop_path_schedule=drop_path_schedule,
                         attention_bottleneck_expansion=attention_bottleneck_expansion)
        super().__init__(num_blocks=num_blocks, width_multiplier=width_multiplier,
                         activation=activation, block_config=block_config,
                         norm_layer=norm_layer, group_factory=stage_group, **plan_args,
                         **kwargs)
        self.classification_mode = classification_mode
        self.backbone_decoder_num_stacks = backbone_decoder_num_stacks
        self.extra_decoder_num_stacks = extra_decoder_num_stacks
        self.high_resolution_output_stride = high_resolution_output_stride
        self.num_mask_slots = num_mask_slots
        group_kwargs = dict(use_squeeze_and_excite=kwargs.get("use_squeeze_and_excite", False),
                            activation=activation, norm_layer=norm_layer,
                            block_config=block_config)

        def group(filters: int, num_blocks: int, input_stride: int, transformer_threshold: int,
                  expansion: float, in_channels: int) -> DualPathBlockGroup:
            specs = plan_block_group(filters=filters, num_blocks=num_blocks,
                                     original_resnet_stride=1,
                                     original_resnet_input_stride=input_stride, **plan_args)
            use = input_stride >= transformer_threshold > 0
            return DualPathBlockGroup(in_channels, specs,
                                      transformer_filters=transformer_filters(expansion)
                                      if use else None, **group_args, **group_kwargs)

        use_memory = bool(backbone_use_transformer_beyond_stride or (
            extra_decoder_use_transformer_beyond_stride and not classification_mode))
        self.memory_feature = None
        if use_memory:
            self.memory_feature = nn.Parameter(torch.empty(1, max_num_mask_slots,
                                                           memory_channels))
            truncated_normal_(self.memory_feature, 1.0)

        channels = self.feature_specs[-1].num_chs
        self.stage5_extra = None
        if backbone_decoder_num_stacks == 0 and not classification_mode:
            self.stage5_extra = group(int(round(16 * 32 * width_multiplier)),
                                      extra_decoder_blocks_per_stage, 32,
                                      extra_decoder_use_transformer_beyond_stride,
                                      base_transformer_expansion, channels)
            channels = self.stage5_extra.out_channels

        # (channels, stride) of the features each decoder stage may fuse, as DeepLab2's
        # stride_to_features: backbone stages, then the current feature at output stride.
        by_stride = {spec.endpoint: spec for spec in self.feature_specs}
        stem_channels = by_stride.get("res1", self.feature_specs[0]).num_chs
        features: dict[int, list[tuple[int, int]]] = {}
        for stride, endpoint in ((2, "res1"), (4, "res2"), (8, "res3"), (16, "res4")):
            chs = stem_channels if endpoint == "res1" else by_stride[endpoint].num_chs
            features[min(stride, output_stride)] = [(chs, min(stride, output_stride))]
        features[min(32, output_stride)] = [(channels, output_stride)]
        current = (channels, output_stride)

        self.decoder_plan = plan_stacked_decoder(
            output_stride=output_stride,
            high_resolution_output_stride=high_resolution_output_stride,
            backbone_decoder_num_stacks=backbone_decoder_num_stacks,
            extra_decoder_num_stacks=extra_decoder_num_stacks,
            classification_mode=classification_mode)
        crop = None if crop_size is None else (int(crop_size[0]), int(crop_size[1]))
        for stage in self.decoder_plan:
            input_stride = stage.original_resnet_input_stride
            fuse_channels = int(round(input_stride * 64 * width_multiplier))
            filters = int(input_stride * 64 * width_multiplier // 4)
            expansion = base_transformer_expansion * stage.stride / 16
            inputs = [current] + features[stage.stride][-2:]
            kinds = [self._fuse_kind(c, s, fuse_channels, stage.stride, crop) for c, s in inputs]
            self.add_module(stage.fuse_name, ResizedFuse(
                [c for c, _ in inputs], fuse_channels, kinds=kinds, activation=activation,
                norm_layer=norm_layer))
            channels = fuse_channels
            if stage.backbone_group:
                module = group(filters, backbone_decoder_blocks_per_stage, input_stride,
                               backbone_use_transformer_beyond_stride, expansion, channels)
                self.add_module(f"decoder_stage{stage.number}", module)
                channels = module.out_channels
            if stage.extra_group:
                module = group(filters, extra_decoder_blocks_per_stage, input_stride,
                               extra_decoder_use_transformer_beyond_stride, expansion, channels)
                self.add_module(f"decoder_stage{stage.number}_extra", module)
                channels = module.out_channels
            current = (channels, stage.stride)
            features[stage.stride].append(current)

        self.class_feature_extra = self.mask_feature_extra = None
        if not classification_mode and (backbone_use_transformer_beyond_stride
                                        or extra_decoder_use_transformer_beyond_stride):
            conv = dict(use_bias=False, use_bn=True, activation=activation,
                        norm_layer=norm_layer)
            self.class_feature_extra = Conv1D(memory_channels,
                                              global_feed_forward_network_channels, **conv)
            self.mask_feature_extra = Conv1D(memory_channels,
                                             global_feed_forward_network_channels, **conv)
        #: channels of ``feature_panoptic`` / ``feature_semantic`` (None in
        #: classification mode).
        self.panoptic_channels = None if classification_mode else channels
        self.semantic_channels = self._semantic_channels()
        if crop is not None:
            self.check_input_size(crop)

    @staticmethod
    def _fuse_kind(channels: int, stride: int, num_channels: int, target_stride: int,
                   crop: tuple[int, int] | None) -> str:
        if crop is None:  # the rule every crop size gives
            if channels == num_channels:
                return "identity"
            return "strided" if stride * 2 == target_stride else "resized"
        size = tuple(_size_at_stride(c, stride) for c in crop)
        target = tuple(_size_at_stride(c, target_stride) for c in crop)
        return fuse_kind(channels, size, num_channels, target)

    def _semantic_channels(self) -> int | None:
        if self.classification_mode:
            return None
        if self.extra_decoder_num_stacks:
            high = [s for s in self.decoder_plan if s.high_resolution]
            stage = high[self.backbone_decoder_num_stacks]
            name = f"decoder_stage{stage.number}" + ("_extra" if stage.extra_group else "")
            return getattr(self, name).out_channels
        if self.backbone_decoder_num_stacks:
            last = [s for s in self.decoder_plan if s.completes_backbone][-1]
            return getattr(self, f"decoder_stage{last.number}").out_channels
        return self.feature_specs[-1].num_chs

    def check_input_size(self, size: Sequence[int]) -> None:
        """Raises ``NotImplementedError`` where DeepLab2, built for input ``size``, would
        need local axial attention (in the backbone or the decoder)."""
        check_input_size(self, size)
        groups = [(self.stage5_extra, self.output_stride)] if self.stage5_extra else []
        for stage in self.decoder_plan:
            for suffix in ("", "_extra"):
                module = getattr(self, f"decoder_stage{stage.number}{suffix}", None)
                if module is not None:
                    groups.append((module, stage.stride))
        for module, stride in groups:
            height, width = (_size_at_stride(int(s), stride) for s in size)
            for attention in module.modules():
                if isinstance(attention, AxialAttention2D):
                    attention.height_axis.check_length(height)
                    attention.width_axis.check_length(width)

    def initial_memory(self, batch: int) -> torch.Tensor | None:
        """The learned memory ``[batch, C, K]`` (first ``num_mask_slots`` slots)."""
        if self.memory_feature is None:
            return None
        memory = self.memory_feature
        if self.num_mask_slots:
            memory = memory[:, :self.num_mask_slots]
        return memory.transpose(1, 2).expand(batch, -1, -1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        memory = self.initial_memory(x.shape[0])
        x = self.stem(x)
        endpoints = {"stage1": x, "res1": self.activation(x)}
        for name in self.stage_names:
            x, memory = getattr(self, name)(x, memory)
            endpoints[name] = x
            endpoints["res" + name[len("stage"):]] = self.activation(x)

        backbone_output = None
        if self.backbone_decoder_num_stacks == 0:
            backbone_output = endpoints[self.stage_names[-1].replace("stage", "res")]
            if self.classification_mode:
                endpoints["backbone_output"] = backbone_output
                return endpoints
            x, memory = self.stage5_extra(x, memory)

        output_stride = self.output_stride
        features: dict[int, list[torch.Tensor]] = {}
        for stride, name in ((2, "stage1"), (4, "stage2"), (8, "stage3"), (16, "stage4")):
            features[min(stride, output_stride)] = [endpoints[name]]
        features[min(32, output_stride)] = [x]
        high_resolution = []
        for stage in self.decoder_plan:
            x = getattr(self, stage.fuse_name)([x] + features[stage.stride][-2:])
            if stage.backbone_group:
                x, memory = getattr(self, f"decoder_stage{stage.number}")(x, memory)
            if stage.completes_backbone:
                backbone_output = self.activation(x)
                if self.classification_mode:
                    endpoints["backbone_output"] = backbone_output
                    return endpoints
            if stage.extra_group:
                x, memory = getattr(self, f"decoder_stage{stage.number}_extra")(x, memory)
            features[stage.stride].append(x)
            if stage.high_resolution:
                high_resolution.append(self.activation(x))

        if self.class_feature_extra is not None:
            endpoints["transformer_class_feature"] = self.class_feature_extra(memory)
            endpoints["transformer_mask_feature"] = self.mask_feature_extra(memory)
        endpoints["feature_panoptic"] = high_resolution[-1]
        endpoints["feature_semantic"] = (high_resolution[self.backbone_decoder_num_stacks]
                                         if self.extra_decoder_num_stacks else backbone_output)
        endpoints["backbone_output"] = backbone_output
        return endpoints


# --------------------------------------------------------------------------------------
# DeepLab2's MaX-DeepLab instances (``axial_resnet_instances.py``).

#: MaX-DeepLab-S: ResNet-50-beta, axial blocks from stride 16, dual-path layers at
#: stride 32 (stage5, stage5_extra), a small decoder to stride 4.
MAX_DEEPLAB_S: dict[str, Any] = {
    "num_blocks": (3, 4, 6, 3), "backbone_type": "resnet_beta", "use_axial_beyond_stride": 16,
    "backbone_use_transformer_beyond_stride": 32,
    "extra_decoder_use_transformer_beyond_stride": 32, "memory_channels": 256,
    "base_transformer_expansion": 1.0, "global_feed_forward_network_channels": 256,
    "attention_bottleneck_expansion": 2, "drop_path_beyond_stride": 16,
    "axial_layer_config": {},
}
#: MaX-DeepLab-L: Axial-SWideRNet-(1, 1, 1), dual-path layers from stride 16, one backbone
#: and one extra decoder stack (3 blocks per extra stage), 512-channel memory.
MAX_DEEPLAB_L: dict[str, Any] = {
    "num_blocks": (3, 6, 3, 3), "backbone_type": "wider_resnet", "use_axial_beyond_stride": 16,
    "backbone_use_transformer_beyond_stride": 16,
    "extra_decoder_use_transformer_beyond_stride": 16, "backbone_decoder_num_stacks": 1,
    "extra_decoder_num_stacks": 1, "extra_decoder_blocks_per_stage": 3, "memory_channels": 512,
    "base_transformer_expansion": 2.0, "global_feed_forward_network_channels": 512,
    "attention_bottleneck_expansion": 4, "drop_path_beyond_stride": 4,
    "axial_layer_config": {"key_expansion": 2, "value_expansion": 4},
}
#: What DeepLab2's ``*_backbone`` instances change: no transformers, classification mode.
BACKBONE_ONLY: dict[str, Any] = {"classification_mode": True,
                                 "backbone_use_transformer_beyond_stride": 0}


def build_max_deeplab_encoder(config: dict[str, Any], *, output_stride: int = 16,
                              norm_layer: NormLayer = default_norm_layer,
                              drop_path_keep_prob: float = 1.0,
                              drop_path_schedule: str = "linear",
                              crop_size: Sequence[int] | None = None,
                              axial_layer_config: dict[str, Any] | None = None,
                              **kwargs: Any) -> MaXDeepLabEncoder:
    """A :class:`MaXDeepLabEncoder` from one of the instance configs above.

    ``drop_path_schedule`` defaults to ``'linear'``, what every DeepLab2 MaX config uses.
    """
    config = dict(config)
    layer_config = {**config.pop("axial_layer_config", {}), **(axial_layer_config or {})}
    config.update(kwargs)
    return MaXDeepLabEncoder(**config, output_stride=output_stride, norm_layer=norm_layer,
                             drop_path_keep_prob=drop_path_keep_prob,
                             drop_path_schedule=drop_path_schedule, crop_size=crop_size,
                             block_config=attention_block_config(**layer_config))


@register_model
def max_deeplab_s_backbone(*, output_stride: int = 16,
                           norm_layer: NormLayer = default_norm_layer,
                           drop_path_keep_prob: float = 1.0,
                           crop_size: Sequence[int] | None = None,
                           **kwargs: Any) -> MaXDeepLabEncoder:
    """MaX-DeepLab-S backbone: ResNet-50-beta with axial blocks from stride 16 (stage4's
    block2 on); res1..res5: 128, 256, 512, 1024, 2048 channels."""
    return build_max_deeplab_encoder({**MAX_DEEPLAB_S, **BACKBONE_ONLY},
                                     output_stride=output_stride, norm_layer=norm_layer,
                                     drop_path_keep_prob=drop_path_keep_prob,
                                     crop_size=crop_size, **kwargs)


@register_model
def max_deeplab_l_backbone(*, output_stride: int = 16,
                           norm_layer: NormLayer = default_norm_layer,
                           drop_path_keep_prob: float = 1.0,
                           crop_size: Sequence[int] | None = None,
                           **kwargs: Any) -> MaXDeepLabEncoder:
    """MaX-DeepLab-L backbone: Axial-SWideRNet-(1, 1, 1) plus one stacked-decoder pass
    (strides 8, 4, 8, 16; its output is ``backbone_output``); res1..res5: 128, 256, 512,
    1024, 2048 channels."""
    return build_max_deeplab_encoder({**MAX_DEEPLAB_L, **BACKBONE_ONLY},
                                     output_stride=output_stride, norm_layer=norm_layer,
                                     drop_path_keep_prob=drop_path_keep_prob,
                                     crop_size=crop_size, **kwargs)

