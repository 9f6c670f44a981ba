"""Named training recipes: DeepLab2's model-zoo configs as :class:`TrainConfig` presets.

A preset is named like the pretrained tag it reproduces (``arch.tag``). The numbers are
those of DeepLab2's ``configs/<dataset>/<model>/*.textproto`` (global batch size, crop,
steps, base learning rate, warmup, scale augmentation, small-instance weights, optimizer;
Panoptic-DeepLab losses: top-k 0.2 cross-entropy, centre MSE x200, offset L1 x0.01 with
Adam and poly decay; MaX / kMaX: PQ-style 3.0, mask-ID CE 0.3, instance discrimination
1.0, semantic 1.0). ``demo`` is the recipe of the shipped offline demo model
(``scripts/train_demo_model.py``).

DeepLab2 starts these runs from ImageNet-pretrained backbones (KITTI-STEP and
MOTChallenge-STEP from Cityscapes checkpoints); pass those with ``init_weights``.
"""
from __future__ import annotations

from typing import Any

from .config import TrainConfig

__all__ = ["PRESETS", "get_preset", "list_presets"]

_CITYSCAPES = dict(dataset="cityscapes", crop_size=(1025, 2049), min_scale=0.5, max_scale=2.0,
                   scale_step=0.1, small_instance_weight=3.0)
_COCO = dict(dataset="coco", crop_size=(641, 641), min_scale=0.5, max_scale=1.5, scale_step=0.1,
             batch_size=64, steps=200_000, lr=5e-4, warmup_steps=2000, small_instance_weight=3.0)
_STEP = dict(min_scale=0.5, max_scale=2.0, scale_step=0.1, batch_size=32,
             small_instance_weight=3.0)

_MAX = dict(dataset="coco", min_scale=0.5, max_scale=1.5, scale_step=0.1, batch_size=64,
            warmup_steps=5000, backbone_lr_multiplier=0.1)
_KMAX = dict(scale_step=0.1, warmup_steps=5000, optimizer="adamw", adamw_weight_decay=0.05,
             backbone_lr_multiplier=0.1, copy_paste_scale=0.5, copy_paste_thing_option="all",
             copy_paste_stuff_option="random", copy_paste_void_option="none")
_KMAX_LOSS = dict(instance_discrimination_sample_k=4096,
                  instance_discrimination_sample_temperature=1.5)

PRESETS: dict[str, dict[str, Any]] = {
    # Cityscapes (configs/cityscapes/panoptic_deeplab).
    "panoptic_deeplab_mobilenet_v3_small_os32.cityscapes": dict(
        _CITYSCAPES, model="panoptic_deeplab_mobilenet_v3_small_os32", batch_size=64,
        steps=30_000, lr=4e-4),
    "panoptic_deeplab_mobilenet_v3_small_os16.cityscapes": dict(
        _CITYSCAPES, model="panoptic_deeplab_mobilenet_v3_small_os16", batch_size=64,
        steps=60_000, lr=1e-3, small_instance_weight=1.0),
    "panoptic_deeplab_mobilenet_v3_large_os32.cityscapes": dict(
        _CITYSCAPES, model="panoptic_deeplab_mobilenet_v3_large_os32", batch_size=64,
        steps=30_000, lr=4e-4),
    "panoptic_deeplab_mobilenet_v3_large_os16.cityscapes": dict(
        _CITYSCAPES, model="panoptic_deeplab_mobilenet_v3_large_os16", batch_size=64,
        steps=60_000, lr=1e-3, warmup_steps=500, small_instance_weight=1.0),
    "panoptic_deeplab_resnet50_os32.cityscapes": dict(
        _CITYSCAPES, model="panoptic_deeplab_resnet50_os32", batch_size=8, steps=60_000,
        lr=2.5e-4),
    "panoptic_deeplab_resnet50_beta_os32.cityscapes": dict(
        _CITYSCAPES, model="panoptic_deeplab_resnet50_beta_os32", batch_size=32,
        steps=60_000, lr=2.5e-4),
    "panoptic_deeplab_wide_resnet41_os16.cityscapes": dict(
        _CITYSCAPES, model="panoptic_deeplab_wide_resnet41_os16", batch_size=32,
        steps=60_000, lr=1e-4),
    "panoptic_deeplab_swidernet_sac_1_1_1_os16.cityscapes": dict(
        _CITYSCAPES, model="panoptic_deeplab_swidernet_sac_1_1_1_os16", batch_size=32,
        steps=60_000, lr=1e-4),
    "panoptic_deeplab_swidernet_sac_1_1_3_os16.cityscapes": dict(
        _CITYSCAPES, model="panoptic_deeplab_swidernet_sac_1_1_3_os16", batch_size=32,
        steps=60_000, lr=1e-4),
    "panoptic_deeplab_swidernet_sac_1_1_4_5_os16.cityscapes": dict(
        _CITYSCAPES, model="panoptic_deeplab_swidernet_sac_1_1_4_5_os16", batch_size=32,
        steps=60_000, lr=2.5e-4),
    # COCO (configs/coco/panoptic_deeplab).
    **{f"panoptic_deeplab_{arch}.coco": dict(_COCO, model=f"panoptic_deeplab_{arch}")
       for arch in ("resnet50_os32", "resnet50_os16", "resnet50_beta_os32",
                    "resnet50_beta_os16")},
    # KITTI-STEP / MOTChallenge-STEP (configs/{kitti,motchallenge}/panoptic_deeplab).
    "panoptic_deeplab_resnet50_os32.kitti_step": dict(
        _STEP, model="panoptic_deeplab_resnet50_os32", dataset="kitti_step",
        crop_size=(385, 1249), steps=30_000, lr=1e-5),
    "panoptic_deeplab_resnet50_os32.motchallenge_step": dict(
        _STEP, model="panoptic_deeplab_resnet50_os32", dataset="motchallenge_step",
        crop_size=(1089, 1921), steps=10_000, lr=1e-5),
    # MaX-DeepLab / kMaX-DeepLab (configs/coco/{max,kmax}_deeplab, configs/cityscapes/
    # kmax_deeplab), panoptic copy-paste included for kMaX.
    "max_deeplab_s.coco": dict(
        _MAX, model="max_deeplab_s", crop_size=(641, 641), min_resize=641, max_resize=641,
        steps=400_000, lr=1e-3),
    "max_deeplab_l.coco": dict(
        _MAX, model="max_deeplab_l", crop_size=(1025, 1025), min_resize=1025, max_resize=1025,
        steps=400_000, lr=3e-4),
    **{f"kmax_deeplab_{arch}.coco": dict(
        _KMAX, model=f"kmax_deeplab_{arch}", dataset="coco", crop_size=(1281, 1281),
        min_resize=1281, max_resize=1281, min_scale=0.3, max_scale=1.7, batch_size=64,
        steps=150_000, lr=5e-4, autoaugment_policy="simple_classification_policy",
        mask_loss=dict(_KMAX_LOSS, semantic_sample_k=4096, semantic_sample_temperature=2.0))
       for arch in ("r50", "axial_r50", "convnext_tiny", "convnext_small", "convnext_base",
                    "convnext_large")},
    **{f"kmax_deeplab_{arch}.cityscapes": dict(
        _KMAX, model=f"kmax_deeplab_{arch}", dataset="cityscapes", crop_size=(1025, 2049),
        min_scale=0.5, max_scale=2.0, batch_size=32, steps=60_000, lr=3e-4, max_thing_id=256,
        autoaugment_policy="simple_classification_policy_magnitude_scale_0.2",
        mask_loss=dict(_KMAX_LOSS))
       for arch in ("r50", "axial_r50", "convnext_tiny", "convnext_small", "convnext_base",
                    "convnext_large")},
    # The shipped offline demo model (scripts/train_demo_model.py).
    "demo": dict(model="demo", dataset="synthetic", crop_size=(129, 129), batch_size=8,
                 steps=3000, lr=2e-3, warmup_steps=100, small_instance_weight=3.0,
                 small_instance_threshold=1000, sigma=6.0, num_images=100_000,
                 image_size=(257, 385), save_every=500, log_every=20),
}


def list_presets() -> list[str]:
    """Names of the built-in presets."""
    return sorted(PRESETS)


def get_preset(name: str, **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` of preset ``name`` with ``overrides`` applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {list_presets()}")
    return TrainConfig.from_dict({**PRESETS[name], **overrides})
