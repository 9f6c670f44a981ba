"""Training losses with DeepLab2's semantics (per-sample values, top-k reductions)."""
from .base import (
    average_top_k_loss,
    strided_downsample,
    top_k_cross_entropy,
    top_k_l1,
    top_k_mse,
    top_k_pixel_loss,
)
from .depth import depth_loss, relative_squared_error, silog_error
from .max_deeplab import MaXDeepLabLoss, MaXDeepLabLossConfig
from .panoptic_deeplab import PanopticDeepLabLoss, PanopticDeepLabLossConfig

__all__ = [
    "MaXDeepLabLoss",
    "MaXDeepLabLossConfig",
    "PanopticDeepLabLoss",
    "PanopticDeepLabLossConfig",
    "average_top_k_loss",
    "depth_loss",
    "relative_squared_error",
    "silog_error",
    "strided_downsample",
    "top_k_cross_entropy",
    "top_k_l1",
    "top_k_mse",
    "top_k_pixel_loss",
]
