"""Pretrained configurations: ``arch.tag`` -> dataset settings, checkpoint source, metrics.

Data, not code (timm's ``pretrained_cfg`` habit). URLs are DeepLab2's model zoo
(``g3doc/projects/*.md``); metrics are the numbers published there. A tag without a
URL only fixes dataset settings (``list_pretrained()`` omits it).
"""
from __future__ import annotations

from .registry import PretrainedCfg, register_pretrained

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
