"""MaX-DeepLab (mask transformer with a dual-path memory), DeepLab2's ``DeepLab`` with the
``max_deeplab`` meta-architecture.

Encoder (:class:`~deeplab_zoo.backbones.max_deeplab.MaXDeepLabEncoder`: Axial-ResNet pixel
path + memory path of dual-path transformer layers + stacked decoder) -> MaX-DeepLab
prediction head (:class:`~deeplab_zoo.heads.max_deeplab_head.MaXDeepLabHead`, DeepLab2's
``MaXDeepLab`` decoder) -> pixel-wise mask-transformer post-processing.

``forward`` returns DeepLab2's raw outputs at their native strides (DeepLab2 does not
resize MaX-DeepLab outputs): ``semantic_logits`` (auxiliary semantic head; MaX-S runs
an auxiliary Panoptic-DeepLab decoder on the stride-16 backbone output, MaX-L reads its
stride-4 decoder feature directly), ``pixel_space_normalized_feature`` and
``pixel_space_mask_logits`` ``[N, K, h, w]`` at stride 4, ``transformer_class_logits``
``[N, K, C + 1]`` (thing-then-stuff class order, last = void; see
:mod:`deeplab_zoo.postprocess.mask_transformer`). ``postprocess`` resizes the masks to
the input size and returns panoptic / semantic / instance maps.

Crop size (``create_model(..., crop_size=...)``): DeepLab2 builds the model for its
training crop. It sets the auxiliary ASPP's image-pooling window
(``(crop - 1) / 16 + 1``, global at the crop itself), decides the resized-fuse paths of
the stacked decoder, and is checked against the axial attention span (at most 129
positions per axis at stride 16, i.e. crops up to 2049). Neither the memory (128
learned slots) nor the relative positional encodings (fixed ``2 * 255 - 1`` rows)
depend on it, so one model serves every input size.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ..backbones.max_deeplab import (
    MAX_DEEPLAB_L,
    MAX_DEEPLAB_S,
    MaXDeepLabEncoder,
    build_max_deeplab_encoder,
)
from ..data.datasets import DatasetInfo, get_dataset_info
from ..heads.max_deeplab_head import MaXDeepLabHead
from ..layers.conv import batch_norm
from ..layers.resize import scale_dimension
from ..postprocess.mask_transformer import (
    MaskTransformerPostprocessConfig,
)
from ..registry import PretrainedCfg, register_model, register_pretrained
from .deeplab import ModelConfig
from .mask_transformer import MaskTransformerMixin

RAW_OUTPUTS = ("semantic_logits", "pixel_space_normalized_feature", "pixel_space_mask_logits",
               "transformer_class_logits")


class MaXDeepLab(MaskTransformerMixin, nn.Module):
    """MaX-DeepLab encoder + prediction head (+ post-processing)."""

    def __init__(self, encoder: MaXDeepLabEncoder, predictor: MaXDeepLabHead, *,
                 dataset: DatasetInfo, config: ModelConfig,
                 postprocess_config: MaskTransformerPostprocessConfig):
        super().__init__()
        self.encoder = encoder
        self.predictor = predictor
        self.dataset = dataset
        self.config = config
        self.postprocess_config = postprocess_config
        self.mask_output_stride = encoder.high_resolution_output_stride
        self.is_panoptic = True
        self.set_crop_size(config.crop_size)

    @property
    def tf_checkpoint_items(self) -> dict[str, str]:
        """DeepLab2 checkpoint item names -> attribute paths (``deeplab_zoo.weights``)."""
        items = {"encoder": "encoder"}
        items.update({k: f"predictor.{v}" for k, v in self.predictor.tf_checkpoint_items.items()})
        return items

    @property
    def output_stride(self) -> int:
        return self.config.output_stride

    def set_crop_size(self, crop_size: Sequence[int] | None) -> None:
        """Sets the training crop: the auxiliary ASPP pooling window follows DeepLab2's rule
        (``(crop - 1) / output_stride + 1``; None = global pooling), and the crop is
        checked against the attention span."""
        crop = None if crop_size is None else (int(crop_size[0]), int(crop_size[1]))
        self.config.crop_size = crop
        pool = None
        if crop is not None:
            self.encoder.check_input_size(crop)
            pool = tuple(scale_dimension(c, 1.0 / self.output_stride) for c in crop)
        self.predictor.set_pool_size(pool)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x``: normalised NCHW float. Returns DeepLab2's raw outputs at native strides."""
        return self.predictor(self.encoder(x))


# --------------------------------------------------------------------------------------
# Builder

#: DeepLab2's evaluator options of ``configs/coco/max_deeplab`` at 641x641 (the 1025x1025
#: configs use thing / stuff area limits 256 / 4096).
MAX_DEEPLAB_POSTPROCESS = MaskTransformerPostprocessConfig(
    mode="pixelwise", pixel_confidence_threshold=0.4, class_confidence_threshold=0.7,
    thing_area_limit=100, stuff_area_limit=1600)

_ENCODERS = {"max_deeplab_s": MAX_DEEPLAB_S, "max_deeplab_l": MAX_DEEPLAB_L}


def build_max_deeplab(architecture: str, encoder: str, *, dataset: str | DatasetInfo = "coco",
                      num_classes: int | None = None, crop_size: Sequence[int] | None = None,
                      output_stride: int = 16, num_mask_slots: int = 128,
                      drop_path_keep_prob: float = 1.0, bn_eps: float = 1e-3,
                      bn_momentum: float = 0.99, encoder_args: dict[str, Any] | None = None,
                      postprocess: Mapping[str, Any] | None = None) -> MaXDeepLab:
    """MaX-DeepLab as DeepLab2's ``configs/coco/max_deeplab`` build it.

    Args:
        architecture: registry name recorded in the model config.
        encoder: ``'max_deeplab_s'`` or ``'max_deeplab_l'`` (DeepLab2's backbone names).
        dataset / num_classes: dataset descriptor (and an optional class count override).
        crop_size: training crop ``(H, W)`` (see the module docstring).
        output_stride: of the pixel path (16 in every DeepLab2 config).
        num_mask_slots: mask slots used (at most the 128 learned ones).
        drop_path_keep_prob: stochastic depth (training only; DeepLab2's configs: 0.8,
            linear schedule).
        encoder_args: extra :class:`~deeplab_zoo.backbones.max_deeplab.MaXDeepLabEncoder`
            arguments.
        postprocess: overrides of :class:`MaskTransformerPostprocessConfig` fields.
    """
    if encoder not in _ENCODERS:
        raise ValueError(f"encoder must be one of {sorted(_ENCODERS)}, got {encoder!r}")
    info = dataset if isinstance(dataset, DatasetInfo) else get_dataset_info(dataset)
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    num_classes = num_classes or info.num_classes
    crop = None if crop_size is None else (int(crop_size[0]), int(crop_size[1]))
    norm = batch_norm(bn_eps, bn_momentum)
    pixel_encoder = build_max_deeplab_encoder(
        _ENCODERS[encoder], output_stride=output_stride, norm_layer=norm,
        drop_path_keep_prob=drop_path_keep_prob, num_mask_slots=num_mask_slots,
        **(encoder_args or {}))
    # DeepLab2 runs the auxiliary semantic decoder only where the semantic feature is
    # coarser than the panoptic one (MaX-S: the backbone output at the output stride).
    semantic_decoder_features = None
    if pixel_encoder.extra_decoder_num_stacks == 0 and \
            output_stride != pixel_encoder.high_resolution_output_stride:
        channels = {spec.endpoint: spec.num_chs for spec in pixel_encoder.feature_specs}
        semantic_decoder_features = {"feature_semantic": pixel_encoder.semantic_channels,
                                     "res3": channels["res3"], "res2": channels["res2"]}
    memory_channels = pixel_encoder.class_feature_extra.out_channels
    predictor = MaXDeepLabHead(pixel_encoder.panoptic_channels, num_classes,
                               ignore_label=info.ignore_label, memory_channels=memory_channels,
                               semantic_channels=pixel_encoder.semantic_channels,
                               semantic_decoder_features=semantic_decoder_features,
                               norm_layer=norm)
    post = MAX_DEEPLAB_POSTPROCESS
    if postprocess:
        post = replace(post, **dict(postprocess))
    config = ModelConfig(architecture, info.name, output_stride, crop_size=crop,
                         postprocess=post.to_dict())
    return MaXDeepLab(pixel_encoder, predictor, dataset=info, config=config,
                      postprocess_config=post)


def _register(name: str) -> None:
    def build(**kwargs: Any) -> MaXDeepLab:
        return build_max_deeplab(name, name, **kwargs)

    build.__name__ = name
    build.__doc__ = f"MaX-DeepLab ({name}), DeepLab2's ``{name}`` config (COCO, os16)."
    register_model(build, default_tag="coco", kind="model")


_register("max_deeplab_s")
_register("max_deeplab_l")


# --------------------------------------------------------------------------------------
# Pretrained configurations: DeepLab2's MaX-DeepLab model zoo (g3doc/projects/max_deeplab.md),
# COCO val, single scale, PQ by the official script. One tag per released checkpoint
# (``coco_res{crop}_{steps}``); ``coco`` is the longest-trained checkpoint at the
# architecture's usual resolution (641 for S, 1025 for L).

_ZOO = "https://storage.googleapis.com/gresearch/tf-deeplab/checkpoint/"
_MAX_MD = "https://github.com/google-research/deeplab2/blob/main/g3doc/projects/max_deeplab.md"
#: evaluator_options area limits by training resolution (configs/coco/max_deeplab).
_AREA_LIMITS = {641: (100, 1600), 1025: (256, 4096)}

_RELEASES = (  # arch, resolution, steps (k), (PQ, PQ_thing, PQ_stuff)
    ("max_deeplab_s", 641, 100, (45.9, 49.2, 40.9)),
    ("max_deeplab_s", 641, 200, (46.5, 50.6, 40.4)),
    ("max_deeplab_s", 641, 400, (47.0, 51.3, 40.5)),
    ("max_deeplab_s", 1025, 100, (47.9, 52.1, 41.5)),
    ("max_deeplab_s", 1025, 200, (48.7, 53.6, 41.3)),
    ("max_deeplab_s", 1025, 400, (49.0, 54.0, 41.4)),
    ("max_deeplab_l", 1025, 100, (50.9, 56.9, 42.0)),
    ("max_deeplab_l", 1025, 200, (51.1, 56.8, 42.5)),
    ("max_deeplab_l", 1025, 400, (51.3, 57.5, 42.0)),
)
_DEFAULT_RELEASE = {"max_deeplab_s": (641, 400), "max_deeplab_l": (1025, 400)}


def _cfg(arch: str, tag: str, resolution: int, steps: int,
         metrics: tuple[float, float, float]) -> None:
    thing_limit, stuff_limit = _AREA_LIMITS[resolution]
    ckpt = f"{arch}_os16_res{resolution}_{steps}k_coco_train.tar.gz"
    register_pretrained(PretrainedCfg(
        architecture=arch, tag=tag, dataset="coco", url=_ZOO + ckpt,
        crop_size=(resolution, resolution),
        model_args={"drop_path_keep_prob": 0.8,
                    "postprocess": {"thing_area_limit": thing_limit,
                                    "stuff_area_limit": stuff_limit}},
        metrics=dict(zip(("pq", "pq_thing", "pq_stuff"), metrics)), source=_MAX_MD))


for _arch, _res, _steps, _metrics in _RELEASES:
    _cfg(_arch, f"coco_res{_res}_{_steps}k", _res, _steps, _metrics)
    if _DEFAULT_RELEASE[_arch] == (_res, _steps):
        _cfg(_arch, "coco", _res, _steps, _metrics)
