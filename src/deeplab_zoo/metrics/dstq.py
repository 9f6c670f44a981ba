"""Depth-aware STQ (DSTQ), as DeepLab2's ``depth_aware_segmentation_and_tracking_quality``.

Qiao et al., "ViP-DeepLab", CVPR 2021; DeepLab2's DSTQ definition:

* ``DQ@t`` (depth quality at threshold ``t``) = inliers / valid pixels, where a pixel is valid
  when its ground-truth depth is > 0 and an inlier when additionally the prediction is > 0
  and ``max(pred / gt, gt / pred) <= t`` (computed in the input's float precision; DeepLab2
  feeds float32). A sequence, or the whole run, without valid pixels has DQ 0.
* ``DQ`` = geometric mean of the ``DQ@t``; ``DSTQ = (STQ**2 * DQ) ** (1/3)``, likewise
  ``DSTQ@t`` and the per-sequence ``DSTQ_per_seq@t``.

Keys are DeepLab2's, lower-cased: ``dstq``, ``dstq@{t}``, ``dstq_per_seq@{t}``, ``dq``,
``dq@{t}``, ``dq_per_seq@{t}`` (``{t}`` formatted with ``str(float)``, e.g. ``dq@1.25``),
plus every STQ key.
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np

from ._inputs import as_float_map
from .stq import SegmentationTrackingQuality

__all__ = ["DepthAwareSTQ"]


class DepthAwareSTQ(SegmentationTrackingQuality):
    """Streaming DSTQ: STQ plus depth inlier ratios at ``depth_thresholds``.

    Args:
        num_classes, thing_classes, ignore_label, label_divisor, offset: as
            :class:`SegmentationTrackingQuality`.
        depth_thresholds: non-empty sequence of inlier thresholds (DeepLab2 default
            ``(1.25, 1.1)``).
    """

    def __init__(self, num_classes: int, thing_classes: Iterable[int], ignore_label: int,
                 label_divisor: int, offset: int = 2**24,
                 depth_thresholds: Sequence[float] = (1.25, 1.1)) -> None:
        if isinstance(depth_thresholds, (str, bytes)) or not isinstance(
                depth_thresholds, (list, tuple)):
            raise ValueError("depth_thresholds must be a list or tuple of floats, got "
                             f"{type(depth_thresholds).__name__}")
        if not depth_thresholds:
            raise ValueError("depth_thresholds must be non-empty")
        thresholds = []
        for t in depth_thresholds:
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
                raise ValueError(f"depth_thresholds must be positive numbers, got {t!r}")
            thresholds.append(float(t))
        self.depth_thresholds = tuple(thresholds)
        super().__init__(num_classes, thing_classes, ignore_label, label_divisor, offset)

    def reset(self) -> None:
        """Clear all sequences (segmentation, tracking and depth statistics)."""
        super().reset()
        self._depth_total: dict[Hashable, int] = {}
        self._depth_inliers: dict[Hashable, np.ndarray] = {}

    def _settings(self) -> tuple:
        return (*super()._settings(), self.depth_thresholds)

    def merge(self, other: DepthAwareSTQ) -> DepthAwareSTQ:
        """Add the statistics of ``other`` (same settings); returns self."""
        super().merge(other)
        for sequence_id, total in other._depth_total.items():
            self._add_depth(sequence_id, total, other._depth_inliers[sequence_id])
        return self

    def _add_depth(self, sequence_id: Hashable, total: int, inliers: np.ndarray) -> None:
        self._depth_total[sequence_id] = self._depth_total.get(sequence_id, 0) + total
        previous = self._depth_inliers.get(sequence_id)
        self._depth_inliers[sequence_id] = inliers if previous is None else previous + inliers

    def update(self, gt_panoptic: Any, pred_panoptic: Any, gt_depth: Any = None,
               pred_depth: Any = None, sequence_id: Hashable = 0, weights: Any = None) -> None:
        """Accumulate one frame: panoptic maps plus ground-truth and predicted depth maps."""
        if gt_depth is None or pred_depth is None:
            raise ValueError("DepthAwareSTQ.update needs gt_depth and pred_depth")
        d_true = as_float_map("gt_depth", gt_depth)
        d_pred = as_float_map("pred_depth", pred_depth)
        if d_true.shape != d_pred.shape:
            raise ValueError("gt_depth and pred_depth must have the same shape, got "
                             f"{tuple(d_true.shape)} and {tuple(d_pred.shape)}")
        super().update(gt_panoptic, pred_panoptic, sequence_id, weights)
        dtype = np.result_type(d_true.dtype, d_pred.dtype)
        d_true = d_true.astype(dtype, copy=False).reshape(-1)
        d_pred = d_pred.astype(dtype, copy=False).reshape(-1)
        valid = d_true > 0
        total = int(valid.sum())
        both = valid & (d_pred > 0)
        t, p = d_true[both], d_pred[both]
        error = np.maximum(p / t, t / p)
        inliers = np.array([int((error <= np.asarray(th, dtype=dtype)).sum())
                            for th in self.depth_thresholds], dtype=np.int64)
        self._add_depth(sequence_id, total, inliers)

    def compute(self) -> dict[str, Any]:
        """Results dict (see the module docstring)."""
        results = super().compute()
        sequences = results["id_per_seq"]
        totals = np.array([self._depth_total[s] for s in sequences], dtype=np.int64)
        inliers = np.array([self._depth_inliers[s] for s in sequences],
                           dtype=np.int64).reshape(len(sequences), len(self.depth_thresholds))
        out: dict[str, Any] = {}
        dq_at: dict[float, float] = {}
        dq_per_seq_at: dict[float, list[float]] = {}
        total = int(totals.sum())
        for k, threshold in enumerate(self.depth_thresholds):
            dq_at[threshold] = float(inliers[:, k].sum() / total) if total else 0.0
            dq_per_seq_at[threshold] = [float(i / n) if n > 0 else 0.0
                                        for i, n in zip(inliers[:, k].tolist(), totals.tolist())]
        dq = 1.0
        for threshold in self.depth_thresholds:
            dq *= dq_at[threshold]
        dq = dq ** (1 / len(self.depth_thresholds))
        stq = results["stq"]
        out["dstq"] = (stq**2 * dq) ** (1 / 3)
        for threshold in self.depth_thresholds:
            out[f"dstq@{threshold}"] = (stq**2 * dq_at[threshold]) ** (1 / 3)
            out[f"dstq_per_seq@{threshold}"] = [
                (s**2 * d) ** (1 / 3)
                for s, d in zip(results["stq_per_seq"], dq_per_seq_at[threshold])]
        out.update(results)
        out["dq"] = dq
        for threshold in self.depth_thresholds:
            out[f"dq@{threshold}"] = dq_at[threshold]
            out[f"dq_per_seq@{threshold}"] = dq_per_seq_at[threshold]
        return out
