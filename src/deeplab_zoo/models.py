"""Meta-architectures: backbone + head (+ post-processing) as one ``nn.Module``.

``DeepLab`` covers DeepLab2's ``DeepLab`` class for DeepLabv3, DeepLabv3+ and
Panoptic-DeepLab: ``forward`` returns raw outputs resized to the input resolution
(bilinear, align_corners; offsets rescaled), ``postprocess`` turns them into
semantic / instance / panoptic maps, ``predict`` does everything from images.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .backbones.base import Backbone
from .data.datasets import DatasetInfo, get_dataset_info
from .heads.deeplabv3 import DeepLabV3Head
from .heads.deeplabv3plus import DeepLabV3PlusHead
from .heads.panoptic_deeplab import PanopticDeepLabHead
from .inference import PredictMixin
from .layers.conv import batch_norm
from .layers.resize import resize_align_corners, resize_and_rescale_offsets, scale_dimension
from .postprocess.panoptic_deeplab import panoptic_deeplab_postprocess
from .registry import model_builder, register_alias, register_model


@dataclass
class PanopticDeepLabPostprocessConfig:
    """Evaluator options of DeepLab2 that drive Panoptic-DeepLab post-processing."""

    center_threshold: float = 0.1
    nms_kernel: int = 13
    keep_k_centers: int = 400
    stuff_area_limit: int = 2048


@dataclass
class ModelConfig:
    """What a built model knows about itself (also written to config.json on export)."""

    architecture: str
    dataset: str
    output_stride: int
    crop_size: tuple[int, int] | None = None
    postprocess: dict[str, Any] = field(default_factory=dict)


class DeepLab(PredictMixin, nn.Module):
    """Encoder + decoder heads; semantic (DeepLabv3/v3+) or panoptic (Panoptic-DeepLab)."""

    def __init__(self, encoder: Backbone, decoder: nn.Module, *, dataset: DatasetInfo,
                 config: ModelConfig):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.dataset = dataset
        self.config = config
        self.is_panoptic = bool(getattr(decoder, "has_instance", False))
        self.postprocess_config = PanopticDeepLabPostprocessConfig(**config.postprocess)
        self.set_crop_size(config.crop_size)

    @property
    def tf_checkpoint_items(self) -> dict[str, str]:
        """DeepLab2 checkpoint item names -> attribute paths (``deeplab_zoo.weights``)."""
        items = {"encoder": "encoder"}
        items.update({k: f"decoder.{v}" for k, v in self.decoder.tf_checkpoint_items.items()})
        return items

    @property
    def output_stride(self) -> int:
        return self.config.output_stride

    def set_crop_size(self, crop_size: Sequence[int] | None) -> None:
        """Sets the training crop; the ASPP image pooling window follows DeepLab2's rule.

        ``None`` keeps global average pooling (what DeepLab2 does when the input equals
        the crop). Otherwise the pool is ``(crop - 1) / output_stride + 1`` per axis.
        """
        self.config.crop_size = None if crop_size is None else (int(crop_size[0]),
                                                                int(crop_size[1]))
        pool = None
        if crop_size is not None:
            pool = tuple(scale_dimension(c, 1.0 / self.output_stride) for c in crop_size)
        self.decoder.set_pool_size(pool)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x``: normalised NCHW float. Returns DeepLab2's raw outputs at input size."""
        size = x.shape[-2:]
        outputs = self.decoder(self.encoder(x))
        resized = {}
        for key, value in outputs.items():
            if "offset" in key:
                resized[key] = resize_and_rescale_offsets(value, size)
            else:
                resized[key] = resize_align_corners(value, size)
        return resized

    @torch.no_grad()
    def postprocess(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """DeepLab2's post-processed maps from ``forward``'s outputs (batched)."""
        if not self.is_panoptic:
            probs = torch.softmax(outputs["semantic_logits"].float(), dim=1)
            return {"semantic_pred": probs.argmax(dim=1).to(torch.int32)}
        cfg = self.postprocess_config
        return panoptic_deeplab_postprocess(
            outputs["semantic_logits"].float(), outputs["center_heatmap"].float(),
            outputs["offset_map"].float(), thing_class_ids=self.dataset.thing_class_ids,
            label_divisor=self.dataset.label_divisor, stuff_area_limit=cfg.stuff_area_limit,
            center_threshold=cfg.center_threshold, nms_kernel=cfg.nms_kernel,
            keep_k_centers=cfg.keep_k_centers, void_label=self.dataset.ignore_label)


# --------------------------------------------------------------------------------------
# Builders

def _build_encoder(name: str, output_stride: int, bn_eps: float, **kwargs) -> Backbone:
    return model_builder(name)(output_stride=output_stride, norm_layer=batch_norm(bn_eps),
                               **kwargs)


def _feature_channels(encoder: Backbone) -> dict[str, int]:
    return {spec.endpoint: spec.num_chs for spec in encoder.feature_specs}


def _atrous_rates(output_stride: int) -> tuple[int, int, int]:
    # DeepLab2 configs: (3, 6, 9) at os32, (6, 12, 18) at os16, (12, 24, 36) at os8.
    return {32: (3, 6, 9), 16: (6, 12, 18), 8: (12, 24, 36)}[output_stride]


def _dataset_and_classes(dataset: str | DatasetInfo,
                         num_classes: int | None) -> tuple[DatasetInfo, int]:
    info = dataset if isinstance(dataset, DatasetInfo) else get_dataset_info(dataset)
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    return info, num_classes or info.num_classes


def build_panoptic_deeplab(architecture: str, backbone: str, *, output_stride: int,
                           dataset: str | DatasetInfo = "cityscapes",
                           num_classes: int | None = None,
                           crop_size: Sequence[int] | None = None,
                           atrous_rates: Sequence[int] | None = None, bn_eps: float = 1e-3,
                           backbone_args: dict[str, Any] | None = None,
                           postprocess: dict[str, Any] | None = None,
                           **head_args) -> DeepLab:
    """Panoptic-DeepLab with DeepLab2's standard decoder layout on ``backbone``."""
    info, num_classes = _dataset_and_classes(dataset, num_classes)
    encoder = _build_encoder(backbone, output_stride, bn_eps, **(backbone_args or {}))
    rates = tuple(atrous_rates or _atrous_rates(output_stride))
    head = PanopticDeepLabHead(_feature_channels(encoder), num_classes, atrous_rates=rates,
                               norm_layer=batch_norm(bn_eps), **head_args)
    config = ModelConfig(architecture, info.name, output_stride, postprocess=postprocess or {})
    model = DeepLab(encoder, head, dataset=info, config=config)
    model.set_crop_size(crop_size)
    return model


def build_deeplabv3(architecture: str, backbone: str, *, output_stride: int = 32,
                    plus: bool = False, dataset: str | DatasetInfo = "cityscapes",
                    num_classes: int | None = None, crop_size: Sequence[int] | None = None,
                    atrous_rates: Sequence[int] = (6, 12, 18), bn_eps: float = 1e-3,
                    backbone_args: dict[str, Any] | None = None, **head_args) -> DeepLab:
    """DeepLabv3 (``plus=False``) or DeepLabv3+ as DeepLab2's example configs build them."""
    info, num_classes = _dataset_and_classes(dataset, num_classes)
    encoder = _build_encoder(backbone, output_stride, bn_eps, **(backbone_args or {}))
    channels = _feature_channels(encoder)
    norm = batch_norm(bn_eps)
    if plus:
        low_key = head_args.pop("low_level_key", "res2")
        head = DeepLabV3PlusHead(channels["res5"], channels[low_key], num_classes,
                                 low_level_key=low_key, atrous_rates=atrous_rates,
                                 norm_layer=norm, **head_args)
    else:
        head = DeepLabV3Head(channels["res5"], num_classes, atrous_rates=atrous_rates,
                             norm_layer=norm, **head_args)
    model = DeepLab(encoder, head, dataset=info,
                    config=ModelConfig(architecture, info.name, output_stride))
    model.set_crop_size(crop_size)
    return model


def _register(name: str, builder, **fixed) -> None:
    def build(**kwargs) -> DeepLab:
        return builder(name, **{**fixed, **kwargs})

    build.__name__ = name
    build.__doc__ = builder.__doc__
    register_model(build, default_tag="cityscapes", kind="model")


for _name, _backbone in (("resnet50", "resnet50"), ("mobilenet_v3_large", "mobilenet_v3_large")):
    _register(f"deeplabv3_{_name}", build_deeplabv3, backbone=_backbone)
_register("deeplabv3plus_resnet50", build_deeplabv3, backbone="resnet50", plus=True)

for _backbone in ("mobilenet_v3_small", "mobilenet_v3_large", "resnet50", "resnet50_beta"):
    for _os in (16, 32):
        _register(f"panoptic_deeplab_{_backbone}_os{_os}", build_panoptic_deeplab,
                  backbone=_backbone, output_stride=_os)
for _backbone in ("wide_resnet41", "swidernet_sac_1_1_1", "swidernet_sac_1_1_3",
                  "swidernet_sac_1_1_4_5"):
    _register(f"panoptic_deeplab_{_backbone}_os16", build_panoptic_deeplab,
              backbone=_backbone, output_stride=16)

register_alias("panoptic_deeplab_swidernet_sac", "panoptic_deeplab_swidernet_sac_1_1_4_5_os16")
