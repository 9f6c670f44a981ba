"""Video Panoptic Quality (VPQ), as DeepLab2's ``evaluation/video_panoptic_quality.py``.

Kim et al., "Video Panoptic Segmentation", CVPR 2020; Qiao et al., "ViP-DeepLab", CVPR 2021.
DeepLab2 models VPQ as image PQ on a window of frames concatenated side by side (along the
width), so a track counts as one segment across the window: :class:`VideoPanopticQuality`
is :class:`~deeplab_zoo.metrics.PanopticQuality` whose ``update`` takes the window's frames.
DeepLab2's evaluator feeds 2-frame windows.

:class:`WindowedVideoPanopticQuality` adds the usual protocol on top: ``VPQ-k`` accumulates
every window of ``k`` consecutive frames (stride 1) of each sequence, and ``VPQ`` is the mean
of ``VPQ-k`` over the window sizes (ViP-DeepLab reports k = 1..4 on Cityscapes-DVPS and
k = 1, 5, 10, 20 on SemKITTI-DVPS).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ._inputs import as_label_map, check_int, check_same_shape
from .panoptic_quality import PanopticQuality

__all__ = ["VideoPanopticQuality", "WindowedVideoPanopticQuality"]


def _frames(name: str, frames: Any) -> list[np.ndarray]:
    """A window given as a sequence of HxW maps or a [T, H, W] array -> list of int64 maps."""
    if isinstance(frames, (list, tuple)):
        maps = [as_label_map(f"{name}[{i}]", f, keep_dtype=True) for i, f in enumerate(frames)]
    else:
        stacked = as_label_map(name, frames, ndim=3, keep_dtype=True)
        maps = list(stacked)
    if not maps:
        raise ValueError(f"{name} must hold at least one frame")
    height = maps[0].shape[0]
    for i, m in enumerate(maps):
        if m.shape[0] != height:
            raise ValueError(f"{name}[{i}] has height {m.shape[0]}, frame 0 has {height}: "
                             "frames are concatenated along the width")
    return maps


class VideoPanopticQuality(PanopticQuality):
    """PQ over windows of frames concatenated along the width (DeepLab2's VPQ).

    Same constructor and results as :class:`PanopticQuality`; ``update`` takes the ground
    truth and prediction of one window as sequences of HxW maps (or [T, H, W] arrays).
    """

    def update(self, gt_frames: Any, pred_frames: Any) -> None:  # type: ignore[override]
        """Accumulate one window of frames."""
        gt_maps = _frames("gt_frames", gt_frames)
        pred_maps = _frames("pred_frames", pred_frames)
        if len(gt_maps) != len(pred_maps):
            raise ValueError(f"gt_frames has {len(gt_maps)} frames, pred_frames "
                             f"{len(pred_maps)}")
        for i, (g, p) in enumerate(zip(gt_maps, pred_maps)):
            check_same_shape(f"gt_frames[{i}]", g, f"pred_frames[{i}]", p)
        self._accumulate(np.concatenate(gt_maps, axis=1), np.concatenate(pred_maps, axis=1))


class WindowedVideoPanopticQuality:
    """VPQ-k for several window sizes k, and their mean VPQ.

    Args:
        num_classes, ignore_label, label_divisor, offset, thing_classes: as
            :class:`PanopticQuality`.
        window_sizes: the k values (positive ints).

    ``update(gt_sequence, pred_sequence)`` takes one whole sequence ([T, H, W] or a list of
    HxW maps) and adds, for every k, all its windows of k consecutive frames (none when T < k).
    ``compute()`` returns ``vpq`` (mean over k of ``pq``; NaN if any is NaN), ``vpq@k``, and
    ``per_window`` = {k: :meth:`PanopticQuality.compute` result}.
    """

    def __init__(self, num_classes: int, ignore_label: int, label_divisor: int,
                 offset: int = 2**24, *, window_sizes: Sequence[int] = (1, 2, 3, 4),
                 thing_classes: Iterable[int] | None = None) -> None:
        sizes = [check_int("window_sizes entry", k, 1) for k in window_sizes]
        if not sizes or len(set(sizes)) != len(sizes):
            raise ValueError(f"window_sizes must be non-empty and distinct, got {window_sizes}")
        thing_list = None if thing_classes is None else list(thing_classes)
        self.window_sizes = tuple(sizes)
        self.metrics = {k: VideoPanopticQuality(num_classes, ignore_label, label_divisor, offset,
                                                thing_classes=thing_list) for k in sizes}

    def reset(self) -> None:
        """Clear every window size's statistics."""
        for metric in self.metrics.values():
            metric.reset()

    def merge(self, other: WindowedVideoPanopticQuality) -> WindowedVideoPanopticQuality:
        """Add the statistics of ``other`` (same window sizes); returns self."""
        if not isinstance(other, WindowedVideoPanopticQuality):
            raise ValueError(f"cannot merge {type(other).__name__} into "
                             "WindowedVideoPanopticQuality")
        if other.window_sizes != self.window_sizes:
            raise ValueError(f"window sizes differ: {self.window_sizes} vs {other.window_sizes}")
        for k, metric in self.metrics.items():
            metric.merge(other.metrics[k])
        return self

    def update(self, gt_sequence: Any, pred_sequence: Any) -> None:
        """Accumulate all windows of one sequence."""
        gt_maps = _frames("gt_sequence", gt_sequence)
        pred_maps = _frames("pred_sequence", pred_sequence)
        if len(gt_maps) != len(pred_maps):
            raise ValueError(f"gt_sequence has {len(gt_maps)} frames, pred_sequence "
                             f"{len(pred_maps)}")
        for k, metric in self.metrics.items():
            for start in range(len(gt_maps) - k + 1):
                metric.update(gt_maps[start:start + k], pred_maps[start:start + k])

    def compute(self) -> dict[str, Any]:
        """Results dict (see the class docstring)."""
        per_window = {k: metric.compute() for k, metric in self.metrics.items()}
        values = [per_window[k]["pq"] for k in self.window_sizes]
        results: dict[str, Any] = {
            "vpq": math.nan if any(math.isnan(v) for v in values) else float(np.mean(values)),
        }
        for k in self.window_sizes:
            results[f"vpq@{k}"] = per_window[k]["pq"]
        results["per_window"] = per_window
        return results
