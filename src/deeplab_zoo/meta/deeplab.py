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

from .. import ops
from ..backbones.base import Backbone
from ..data.datasets import DatasetInfo, get_dataset_info
from ..heads.deeplabv3 import DeepLabV3Head
from ..heads.deeplabv3plus import DeepLabV3PlusHead
from ..heads.panoptic_deeplab import PanopticDeepLabHead
from ..inference import PredictMixin
from ..layers.conv import batch_norm
from ..layers.resize import resize_align_corners, resize_and_rescale_offsets, scale_dimension
from ..postprocess.panoptic_deeplab import semantic_argmax
from ..registry import (
    PretrainedCfg,
    model_builder,
    register_alias,
    register_model,
    register_pretrained,
)


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
        self.decoder.set_pool_size(self._pool_size())

    def _pool_size(self, scale: float = 1.0) -> tuple[int, int] | None:
        """ASPP pool window for the crop, scaled as DeepLab2's multi-scale eval scales it."""
        if self.config.crop_size is None:
            return None
        pool = [scale_dimension(c, 1.0 / self.output_stride) for c in self.config.crop_size]
        return tuple(scale_dimension(p, scale) for p in pool)

    @staticmethod
    def _resize_outputs(outputs: dict[str, torch.Tensor], size: Sequence[int],
                        flipped: bool = False) -> dict[str, torch.Tensor]:
        """DeepLab2's ``_resize_predictions``: un-flip (negating dx), then resize to ``size``."""
        resized = {}
        for key, value in outputs.items():
            if flipped:
                value = value.flip(-1)
                if "offset" in key:
                    value = value * value.new_tensor([1.0, -1.0]).view(1, 2, 1, 1)
            if "offset" in key:
                resized[key] = resize_and_rescale_offsets(value, size)
            else:
                resized[key] = resize_align_corners(value, size)
        return resized

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x``: normalised NCHW float. Returns DeepLab2's raw outputs at input size."""
        return self._resize_outputs(self.decoder(self.encoder(x)), x.shape[-2:])

    def forward_tta(self, x: torch.Tensor, scales: Sequence[float] = (1.0,),
                    flip: bool = False) -> dict[str, torch.Tensor]:
        """DeepLab2's multi-scale / flipped evaluation (``eval_scales``, ``add_flipped_images``).

        Per scale the image is resized (bilinear, align_corners) to
        ``(size - 1) * scale + 1`` and the ASPP pool window scaled likewise; every raw
        output is resized back to the input size (flipped ones un-flipped, dx negated)
        and averaged. ``semantic_probs`` is the average of the per-pass softmax, which
        is what DeepLab2's post-processor takes the argmax of.
        """
        if not scales or any(float(s) <= 0 for s in scales):
            raise ValueError(f"scales must be a non-empty sequence of positive numbers, "
                             f"got {scales!r}")
        size = x.shape[-2:]
        passes: list[dict[str, torch.Tensor]] = []
        try:
            for scale in map(float, scales):
                image = x if scale == 1.0 else resize_align_corners(
                    x, [scale_dimension(s, scale) for s in size])
                self.decoder.set_pool_size(self._pool_size(scale))
                for flipped in (False, True) if flip else (False,):
                    raw = self.decoder(self.encoder(image.flip(-1) if flipped else image))
                    out = self._resize_outputs(raw, size, flipped)
                    out["semantic_probs"] = torch.softmax(out["semantic_logits"].float(), dim=1)
                    passes.append(out)
        finally:
            self.decoder.set_pool_size(self._pool_size())
        return {key: torch.stack([p[key] for p in passes]).mean(0) for key in passes[0]}

    @torch.no_grad()
    def postprocess(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """DeepLab2's post-processed maps from ``forward``'s outputs (batched).

        With ``semantic_probs`` (from :meth:`forward_tta`) the classes come from the
        averaged probabilities, as in DeepLab2; otherwise from ``semantic_logits``.
        """
        logits = outputs["semantic_logits"].float()
        if "semantic_probs" in outputs:  # softmax(log p) = p: argmax of the averaged probs
            logits = outputs["semantic_probs"].float().clamp_min(1e-30).log()
        if not self.is_panoptic:
            return {"semantic_pred": semantic_argmax(logits)}
        cfg = self.postprocess_config
        # The native ops when built (bit-identical to the pure-PyTorch reference).
        return ops.panoptic_deeplab_postprocess(
            logits, outputs["center_heatmap"].float(),
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


# --------------------------------------------------------------------------------------
# Pretrained configurations (data, as timm's default_cfgs): URLs from DeepLab2's model zoo
# (g3doc/projects/*.md), metrics as published there. A tag without a URL only fixes
# dataset settings.

_ZOO = "https://storage.googleapis.com/gresearch/tf-deeplab/checkpoint/"
_PDL_MD = "https://github.com/google-research/deeplab2/blob/main/g3doc/projects/panoptic_deeplab.md"
_MOTION_MD = "https://github.com/google-research/deeplab2/blob/main/g3doc/projects/motion_deeplab.md"

_CITYSCAPES_PDL = {"nms_kernel": 13, "stuff_area_limit": 2048}
_COCO_PDL = {"nms_kernel": 41, "stuff_area_limit": 4096}
_STEP_PDL = {"nms_kernel": 13, "stuff_area_limit": 0}


def _cfg(arch: str, tag: str, *, dataset: str | None = None, ckpt: str = "",
         crop: tuple[int, int] | None = None, postprocess: dict | None = None,
         bn_eps: float | None = None, metrics: dict | None = None, source: str = "") -> None:
    model_args: dict = {}
    if postprocess is not None:
        model_args["postprocess"] = dict(postprocess)
    if bn_eps is not None:
        model_args["bn_eps"] = bn_eps
    register_pretrained(PretrainedCfg(
        architecture=arch, tag=tag, dataset=dataset or tag, url=_ZOO + ckpt if ckpt else "",
        crop_size=crop, model_args=model_args, metrics=metrics or {}, source=source))


_CS_CROP = (1025, 2049)
_COCO_CROP = (641, 641)

# DeepLab2 example configs (no released checkpoints).
for _arch in ("deeplabv3_resnet50", "deeplabv3plus_resnet50", "deeplabv3_mobilenet_v3_large"):
    _cfg(_arch, "cityscapes", crop=_CS_CROP)

# Panoptic-DeepLab, Cityscapes (PQ / mIoU single scale, from panoptic_deeplab.md).
for _size, _pq, _miou in (("small", 48.4, 69.5), ("large", 55.3, 74.5)):
    _cfg(f"panoptic_deeplab_mobilenet_v3_{_size}_os16", "cityscapes", crop=_CS_CROP,
         ckpt=f"mobilenet_v3_{_size}_os16_panoptic_deeplab_cityscapes_dwo.tar.gz",
         postprocess={"nms_kernel": 7, "stuff_area_limit": 2048}, bn_eps=1e-5,
         metrics={"pq": _pq, "miou": _miou}, source=_PDL_MD)
    _cfg(f"panoptic_deeplab_mobilenet_v3_{_size}_os32", "cityscapes", crop=_CS_CROP,
         postprocess=_CITYSCAPES_PDL)
_cfg("panoptic_deeplab_resnet50_os32", "cityscapes", crop=_CS_CROP, postprocess=_CITYSCAPES_PDL,
     ckpt="resnet50_os32_panoptic_deeplab_cityscapes_trainfine.tar.gz",
     metrics={"pq": 59.8, "miou": 76.0, "ap": 30.01}, source=_PDL_MD)
_cfg("panoptic_deeplab_resnet50_beta_os32", "cityscapes", crop=_CS_CROP,
     postprocess=_CITYSCAPES_PDL,
     ckpt="resnet50_beta_os32_panoptic_deeplab_cityscapes_trainfine.tar.gz",
     metrics={"pq": 60.8, "miou": 77.0, "ap": 31.58}, source=_PDL_MD)
_cfg("panoptic_deeplab_wide_resnet41_os16", "cityscapes", crop=_CS_CROP,
     postprocess=_CITYSCAPES_PDL,
     ckpt="wide_resnet41_os16_panoptic_deeplab_cityscapes_trainfine.tar.gz",
     metrics={"pq": 64.4, "miou": 81.5, "ap": 36.07}, source=_PDL_MD)
for _mult, _file, _pq, _miou, _ap in (("1_1_1", "1_1_1", 64.3, 81.8, 36.80),
                                      ("1_1_3", "1_1_3", 66.6, 82.1, 38.59),
                                      ("1_1_4_5", "1_1_4.5", 66.8, 82.2, 39.51)):
    _cfg(f"panoptic_deeplab_swidernet_sac_{_mult}_os16", "cityscapes", crop=_CS_CROP,
         postprocess=_CITYSCAPES_PDL,
         ckpt=f"swidernet_sac_{_file}_os16_panoptic_deeplab_cityscapes_trainfine.tar.gz",
         metrics={"pq": _pq, "miou": _miou, "ap": _ap}, source=_PDL_MD)
for _arch in ("panoptic_deeplab_resnet50_os16", "panoptic_deeplab_resnet50_beta_os16"):
    _cfg(_arch, "cityscapes", crop=_CS_CROP, postprocess=_CITYSCAPES_PDL)

# Panoptic-DeepLab, COCO (PQ single scale).
for _arch, _file, _pq in (("resnet50_os32", "resnet50_os32_panoptic_deeplab_coco_train_2", 34.1),
                          ("resnet50_beta_os32", "resnet50beta_os32_panoptic_deeplab_coco_train",
                           34.6),
                          ("resnet50_os16", "resnet50_os16_panoptic_deeplab_coco_train", 35.1),
                          ("resnet50_beta_os16", "resnet50beta_os16_panoptic_deeplab_coco_train",
                           35.2)):
    _cfg(f"panoptic_deeplab_{_arch}", "coco", crop=_COCO_CROP, postprocess=_COCO_PDL,
         ckpt=f"{_file}.tar.gz", metrics={"pq": _pq}, source=_PDL_MD)

# Panoptic-DeepLab, KITTI-STEP / MOTChallenge-STEP (STQ from motion_deeplab.md).
_cfg("panoptic_deeplab_resnet50_os32", "kitti_step", crop=(385, 1249), postprocess=_STEP_PDL,
     ckpt="resnet50_os32_panoptic_deeplab_kitti_train.tar.gz",
     metrics={"stq": 48.31, "aq": 42.22, "sq": 71.16}, source=_MOTION_MD)
_cfg("panoptic_deeplab_resnet50_os32", "motchallenge_step", crop=(1089, 1921),
     postprocess=_STEP_PDL)
