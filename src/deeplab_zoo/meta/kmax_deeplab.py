"""kMaX-DeepLab (k-means Mask Transformer), DeepLab2's ``model/kmax_deeplab.py``.

Pixel encoder (ResNet-50, ConvNeXt, ...) -> kMaX pixel decoder -> k-means transformer
decoder (cluster centres = mask slots) -> MaX-DeepLab prediction head -> mask-wise
post-processing. ``forward`` returns DeepLab2's raw outputs at their native strides
(not resized): ``semantic_logits`` (auxiliary semantic head), ``pixel_space_normalized_feature``,
``pixel_space_mask_logits`` ``[N, K, h, w]`` and ``transformer_class_logits``
``[N, K, C + 1]`` (class channels in DeepLab2's thing-then-stuff order, last = void;
see :mod:`deeplab_zoo.postprocess.mask_transformer`). ``postprocess`` resizes the masks
to the input size and returns panoptic / semantic / instance maps.

As in DeepLab2, several settings follow the dataset (Cityscapes vs COCO/ADE20K):
number of mask slots (256 / 128), the pixel decoder's highest resolution (encoder
``stage1`` / stride 4), the auxiliary semantic decoder (off / on) and the transformer
decoder's drop path (0.8, 1.0 on ADE20K).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ..backbones.axial_resnet import attention_block_config
from ..backbones.base import Backbone
from ..data.datasets import DatasetInfo, get_dataset_info
from ..heads.kmax_pixel_decoder import KMAX_PIXEL_DECODER_LAYOUTS, KMaXPixelDecoder
from ..heads.kmax_transformer_decoder import KMaXTransformerDecoder
from ..heads.max_deeplab_head import MaXDeepLabHead
from ..layers.conv import batch_norm
from ..postprocess.mask_transformer import (
    MaskTransformerPostprocessConfig,
)
from ..registry import PretrainedCfg, model_builder, register_model, register_pretrained
from .deeplab import ModelConfig
from .mask_transformer import MaskTransformerMixin

RAW_OUTPUTS = ("semantic_logits", "pixel_space_normalized_feature", "pixel_space_mask_logits",
               "transformer_class_logits")


class KMaXDeepLab(MaskTransformerMixin, nn.Module):
    """Pixel encoder + pixel decoder + k-means transformer decoder + prediction head.

    ``mask_output_stride`` is the stride of the mask logits (2 or 4); ``postprocess``
    uses it to recover the input size, ``(h - 1) * stride + 1``.
    """

    def __init__(self, encoder: Backbone, pixel_decoder: KMaXPixelDecoder,
                 transformer_decoder: KMaXTransformerDecoder, predictor: MaXDeepLabHead, *,
                 dataset: DatasetInfo, config: ModelConfig, mask_output_stride: int,
                 postprocess_config: MaskTransformerPostprocessConfig):
        super().__init__()
        self.encoder = encoder
        self.pixel_decoder = pixel_decoder
        self.transformer_decoder = transformer_decoder
        self.predictor = predictor
        self.dataset = dataset
        self.config = config
        self.mask_output_stride = mask_output_stride
        self.postprocess_config = postprocess_config
        self.is_panoptic = True

    @property
    def tf_checkpoint_items(self) -> dict[str, str]:
        """DeepLab2 checkpoint item names -> attribute paths (``deeplab_zoo.weights``)."""
        items = {"encoder": "encoder", "pixel_decoder": "pixel_decoder",
                 "transformer_decoder": "transformer_decoder"}
        items.update({k: f"predictor.{v}" for k, v in self.predictor.tf_checkpoint_items.items()})
        return items

    @property
    def output_stride(self) -> int:
        return self.config.output_stride

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        """``x``: normalised NCHW float. Returns DeepLab2's raw outputs at native strides
        (plus ``auxiliary_outputs``, one dict per transformer layer, in training mode)."""
        endpoints = self.encoder(x)
        decoded = self.pixel_decoder(endpoints)
        class_feature, mask_feature, auxiliary = self.transformer_decoder(
            [decoded["decoder_stage1"], decoded["decoder_stage2"], decoded["decoder_stage3"]])
        outputs = self.predictor({
            **endpoints,
            "feature_semantic": endpoints["stage5"],
            "feature_panoptic": decoded["decoder_output"],
            "transformer_class_feature": class_feature,
            "transformer_mask_feature": mask_feature,
        })
        if self.training:
            outputs["auxiliary_outputs"] = tuple(auxiliary)
        return outputs


# --------------------------------------------------------------------------------------
# Builder

#: DeepLab2 evaluator options of the kMaX configs, by dataset.
KMAX_POSTPROCESS: dict[str, MaskTransformerPostprocessConfig] = {
    "cityscapes": MaskTransformerPostprocessConfig(
        mode="maskwise", thing_class_confidence_threshold=0.5,
        stuff_class_confidence_threshold=0.3, overlapping_threshold=0.9,
        reorder_class_weight=1.0, reorder_mask_weight=0.0, thing_area_limit=256,
        stuff_area_limit=2048),
    "coco": MaskTransformerPostprocessConfig(
        mode="maskwise", thing_class_confidence_threshold=0.7,
        stuff_class_confidence_threshold=0.5, overlapping_threshold=0.8,
        reorder_class_weight=1.0, reorder_mask_weight=1.0, thing_area_limit=400,
        stuff_area_limit=6400),
    "ade20k": MaskTransformerPostprocessConfig(
        mode="maskwise", thing_class_confidence_threshold=0.4,
        stuff_class_confidence_threshold=0.4, overlapping_threshold=0.8,
        reorder_class_weight=1.0, reorder_mask_weight=1.0, thing_area_limit=0,
        stuff_area_limit=0),
}


def dataset_settings(dataset_name: str) -> dict[str, Any]:
    """What DeepLab2's ``KMaXDeepLab`` hard-codes by dataset name."""
    if "cityscapes" in dataset_name:
        return {"high_resolution_output_stride": 2, "num_mask_slots": 256,
                "use_auxiliary_semantic_decoder": False,
                "transformer_decoder_drop_path_keep_prob": 0.8}
    keep = 1.0 if "ade20k" in dataset_name else 0.8
    return {"high_resolution_output_stride": 4, "num_mask_slots": 128,
            "use_auxiliary_semantic_decoder": True,
            "transformer_decoder_drop_path_keep_prob": keep}


def _default_postprocess(dataset_name: str) -> MaskTransformerPostprocessConfig:
    for key in ("cityscapes", "coco", "ade20k"):
        if key in dataset_name:
            return KMAX_POSTPROCESS[key]
    return KMAX_POSTPROCESS["coco"]


def _endpoint_info(encoder: Backbone) -> dict[str, tuple[int, int]]:
    """``stageK`` -> (channels, stride) for K = 1..5 from the encoder's feature specs.

    An encoder without a ``res1`` spec (ConvNeXt: stem at stride 4) has a ``stage1``
    endpoint like its shallowest level.
    """
    specs = {spec.endpoint: spec for spec in encoder.feature_specs}
    shallowest = encoder.feature_specs[0]
    info = {}
    for k in range(1, 6):
        spec = specs.get(f"res{k}", shallowest if k == 1 else None)
        if spec is None:
            raise ValueError(f"kMaX needs encoder endpoint res{k}/stage{k}")
        stride = getattr(encoder, "stem_reduction", spec.reduction) if k == 1 else spec.reduction
        info[f"stage{k}"] = (spec.num_chs, stride)
    return info


def _size_at_stride(size: int, stride: int) -> int:
    """Spatial size after ``log2(stride)`` 'same' stride-2 reductions: ``(n - 1) // 2 + 1``."""
    for _ in range(int(round(math.log2(stride)))):
        size = (size - 1) // 2 + 1
    return size


def build_kmax_deeplab(architecture: str, pixel_encoder: str, *,
                       dataset: str | DatasetInfo = "cityscapes", num_classes: int | None = None,
                       crop_size: Sequence[int] | None = None,
                       drop_path_keep_prob: float = 1.0, bn_eps: float = 1e-3,
                       bn_momentum: float = 0.99, encoder_args: dict[str, Any] | None = None,
                       num_mask_slots: int | None = None,
                       high_resolution_output_stride: int | None = None,
                       use_auxiliary_semantic_decoder: bool | None = None,
                       transformer_decoder_drop_path_keep_prob: float | None = None,
                       block_config: dict[str, Any] | None = None,
                       postprocess: Mapping[str, Any] | None = None) -> KMaXDeepLab:
    """kMaX-DeepLab on the registered backbone ``pixel_encoder``, set up as DeepLab2 does.

    Args:
        architecture: registry name recorded in the model config.
        pixel_encoder: registered backbone name (``resnet50``, ``convnext_tiny``, ...).
        dataset / num_classes: dataset descriptor (and an optional class count override).
        crop_size: training crop ``(H, W)``. DeepLab2 builds the pixel encoder/decoder
            for it; here it only decides DeepLab2's shape-dependent layer choices
            (strided fusions for crops of at most 16 px) and is recorded in the config;
            the model runs at any input size.
        drop_path_keep_prob: the pixel encoder's (training only).
        encoder_args: extra backbone arguments.
        num_mask_slots / high_resolution_output_stride / use_auxiliary_semantic_decoder /
            transformer_decoder_drop_path_keep_prob: default to DeepLab2's dataset rule
            (:func:`dataset_settings`).
        block_config: extra block arguments for the pixel decoder (e.g. ``{'axial': ...}``).
        postprocess: overrides of :class:`MaskTransformerPostprocessConfig` fields
            (default: the dataset's kMaX config).
    """
    info = dataset if isinstance(dataset, DatasetInfo) else get_dataset_info(dataset)
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    num_classes = num_classes or info.num_classes
    settings = dataset_settings(info.name)
    for key, value in (("num_mask_slots", num_mask_slots),
                       ("high_resolution_output_stride", high_resolution_output_stride),
                       ("use_auxiliary_semantic_decoder", use_auxiliary_semantic_decoder),
                       ("transformer_decoder_drop_path_keep_prob",
                        transformer_decoder_drop_path_keep_prob)):
        if value is not None:
            settings[key] = value
    if settings["high_resolution_output_stride"] not in KMAX_PIXEL_DECODER_LAYOUTS:
        raise ValueError(f"high_resolution_output_stride must be one of "
                         f"{sorted(KMAX_PIXEL_DECODER_LAYOUTS)}, got "
                         f"{settings['high_resolution_output_stride']!r}")
    crop = None if crop_size is None else (int(crop_size[0]), int(crop_size[1]))

    norm = batch_norm(bn_eps, bn_momentum)
    encoder = model_builder(pixel_encoder)(output_stride=32, norm_layer=norm,
                                           drop_path_keep_prob=drop_path_keep_prob,
                                           **(encoder_args or {}))
    endpoints = _endpoint_info(encoder)
    channels = {name: c for name, (c, _) in endpoints.items()}
    sizes = None
    if crop is not None:
        sizes = {name: (_size_at_stride(crop[0], s), _size_at_stride(crop[1], s))
                 for name, (_, s) in endpoints.items()}
    dims, num_blocks, block_types = KMAX_PIXEL_DECODER_LAYOUTS[
        settings["high_resolution_output_stride"]]
    pixel_decoder = KMaXPixelDecoder(channels, dims=dims, num_blocks=num_blocks,
                                     block_types=block_types, feature_sizes=sizes,
                                     activation="gelu", norm_layer=norm,
                                     block_config=block_config)
    transformer_decoder = KMaXTransformerDecoder(
        pixel_decoder.stage_channels[:3], num_classes=num_classes, ignore_label=info.ignore_label,
        num_mask_slots=settings["num_mask_slots"],
        drop_path_keep_prob=settings["transformer_decoder_drop_path_keep_prob"],
        activation="gelu", norm_layer=norm)
    semantic_decoder_features = None
    if settings["use_auxiliary_semantic_decoder"]:
        by_res = {spec.endpoint: spec.num_chs for spec in encoder.feature_specs}
        semantic_decoder_features = {"feature_semantic": channels["stage5"],
                                     "res3": by_res["res3"], "res2": by_res["res2"]}
    predictor = MaXDeepLabHead(pixel_decoder.out_channels, num_classes,
                               ignore_label=info.ignore_label, semantic_channels=channels["stage5"],
                               semantic_decoder_features=semantic_decoder_features,
                               activation="gelu", norm_layer=norm)
    post = _default_postprocess(info.name)
    if postprocess:
        post = replace(post, **dict(postprocess))
    last_stage = pixel_decoder.endpoints[-1]
    config = ModelConfig(architecture, info.name, 32, crop_size=crop, postprocess=post.to_dict())
    return KMaXDeepLab(encoder, pixel_decoder, transformer_decoder, predictor, dataset=info,
                       config=config, mask_output_stride=endpoints[last_stage][1],
                       postprocess_config=post)


def register_kmax_variant(name: str, pixel_encoder: str, *,
                          encoder_args: dict[str, Any] | None = None,
                          drop_path_keep_prob: float = 1.0) -> None:
    """Registers ``name`` as kMaX-DeepLab on the backbone ``pixel_encoder``.

    This is all a new pixel encoder needs (e.g. ``kmax_deeplab_axial_r50`` on an axial
    ResNet-50 backbone), plus its pretrained table entries.
    """
    fixed = {"pixel_encoder": pixel_encoder, "encoder_args": dict(encoder_args or {}),
             "drop_path_keep_prob": drop_path_keep_prob}

    def build(**kwargs: Any) -> KMaXDeepLab:
        return build_kmax_deeplab(name, **{**fixed, **kwargs})

    build.__name__ = name
    build.__doc__ = f"kMaX-DeepLab with the {pixel_encoder} pixel encoder (DeepLab2)."
    register_model(build, default_tag="cityscapes", kind="model")


# DeepLab2's kMaX ResNet-50 pixel encoder: AxialResNet 'resnet50' in classification mode
# at output stride 32 (= our resnet50) with the linear drop path schedule.
register_kmax_variant("kmax_deeplab_r50", "resnet50",
                      encoder_args={"drop_path_schedule": "linear"})
for _size, _keep in (("tiny", 0.8), ("small", 0.7), ("base", 0.6), ("large", 0.4)):
    register_kmax_variant(f"kmax_deeplab_convnext_{_size}", f"convnext_{_size}",
                          drop_path_keep_prob=_keep)
# DeepLab2's ``kmax_axial_resnet50`` (model/pixel_encoder/axial_resnet.py): the MaX-S
# backbone with GeLU - ResNet-50-beta, axial blocks (default layer config) from stride 16,
# output stride 32, linear drop path schedule; every config uses keep prob 0.8.
register_kmax_variant("kmax_deeplab_axial_r50", "resnet50_beta", drop_path_keep_prob=0.8,
                      encoder_args={"use_axial_beyond_stride": 16, "activation": "gelu",
                                    "drop_path_schedule": "linear",
                                    "block_config": attention_block_config()})


# --------------------------------------------------------------------------------------
# Pretrained configurations: DeepLab2's kMaX model zoo (g3doc/projects/kmax_deeplab.md).
# Metrics are the official-script numbers (single scale); ``drop_path_keep_prob`` is the
# config's backbone value (training only).

_ZOO = "https://storage.googleapis.com/gresearch/tf-deeplab/checkpoint/"
_KMAX_MD = "https://github.com/google-research/deeplab2/blob/main/g3doc/projects/kmax_deeplab.md"
_CROPS = {"cityscapes": (1025, 2049), "coco": (1281, 1281), "ade20k": (641, 641),
          "ade20k_res1281": (1281, 1281), "coco_unlabeled": (1281, 1281)}


def _cfg(arch: str, tag: str, ckpt: str, keep: float, metrics: dict[str, float]) -> None:
    dataset = tag.split("_")[0]
    register_pretrained(PretrainedCfg(
        architecture=arch, tag=tag, dataset=dataset, url=_ZOO + ckpt + ".tar.gz" if ckpt else "",
        crop_size=_CROPS[tag], model_args={"drop_path_keep_prob": keep}, metrics=metrics,
        source=_KMAX_MD if ckpt else ""))


_COCO = (  # arch, ckpt, keep, (val PQ, PQ_th, PQ_st, test PQ)
    ("kmax_deeplab_r50", "kmax_resnet50_coco_train", 1.0, (53.0, 58.3, 44.9, 53.4)),
    ("kmax_deeplab_axial_r50", "kmax_maxs_gelu_coco_train", 0.8, (56.2, 62.2, 47.1, 56.4)),
    ("kmax_deeplab_convnext_tiny", "kmax_convnext_tiny_coco_train", 0.7, (55.3, 61.0, 46.7, 55.7)),
    ("kmax_deeplab_convnext_small", "kmax_convnext_small_coco_train", 0.6,
     (56.3, 62.2, 47.5, 57.0)),
    ("kmax_deeplab_convnext_base", "kmax_convnext_base_coco_train", 0.5, (57.2, 63.4, 47.8, 57.8)),
    ("kmax_deeplab_convnext_large", "kmax_convnext_large_coco_train", 0.4,
     (57.9, 64.0, 48.6, 58.0)),
)
for _arch, _ckpt, _keep, (_pq, _th, _st, _test) in _COCO:
    _cfg(_arch, "coco", _ckpt, _keep, {"pq": _pq, "pq_thing": _th, "pq_stuff": _st,
                                       "test_pq": _test})
_cfg("kmax_deeplab_convnext_large", "coco_unlabeled", "kmax_convnext_large_coco_train_unlabeled",
     0.4, {"pq": 58.1, "pq_thing": 64.3, "pq_stuff": 48.8, "test_pq": 58.5})

_CITYSCAPES = (  # arch, ckpt, keep, (PQ, PQ_th, PQ_st, AP, mIoU)
    ("kmax_deeplab_r50", "kmax_resnet50_cityscapes_train", 1.0, (64.3, 57.7, 69.1, 38.5, 79.7)),
    ("kmax_deeplab_axial_r50", "kmax_maxs_gelu_cityscapes_train", 0.8,
     (66.4, 61.2, 70.2, 41.6, 82.1)),
    ("kmax_deeplab_convnext_tiny", "kmax_convnext_tiny_cityscapes_train", 0.8,
     (66.3, 60.2, 70.8, 41.2, 82.6)),
    ("kmax_deeplab_convnext_small", "kmax_convnext_small_cityscapes_train", 0.7,
     (67.3, 61.6, 71.5, 42.6, 83.1)),
    ("kmax_deeplab_convnext_base", "kmax_convnext_base_cityscapes_train", 0.6,
     (68.0, 62.6, 72.0, 43.0, 83.1)),
    ("kmax_deeplab_convnext_large", "kmax_convnext_large_cityscapes_train", 0.4,
     (68.4, 62.9, 72.4, 44.0, 83.5)),
)
for _arch, _ckpt, _keep, (_pq, _th, _st, _ap, _miou) in _CITYSCAPES:
    _cfg(_arch, "cityscapes", _ckpt, _keep, {"pq": _pq, "pq_thing": _th, "pq_stuff": _st,
                                             "ap": _ap, "miou": _miou})

_ADE20K = (  # arch, tag, ckpt, keep, (PQ, PQ_th, PQ_st, mIoU)
    ("kmax_deeplab_r50", "ade20k", "kmax_resnet50_res641_ade20k_train", 1.0,
     (41.5, 40.4, 43.7, 45.0)),
    ("kmax_deeplab_r50", "ade20k_res1281", "kmax_resnet50_res1281_ade20k_train", 1.0,
     (42.3, 42.2, 42.5, 45.3)),
    ("kmax_deeplab_convnext_large", "ade20k", "kmax_convnext_large_res641_ade20k_train", 0.3,
     (48.7, 48.0, 50.0, 54.8)),
    ("kmax_deeplab_convnext_large", "ade20k_res1281", "kmax_convnext_large_res1281_ade20k_train",
     0.3, (50.9, 51.0, 50.7, 55.2)),
)
for _arch, _tag, _ckpt, _keep, (_pq, _th, _st, _miou) in _ADE20K:
    _cfg(_arch, _tag, _ckpt, _keep, {"pq": _pq, "pq_thing": _th, "pq_stuff": _st,
                                     "miou": _miou})
# ADE20K settings without a released checkpoint (DeepLab2 has no config for these).
for _size, _keep in (("tiny", 0.8), ("small", 0.7), ("base", 0.6)):
    _cfg(f"kmax_deeplab_convnext_{_size}", "ade20k", "", _keep, {})
