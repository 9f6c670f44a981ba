"""kMaX-DeepLab's pixel decoder (DeepLab2 ``model/pixel_decoder/kmax.py``).

Starting from the stride-32 encoder feature, each stage runs a group of residual
blocks (axial-attention blocks at strides 32 and 16, bottlenecks below) and fuses the
result with the next finer encoder feature (:class:`~deeplab_zoo.layers.resized_fuse.ResizedFuse`).
Every encoder feature is layer-normalised first (``backbone_norms``). Four stages end
at stride 4 (COCO, ADE20K), five at the encoder's ``stage1`` (Cityscapes: stride 2
for ResNets, 4 for ConvNeXt).

The residual blocks are DeepLab2's ``BlockGroup`` as kMaX configures it: original
input stride 32, stride 1, ``output_stride`` 16 - so the 3x3 convs of the bottleneck
stages are dilated by 2 - and 'resnet_beta'-style bottlenecks.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..backbones.resnet import BlockGroup, plan_block_group
from ..layers import attention_blocks as attention_blocks  # registers the 'axial' block type
from ..layers.conv import NormLayer, default_norm_layer
from ..layers.layer_norm import LayerNorm2d
from ..layers.resized_fuse import ResizedFuse, fuse_kind

#: (dims, num_blocks, block_types) by the stride of the highest-resolution output.
KMAX_PIXEL_DECODER_LAYOUTS: dict[int, tuple[tuple[int, ...], tuple[int, ...], tuple[str, ...]]] = {
    4: ((512, 256, 128, 64), (1, 5, 1, 1), ("axial", "axial", "bottleneck", "bottleneck")),
    2: ((512, 256, 128, 64, 32), (1, 5, 1, 1, 1),
        ("axial", "axial", "bottleneck", "bottleneck", "bottleneck")),
}


def decoder_group_specs(filters: int, num_blocks: int, block_type: str):
    """Block specs of one decoder stage, exactly as DeepLab2's kMaX ``BlockGroup`` plans them."""
    if block_type not in ("axial", "bottleneck"):
        raise ValueError(f"kMaX pixel decoder block type must be 'axial' or 'bottleneck', "
                         f"got {block_type!r}")
    return plan_block_group(
        filters=filters, num_blocks=num_blocks, original_resnet_stride=1,
        original_resnet_input_stride=32, output_stride=16, backbone_type="resnet_beta",
        use_axial_beyond_stride=16 if block_type == "axial" else 0, drop_path_keep_prob=1.0)


class KMaXPixelDecoder(nn.Module):
    """Axial/bottleneck block groups with resized-fuse skip connections.

    Args:
        encoder_channels: channels of the encoder endpoints ``stage1``..``stage5``.
        dims / num_blocks / block_types: per stage, from stride 32 upwards.
        feature_sizes: spatial size of each ``stageK`` endpoint at the training crop;
            only decides DeepLab2's strided-conv shortcut in the fusions (crops of at
            most 16 px), None = never.
        block_config: extra keyword arguments per block type (e.g. ``{'axial': {...}}``).
    """

    def __init__(self, encoder_channels: Mapping[str, int], *,
                 dims: Sequence[int] = (512, 256, 128, 64),
                 num_blocks: Sequence[int] = (1, 5, 1, 1),
                 block_types: Sequence[str] = ("axial", "axial", "bottleneck", "bottleneck"),
                 feature_sizes: Mapping[str, tuple[int, int]] | None = None,
                 activation: str = "gelu", norm_layer: NormLayer = default_norm_layer,
                 block_config: dict[str, Any] | None = None):
        super().__init__()
        num_stages = len(dims)
        if not num_stages == len(num_blocks) == len(block_types):
            raise ValueError("dims, num_blocks and block_types need one entry per stage")
        if num_stages not in (4, 5):
            raise ValueError(f"the kMaX pixel decoder has 4 or 5 stages, got {num_stages}")
        self.endpoints = [f"stage{5 - i}" for i in range(num_stages)]
        self.backbone_norms = nn.ModuleList(
            LayerNorm2d(encoder_channels[name], eps=1e-6) for name in self.endpoints)
        sizes = feature_sizes or {}
        self.stages = nn.ModuleList()
        self.skip_connections = nn.ModuleList()
        channels = encoder_channels[self.endpoints[0]]
        for index in range(num_stages):
            group = BlockGroup(channels, decoder_group_specs(dims[index], num_blocks[index],
                                                             block_types[index]),
                               activation=activation, norm_layer=norm_layer,
                               block_config=block_config)
            self.stages.append(group)
            if index == num_stages - 1:
                channels = group.out_channels
                break
            skip = self.endpoints[index + 1]
            in_channels = (group.out_channels, encoder_channels[skip])
            in_sizes = (sizes.get(self.endpoints[index]), sizes.get(skip))
            kinds = [fuse_kind(c, s, dims[index + 1], sizes.get(skip))
                     for c, s in zip(in_channels, in_sizes)]
            self.skip_connections.append(ResizedFuse(in_channels, dims[index + 1], kinds=kinds,
                                                     activation=activation,
                                                     norm_layer=norm_layer))
            channels = dims[index + 1]
        self.out_channels = channels
        #: output channels of decoder_stage1.. (strides 32, 16, 8, ...).
        self.stage_channels = [group.out_channels for group in self.stages]

    def forward(self, endpoints: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Encoder endpoints -> ``decoder_stage1``.. (one per stage but the last) and
        ``decoder_output`` (all NOT activated)."""
        outputs = {}
        x = self.backbone_norms[0](endpoints[self.endpoints[0]])
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index == len(self.stages) - 1:
                break
            outputs[f"decoder_stage{index + 1}"] = x
            skip = self.backbone_norms[index + 1](endpoints[self.endpoints[index + 1]])
            x = self.skip_connections[index]([x, skip])
        outputs["decoder_output"] = x
        return outputs
