"""The loss of Panoptic-DeepLab (and its Motion-/ViP-DeepLab terms), DeepLab2's defaults.

DeepLab2 (``loss_builder.DeepLabFamilyLoss``) sums weighted single-term losses, each
computed per sample:

========================  =========================  ===========  ======================
term                      prediction / target        loss         config weight (top-k)
========================  =========================  ===========  ======================
``semantic_loss``         ``semantic_logits``        top-k CE     1.0 (0.2)
``center_loss``           ``center_heatmap``         MSE          200
``regression_loss``       ``offset_map``             L1           0.01
``motion_loss``           ``frame_offset_map``       L1           0.01 (Motion-DeepLab)
``next_regression_loss``  ``next_offset_map``        L1           0.01 (ViP-DeepLab)
``depth_loss``            ``depth_pred``             SILog+RelSq  0.1 (ViP-DeepLab)
========================  =========================  ===========  ======================

Weights 0 disable a term. Targets come from :mod:`deeplab_zoo.data.targets` (batched).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .base import top_k_cross_entropy, top_k_l1, top_k_mse
from .depth import depth_loss

__all__ = ["PanopticDeepLabLoss", "PanopticDeepLabLossConfig"]


@dataclass
class PanopticDeepLabLossConfig:
    """Loss weights and top-k fractions (``LossOptions`` of DeepLab2's trainer.proto)."""

    semantic_weight: float = 1.0
    semantic_top_k: float = 0.2
    center_weight: float = 200.0
    center_top_k: float = 1.0
    regression_weight: float = 0.01
    regression_top_k: float = 1.0
    motion_weight: float = 0.0
    next_regression_weight: float = 0.0
    depth_weight: float = 0.0
    ignore_depth: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _center(pred: torch.Tensor) -> torch.Tensor:
    return pred[:, 0] if pred.ndim == 4 else pred


class PanopticDeepLabLoss(nn.Module):
    """``forward(outputs, targets) -> {name: [B] weighted loss}`` plus ``total_loss``."""

    def __init__(self, num_classes: int, ignore_label: int,
                 config: PanopticDeepLabLossConfig | None = None, *, semantic_only: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.config = config or PanopticDeepLabLossConfig()
        self.semantic_only = semantic_only

    @property
    def loss_names(self) -> list[str]:
        cfg = self.config
        names = ["semantic_loss"]
        if not self.semantic_only:
            names += ["center_loss", "regression_loss"]
            names += [name for name, weight in (("motion_loss", cfg.motion_weight),
                                                ("next_regression_loss",
                                                 cfg.next_regression_weight),
                                                ("depth_loss", cfg.depth_weight)) if weight]
        return names + ["total_loss"]

    def forward(self, outputs: dict[str, torch.Tensor],
                targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.config
        losses: dict[str, torch.Tensor] = {
            "semantic_loss": cfg.semantic_weight * top_k_cross_entropy(
                outputs["semantic_logits"], targets["semantic"], targets["semantic_weights"],
                ignore_label=self.ignore_label, top_k_percent=cfg.semantic_top_k),
        }
        if not self.semantic_only:
            losses["center_loss"] = cfg.center_weight * top_k_mse(
                targets["center"], _center(outputs["center_heatmap"]),
                targets["center_weights"], cfg.center_top_k)
            losses["regression_loss"] = cfg.regression_weight * top_k_l1(
                targets["offset"], outputs["offset_map"], targets["offset_weights"],
                cfg.regression_top_k)
            if cfg.motion_weight:
                losses["motion_loss"] = cfg.motion_weight * top_k_l1(
                    targets["frame_offset"], outputs["frame_offset_map"],
                    targets["frame_offset_weights"])
            if cfg.next_regression_weight:
                losses["next_regression_loss"] = cfg.next_regression_weight * top_k_l1(
                    targets["next_offset"], outputs["next_offset_map"],
                    targets["next_offset_weights"])
            if cfg.depth_weight:
                losses["depth_loss"] = cfg.depth_weight * depth_loss(
                    targets["depth"], outputs["depth_pred"], cfg.ignore_depth)
        losses["total_loss"] = torch.stack(list(losses.values())).sum(dim=0)
        return losses
