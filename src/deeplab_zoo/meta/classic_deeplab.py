"""The original research/deeplab (TF1) models: DeepLabv3 / v3+ / DPC / Auto-DeepLab.

:class:`ClassicDeepLab` is DeepLab2's :class:`~deeplab_zoo.meta.deeplab.DeepLab` with
research/deeplab's heads (``heads/classic_deeplab.py``) and backbones (Xception,
MobileNetV2, ResNet-v1-beta, Auto-DeepLab), and three research/deeplab specifics:

- ``tf_name_map``: TF-Slim checkpoint names (``xception_65/...``, ``aspp1_depthwise/...``,
  ``logits/semantic/...``) -> ``state_dict`` keys, for ``deeplab_zoo.weights``;
- ``forward`` returns ``semantic_logits`` bilinearly resized (align_corners) from the
  logits stride to the input size, as ``model.predict_labels`` does before its argmax;
- ``predict(images, scales=..., flip=...)`` evaluates as ``eval.py`` /
  ``model.predict_labels_multi_scale``: per scale (and its left-right flip) the logits
  are resized to the input size and soft-maxed, the probabilities are averaged, then
  argmax. (research/deeplab averages softmax probabilities, not logits.)

Inputs are normalised like every model here: ``x * (2 / 255) - 1`` = ``x / 127.5 - 1``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..backbones.base import Backbone
from ..data.datasets import DatasetInfo, register_dataset_info
from ..data.voc import VOC_INFO
from ..heads.classic_deeplab import DPC_BRANCH5_TOP1_CITYSCAPES, ClassicDeepLabHead
from ..inference import padded_size
from ..layers.resize import resize_align_corners, scale_dimension
from ..registry import PretrainedCfg, model_builder, register_model, register_pretrained
from ..weights.convert import SKIP
from ..weights.tf_slim import is_training_variable
from .deeplab import DeepLab, ModelConfig, _dataset_and_classes

assert VOC_INFO.name == "voc"  # data.voc registers the dataset descriptor
#: ImageNet (slim's 1001 classes, 0 = background) for the backbones' ``.imagenet`` tags.
register_dataset_info(DatasetInfo("imagenet", 1001, 0, 1, ()))


class ClassicDeepLab(DeepLab):
    """research/deeplab's semantic DeepLab (encoder + ASPP/DPC [+ decoder] + logits)."""

    def __init__(self, encoder: Backbone, head: ClassicDeepLabHead, *, dataset: DatasetInfo,
                 config: ModelConfig, logits_output_stride: int):
        super().__init__(encoder, head, dataset=dataset, config=config)
        self.logits_output_stride = logits_output_stride
        self._tta: tuple[tuple[float, ...], bool] = ((1.0,), False)

    def tf_name_map(self, key: str) -> str | None:
        """research/deeplab (TF-Slim) checkpoint name -> ``state_dict`` key (weights hook)."""
        if is_training_variable(key):
            return SKIP
        if key.split("/", 1)[0] == self.encoder.tf_scope:
            name, prefix = self.encoder.tf_name_map(key), "encoder"
        else:
            name, prefix = self.decoder.tf_name_map(key), "decoder"
        return name if not name else f"{prefix}.{name}"

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x``: normalised NCHW. ``semantic_logits`` resized (align_corners) to the input:
        from the logits stride to ``scale_dimension(size, 1 / stride)``, then to the size."""
        return {"semantic_logits": resize_align_corners(self.native_logits(x), x.shape[-2:])}

    def native_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at the logits stride (research/deeplab's ``merged_logits``, one scale)."""
        logits = self.decoder(self.encoder(x))["semantic_logits"]
        size = [scale_dimension(s, 1.0 / self.logits_output_stride) for s in x.shape[-2:]]
        return resize_align_corners(logits, size)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``backbone_features`` and ``aspp_features`` (research/deeplab's two feature stages)."""
        endpoints = self.encoder(x)
        return {"backbone_features": endpoints[self.decoder.feature_key],
                "aspp_features": self.decoder.aspp_features(endpoints)}

    @torch.no_grad()
    def tta_probabilities(self, x: torch.Tensor, scales: Sequence[float] = (1.0,),
                          flip: bool = False) -> torch.Tensor:
        """Class probabilities averaged over ``scales`` and flips (``predict_labels_multi_scale``).

        ``x``: normalised NCHW, the padded eval crop. Per scale, the image is resized to
        ``scale_dimension(size, scale)`` (bilinear, align_corners) and the image pooling
        follows the scaled crop; the logits are resized to the stride-``logits`` size of
        ``max(1, scale)``, then to the input size, and soft-maxed.
        """
        if not scales:
            raise ValueError("scales must not be empty")
        height, width = x.shape[-2:]
        crop = self.config.crop_size
        total = None
        count = 0
        try:
            for scale in scales:
                scale = float(scale)
                if scale <= 0:
                    raise ValueError(f"scales must be positive, got {scale}")
                size = (scale_dimension(height, scale), scale_dimension(width, scale))
                image = x if scale == 1.0 else resize_align_corners(x, size)
                if crop is not None:
                    self.set_crop_size([scale_dimension(c, scale) for c in crop])
                target = [scale_dimension(s, max(1.0, scale) / self.logits_output_stride)
                          for s in (height, width)]
                for flipped in (False, True) if flip else (False,):
                    logits = self.decoder(self.encoder(image.flip(-1) if flipped else image))
                    logits = resize_align_corners(logits["semantic_logits"], target)
                    if flipped:
                        logits = logits.flip(-1)
                    probs = F.softmax(resize_align_corners(logits, (height, width)).float(), 1)
                    total = probs if total is None else total + probs
                    count += 1
        finally:
            self.set_crop_size(crop)
        return total / count

    def forward_tta(self, x: torch.Tensor, scales: Sequence[float] = (1.0,),
                    flip: bool = False) -> dict[str, torch.Tensor]:
        """``semantic_probs`` averaged as research/deeplab's ``predict_labels_multi_scale``
        (see :meth:`tta_probabilities`); ``predict(scales=..., flip=...)`` uses it."""
        probs = self.tta_probabilities(x, scales, flip)
        return {"semantic_logits": probs.clamp_min(1e-30).log(), "semantic_probs": probs}

    def padded_input_size(self, height: int, width: int) -> tuple[int, int]:
        """research/deeplab's eval padding: to the eval crop (``crop_size``) or, if larger,
        to ``k * stride + 1`` (stride: the output stride; Auto-DeepLab's deepest, 32,
        which keeps its cells aligned)."""
        crop = self.config.crop_size or (0, 0)
        stride = getattr(self.encoder, "max_stride", self.output_stride)
        return max(crop[0], padded_size(height, stride)), max(crop[1], padded_size(width, stride))


# --------------------------------------------------------------------------------------
# Builder and registrations

_LOW_LEVEL_KEYS = {4: "res2", 8: "res3", 16: "res4"}


def classic_atrous_rates(output_stride: int) -> tuple[int, int, int]:
    """research/deeplab's ASPP rates: (6, 12, 18) at OS 16, (12, 24, 36) at OS 8."""
    rates = {32: (3, 6, 9), 16: (6, 12, 18), 8: (12, 24, 36)}
    if output_stride not in rates:
        raise ValueError(f"no default atrous rates for output stride {output_stride}; "
                         "pass atrous_rates=")
    return rates[output_stride]


def build_classic_deeplab(architecture: str, backbone: str, *, output_stride: int = 16,
                          dataset: str | DatasetInfo = "voc", num_classes: int | None = None,
                          crop_size: Sequence[int] | None = None,
                          atrous_rates: Sequence[int] | str | None = "auto",
                          aspp_with_separable_conv: bool = True,
                          add_image_level_feature: bool = True,
                          aspp_with_concat_projection: bool = True,
                          decoder_output_stride: int | None = None,
                          dense_prediction_cell: Sequence[Mapping[str, Any]] | None = None,
                          multi_grid: Sequence[int] | None = None,
                          depth_multiplier: float | None = None,
                          backbone_args: dict[str, Any] | None = None) -> ClassicDeepLab:
    """A research/deeplab model (``common.ModelOptions`` fields as arguments).

    ``atrous_rates``: ``"auto"`` (by output stride), None (no 3x3 ASPP branches) or
    three rates; ``decoder_output_stride`` 4/8/16 adds the DeepLabv3+ decoder;
    ``dense_prediction_cell`` replaces ASPP by a DPC config (rates x 16 / output_stride).
    """
    info, num_classes = _dataset_and_classes(dataset, num_classes)
    args = dict(backbone_args or {})
    if multi_grid is not None:
        args["multi_grid"] = tuple(multi_grid)
    if depth_multiplier is not None:
        args["depth_multiplier"] = depth_multiplier
    encoder = model_builder(backbone)(output_stride=output_stride, **args)
    output_stride = encoder.output_stride
    channels = {spec.endpoint: spec.num_chs for spec in encoder.feature_specs}
    if isinstance(atrous_rates, str):
        if atrous_rates != "auto":
            raise ValueError(f"atrous_rates must be 'auto', None or rates, got {atrous_rates!r}")
        atrous_rates = classic_atrous_rates(output_stride)
    low_level_key = "res2"
    if decoder_output_stride is not None:
        if decoder_output_stride not in _LOW_LEVEL_KEYS:
            raise ValueError(f"decoder_output_stride must be 4, 8 or 16, "
                             f"got {decoder_output_stride}")
        low_level_key = _LOW_LEVEL_KEYS[decoder_output_stride]
    head = ClassicDeepLabHead(
        channels["res5"], num_classes, atrous_rates=atrous_rates,
        aspp_with_separable_conv=aspp_with_separable_conv,
        add_image_level_feature=add_image_level_feature,
        aspp_with_concat_projection=aspp_with_concat_projection,
        dense_prediction_cell=dense_prediction_cell,
        dpc_rate_multiplier=max(1, 16 // output_stride),
        low_level_channels=channels.get(low_level_key), low_level_key=low_level_key,
        decoder_output_stride=decoder_output_stride)
    model = ClassicDeepLab(encoder, head, dataset=info,
                           config=ModelConfig(architecture, info.name, output_stride),
                           logits_output_stride=decoder_output_stride or output_stride)
    model.set_crop_size(crop_size)
    return model


def _register(name: str, default_tag: str, **fixed: Any) -> None:
    def build(**kwargs: Any) -> ClassicDeepLab:
        return build_classic_deeplab(name, **{**fixed, **kwargs})

    build.__name__ = name
    build.__doc__ = build_classic_deeplab.__doc__
    register_model(build, default_tag=default_tag, kind="model")


for _depth in (41, 65, 71):
    _register(f"deeplabv3plus_xception{_depth}", "voc" if _depth == 65 else "cityscapes",
              backbone=f"xception{_depth}", decoder_output_stride=4)
_register("deeplabv3plus_xception71_dpc", "cityscapes", backbone="xception71",
          decoder_output_stride=4, dense_prediction_cell=DPC_BRANCH5_TOP1_CITYSCAPES)
_register("deeplabv3_mobilenet_v2", "voc", backbone="mobilenet_v2", atrous_rates=None)
_register("deeplabv3_mobilenet_v2_dm05", "voc", backbone="mobilenet_v2", atrous_rates=None,
          depth_multiplier=0.5)
_register("deeplabv3plus_mobilenet_v2", "ade20k", backbone="mobilenet_v2", atrous_rates=None,
          decoder_output_stride=4)
for _depth in (50, 101):
    _register(f"deeplabv3_resnet_v1_{_depth}_beta", "voc", backbone=f"resnet_v1_{_depth}_beta",
              multi_grid=(1, 2, 4))
    _register(f"deeplabv3plus_resnet_v1_{_depth}_beta", "voc",
              backbone=f"resnet_v1_{_depth}_beta", multi_grid=(1, 2, 4), decoder_output_stride=4)
for _size in ("s", "m", "l"):
    _register(f"auto_deeplab_{_size}", "cityscapes", backbone=f"hnasnet_{_size}", output_stride=8)


# --------------------------------------------------------------------------------------
# Pretrained configurations: research/deeplab's g3doc/model_zoo.md (URLs and published
# numbers). ``metrics``: ``miou`` with its eval protocol (``eval_output_stride``,
# ``eval_scales``, ``eval_flip``, ``eval_split``); where the zoo lists a second,
# multi-scale row, the same keys with ``ms_`` prefix. Tags without a URL only fix
# dataset settings (the parity fixtures' configurations).

_ZOO = "http://download.tensorflow.org/models/"
_ZOO_MD = ("https://github.com/tensorflow/models/blob/master/research/deeplab/g3doc/"
           "model_zoo.md")
_AUTO_DEEPLAB = "https://arxiv.org/abs/1901.02985"
_VOC_CROP, _CS_CROP, _ADE_CROP = (513, 513), (1025, 2049), (513, 513)
_SCALES_VOC = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
_SCALES_CS = (0.75, 1.0, 1.25)


def _row(miou: float, output_stride: int, scales: Sequence[float] = (1.0,), flip: bool = False,
         split: str = "val", prefix: str = "") -> dict[str, Any]:
    return {f"{prefix}miou": miou, f"{prefix}eval_output_stride": output_stride,
            f"{prefix}eval_scales": tuple(scales), f"{prefix}eval_flip": flip,
            f"{prefix}eval_split": split}


def _cfg(arch: str, tag: str, dataset: str, crop: tuple[int, int] | None, ckpt: str = "",
         metrics: dict[str, Any] | None = None, source: str = _ZOO_MD,
         model_args: dict[str, Any] | None = None) -> None:
    register_pretrained(PretrainedCfg(
        architecture=arch, tag=tag, dataset=dataset, url=_ZOO + ckpt if ckpt else "",
        crop_size=crop, model_args=model_args or {}, metrics=metrics or {}, source=source))


# PASCAL VOC 2012 (tag voc = train_aug checkpoints, evaluated on val; voc_trainval on test).
_cfg("deeplabv3plus_xception65", "voc", "voc", _VOC_CROP,
     "deeplabv3_pascal_train_aug_2018_01_04.tar.gz",
     {**_row(82.20, 16), **_row(83.58, 8, _SCALES_VOC, True, prefix="ms_")})
_cfg("deeplabv3plus_xception65", "voc_trainval", "voc", _VOC_CROP,
     "deeplabv3_pascal_trainval_2018_01_04.tar.gz", _row(87.80, 8, _SCALES_VOC, True, "test"))
_cfg("deeplabv3_mobilenet_v2", "voc", "voc", _VOC_CROP,
     "deeplabv3_mnv2_pascal_train_aug_2018_01_29.tar.gz",
     {**_row(75.32, 16), **_row(77.33, 8, _SCALES_VOC, True, prefix="ms_")})
_cfg("deeplabv3_mobilenet_v2", "voc_trainval", "voc", _VOC_CROP,
     "deeplabv3_mnv2_pascal_trainval_2018_01_29.tar.gz", _row(80.25, 8, _SCALES_VOC, True, "test"))
_cfg("deeplabv3_mobilenet_v2_dm05", "voc", "voc", _VOC_CROP,
     "deeplabv3_mnv2_dm05_pascal_trainaug_2018_10_01.tar.gz", _row(70.19, 16))
_cfg("deeplabv3_mobilenet_v2_dm05", "voc_trainval", "voc", _VOC_CROP,
     "deeplabv3_mnv2_dm05_pascal_trainval_2018_10_01.tar.gz", _row(71.83, 8, split="test"))
for _arch in ("deeplabv3_resnet_v1_50_beta", "deeplabv3plus_resnet_v1_50_beta",
              "deeplabv3_resnet_v1_101_beta", "deeplabv3plus_resnet_v1_101_beta"):
    _cfg(_arch, "voc", "voc", _VOC_CROP)  # no released checkpoint (ImageNet backbones only)

# Cityscapes (train_fine checkpoints on val; trainval on test).
_cfg("deeplabv3_mobilenet_v2", "cityscapes", "cityscapes", _CS_CROP,
     "deeplabv3_mnv2_cityscapes_train_2018_02_05.tar.gz",
     {**_row(70.71, 16), **_row(73.57, 8, _SCALES_CS, True, prefix="ms_")})
_cfg("deeplabv3plus_xception65", "cityscapes", "cityscapes", _CS_CROP,
     "deeplabv3_cityscapes_train_2018_02_06.tar.gz",
     {**_row(78.79, 16), **_row(80.42, 8, _SCALES_CS, True, prefix="ms_")})
_cfg("deeplabv3plus_xception71_dpc", "cityscapes", "cityscapes", _CS_CROP,
     "deeplab_cityscapes_xception71_trainfine_2018_09_08.tar.gz", _row(80.31, 16))
_cfg("deeplabv3plus_xception71_dpc", "cityscapes_trainval", "cityscapes", _CS_CROP,
     "deeplab_cityscapes_xception71_trainvalfine_2018_09_08.tar.gz",
     _row(82.66, 8, (0.75, 1.0, 1.25, 1.5, 1.75, 2.0), True, "test"))
for _depth in (41, 71):
    _cfg(f"deeplabv3plus_xception{_depth}", "cityscapes", "cityscapes", _CS_CROP)
# Auto-DeepLab: no research/deeplab checkpoint; numbers from the paper (Table 3, Cityscapes
# val, OS 8, single scale) for reference.
for _size, _miou in (("s", 79.74), ("m", 80.04), ("l", 80.33)):
    _cfg(f"auto_deeplab_{_size}", "cityscapes", "cityscapes", _CS_CROP,
         metrics=_row(_miou, 8), source=_AUTO_DEEPLAB)

# ADE20K (151 classes incl. 0 = ignore).
_cfg("deeplabv3plus_mobilenet_v2", "ade20k", "ade20k", (257, 257),
     "deeplabv3_mnv2_ade20k_train_2018_12_03.tar.gz", {**_row(32.04, 16), "pixel_accuracy": 75.41})
_cfg("deeplabv3plus_xception65", "ade20k", "ade20k", _ADE_CROP,
     "deeplabv3_xception_ade20k_train_2018_05_29.tar.gz",
     {**_row(45.65, 8, _SCALES_VOC, True), "pixel_accuracy": 82.52})

# ImageNet-pretrained backbones (features_only; the 1001-class classifier is skipped).
for _arch, _file in (("xception41", "xception_41_2018_05_09.tar.gz"),
                     ("xception65", "deeplabv3_xception_2018_01_04.tar.gz"),
                     ("xception71", "xception_71_2018_05_09.tar.gz"),
                     ("resnet_v1_50_beta", "resnet_v1_50_2018_05_04.tar.gz"),
                     ("resnet_v1_101_beta", "resnet_v1_101_2018_05_04.tar.gz")):
    _cfg(_arch, "imagenet", "imagenet", None, _file)

