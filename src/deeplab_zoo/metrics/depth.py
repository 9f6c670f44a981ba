"""Monocular depth metrics, as DeepLab2's ``evaluation/depth_metrics.py``.

Per image, over the pixels with ground-truth depth > 0: the scale-invariant log error
``SILog = 100 * sqrt(mean(e**2) - mean(e)**2)`` with ``e = log(pred) - log(gt)`` (Uhrig et
al., 3DV 2017), the relative squared error ``mean(((gt - pred) / gt)**2)``, the relative
absolute error ``mean(|gt - pred| / gt)`` and the inlier ratio ``mean(max(gt/pred, pred/gt)
< 1.25)``. The reported values are the means of the per-image values (DeepLab2 averages per
image, not per pixel). Computed in float64 (DeepLab2: float32).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._inputs import as_float_map

__all__ = ["DepthMetrics"]

_NAMES = ("silog", "sq_error_rel", "abs_error_rel", "depth_inlier")


class DepthMetrics:
    """Streaming per-image depth metrics; ``compute()`` returns ``silog``, ``sq_error_rel``,
    ``abs_error_rel``, ``depth_inlier`` (means over images; NaN before any update)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget all images."""
        self._per_image: list[tuple[float, float, float, float]] = []

    def merge(self, other: DepthMetrics) -> DepthMetrics:
        """Append the per-image values of ``other``; returns self."""
        if not isinstance(other, DepthMetrics):
            raise ValueError(f"cannot merge {type(other).__name__} into DepthMetrics")
        self._per_image.extend(other._per_image)
        return self

    def update(self, gt_depth: Any, pred_depth: Any) -> None:
        """Accumulate one image (ground-truth and predicted depth maps of the same shape)."""
        gt = as_float_map("gt_depth", gt_depth).astype(np.float64)
        pred = as_float_map("pred_depth", pred_depth).astype(np.float64)
        if gt.shape != pred.shape:
            raise ValueError(f"gt_depth and pred_depth must have the same shape, got "
                             f"{tuple(gt.shape)} and {tuple(pred.shape)}")
        valid = gt > 0
        gt, pred = gt[valid], pred[valid]
        with np.errstate(divide="ignore", invalid="ignore"):
            err = np.log(pred) - np.log(gt)
            silog = math.sqrt(max(np.mean(err**2) - np.mean(err) ** 2, 0.0)) * 100 \
                if gt.size else math.nan
            sq_rel = float(np.mean(((gt - pred) / gt) ** 2)) if gt.size else math.nan
            abs_rel = float(np.mean(np.abs(gt - pred) / gt)) if gt.size else math.nan
            inlier = float(np.mean(np.maximum(gt / pred, pred / gt) < 1.25)) \
                if gt.size else math.nan
        self._per_image.append((silog, sq_rel, abs_rel, inlier))

    def compute(self) -> dict[str, Any]:
        """Means over images of the four metrics."""
        if not self._per_image:
            return {name: math.nan for name in _NAMES} | {"num_images": 0}
        values = np.asarray(self._per_image, dtype=np.float64).mean(axis=0)
        return dict(zip(_NAMES, values.tolist())) | {"num_images": len(self._per_image)}
