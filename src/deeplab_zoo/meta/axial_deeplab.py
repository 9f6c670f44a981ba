"""Axial-DeepLab: Panoptic-DeepLab on Axial-SWideRNet and MaX-DeepLab backbones (DeepLab2 zoo).

DeepLab2's ``configs/cityscapes/axial_deeplab/axial_swidernet_*_os16.textproto``:
the SWideRNet-SAC Panoptic-DeepLab configs with backbone ``axial_swidernet`` (no
SAC) and ``aspp_use_only_1x1_proj_conv`` in both decoders (so the ASPP is a single
1x1 projection and the crop size does not set any pooling window). The
``max_deeplab_{s,l}_backbone_os16`` configs are the same on the MaX-DeepLab backbones
(:mod:`deeplab_zoo.backbones.max_deeplab`). The crop size given to the builder is
checked against the attention layers' ``query_shape`` as DeepLab2's build does (see
:mod:`deeplab_zoo.backbones.axial_resnet`).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..registry import PretrainedCfg, register_alias, register_model, register_pretrained
from .deeplab import DeepLab, build_panoptic_deeplab


def build_axial_panoptic_deeplab(architecture: str, backbone: str, *, output_stride: int = 16,
                                 crop_size: Sequence[int] | None = None,
                                 backbone_args: dict[str, Any] | None = None,
                                 **kwargs: Any) -> DeepLab:
    """Panoptic-DeepLab with a 1x1-only ASPP on an axial backbone; ``crop_size`` also
    reaches the backbone (attention length check)."""
    backbone_args = {"crop_size": crop_size, **(backbone_args or {})}
    kwargs.setdefault("aspp_use_only_1x1_proj_conv", True)
    return build_panoptic_deeplab(architecture, backbone, output_stride=output_stride,
                                  crop_size=crop_size, backbone_args=backbone_args, **kwargs)


def _register(name: str, backbone: str) -> None:
    def build(**kwargs: Any) -> DeepLab:
        return build_axial_panoptic_deeplab(name, backbone, **kwargs)

    build.__name__ = name
    build.__doc__ = (f"Axial-DeepLab (Panoptic-DeepLab, 1x1 ASPP) on ``{backbone}``, output "
                     f"stride 16 by default.")
    register_model(build, default_tag="cityscapes", kind="model")


_MULTIPLIERS = ("1_1_1", "1_1_3", "1_1_4_5")
for _mult in _MULTIPLIERS:
    _register(f"panoptic_deeplab_axial_swidernet_{_mult}_os16", f"axial_swidernet_{_mult}")

register_alias("panoptic_deeplab_axial_swidernet", "panoptic_deeplab_axial_swidernet_1_1_4_5_os16")

# MaX-DeepLab backbones (configs/cityscapes/axial_deeplab/max_deeplab_{s,l}_backbone_os16):
# the same Panoptic-DeepLab, on DeepLab2's ``max_deeplab_{s,l}_backbone`` (no transformers).
for _size in ("s", "l"):
    _register(f"panoptic_deeplab_max_deeplab_{_size}_backbone_os16",
              f"max_deeplab_{_size}_backbone")


# --------------------------------------------------------------------------------------
# Pretrained configurations: DeepLab2 model zoo (g3doc/projects/axial_deeplab.md),
# Cityscapes train-fine, single scale: PQ / mIoU by the official script, AP (mask) by
# DeepLab2's pipeline - the columns panoptic_deeplab.md's entries use too.

_ZOO = "https://storage.googleapis.com/gresearch/tf-deeplab/checkpoint/"
_AXIAL_MD = "https://github.com/google-research/deeplab2/blob/main/g3doc/projects/axial_deeplab.md"
# evaluator_options of the configs (center threshold 0.1, keep_k 400 are the defaults).
_CITYSCAPES_POSTPROCESS = {"nms_kernel": 13, "stuff_area_limit": 2048}

for _arch, _file, _pq, _miou, _ap in (
        ("axial_swidernet_1_1_1", "axial_swidernet_1_1_1", 66.1, 82.8, 37.18),
        ("axial_swidernet_1_1_3", "axial_swidernet_1_1_3", 67.1, 83.5, 40.00),
        ("axial_swidernet_1_1_4_5", "axial_swidernet_1_1_4.5", 68.0, 83.0, 39.51),
        ("max_deeplab_s_backbone", "max_deeplab_s_backbone", 64.5, 82.2, 35.55),
        ("max_deeplab_l_backbone", "max_deeplab_l_backbone", 66.3, 83.1, 38.09)):
    register_pretrained(PretrainedCfg(
        architecture=f"panoptic_deeplab_{_arch}_os16", tag="cityscapes",
        dataset="cityscapes",
        url=f"{_ZOO}{_file}_os16_axial_deeplab_cityscapes_trainfine.tar.gz",
        crop_size=(1025, 2049), model_args={"postprocess": dict(_CITYSCAPES_POSTPROCESS)},
        metrics={"pq": _pq, "miou": _miou, "ap": _ap}, source=_AXIAL_MD))
