"""Training targets of Panoptic-DeepLab (and Motion-/ViP-/MaX-DeepLab extras).

Follows DeepLab2's ``data/sample_generator.py`` (``PanopticSampleGenerator``):

* ``semantic``: ``panoptic // label_divisor`` (crowd pixels keep their thing class);
  ``semantic_weights`` are 1, or ``small_instance_weight`` on the pixels of instances
  smaller than ``small_instance_area`` pixels.
* crowd regions (thing class with instance 0, or ``crowd`` True) become void in the
  panoptic label used for the instance targets.
* ``center``: per instance, the mean pixel position rounded half-to-even, and a
  Gaussian of standard deviation ``sigma`` (window ``int(6 sigma + 3)`` pixels,
  peak at ``3 sigma + 1`` inside it) max-combined over instances;
  ``center_weights`` are 1 on non-crowd, non-void pixels.
* ``offset``: ``(center_y - y, center_x - x)`` on instance pixels, ``offset_weights``
  1 on non-crowd thing pixels.
* with ``prev_panoptic`` (Motion-DeepLab): ``prev_center`` (a heatmap of the previous
  frame's centres jittered by 5 % of the box size, plus a false positive with
  probability 0.2), ``frame_offset`` (previous centre minus pixel, for instances
  present in both frames) and ``frame_offset_weights`` (offset non-zero);
* with ``next_panoptic`` (ViP-DeepLab): ``next_offset`` (this frame's centre minus the
  next-frame pixel, on the next frame's pixels of each instance) and its weights;
* with ``max_thing_id`` (MaX-DeepLab): ``thing_id_mask`` (-1 or the thing's index in
  order of first appearance) and ``thing_id_class`` (its semantic class, -1 padded);
* ``depth`` is passed through (0 = unknown).

Coordinates are (y, x); offsets ``[2, H, W]`` hold (dy, dx). The only deliberate
difference: instance centres are computed in float64 (DeepLab2 sums in float32, which can
round differently for instances with more than ~2**24 / H pixels).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .datasets import DatasetInfo
from .sample import Sample

__all__ = ["PanopticTargetGenerator", "gaussian_kernel", "panoptic_deeplab_targets"]


def gaussian_kernel(sigma: float) -> tuple[np.ndarray, int]:
    """DeepLab2's centre Gaussian: ``(kernel [size, size] float32, size = int(6 sigma + 3))``."""
    size = int(6 * sigma + 3)
    x = np.arange(size, dtype=np.float64)
    x0 = 3 * sigma + 1
    d2 = (x[None, :] - x0) ** 2 + (x[:, None] - x0) ** 2
    return np.exp(-d2 / (2 * sigma**2)).astype(np.float32), size


class _Segments:
    """Pixels grouped by label id, ids in order of first appearance (``tf.unique`` order)."""

    def __init__(self, label: np.ndarray):
        flat = label.reshape(-1)
        ids, first, inverse, counts = np.unique(flat, return_index=True, return_inverse=True,
                                                return_counts=True)
        groups = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
        order = np.argsort(first, kind="stable")
        self.width = label.shape[1]
        self.ids = ids[order]
        self.pixels = dict(zip(ids.tolist(), groups))

    def instances(self, label_divisor: int, ignore_label: int) -> list[int]:
        """Thing instance ids (not void, not stuff / crowd), first-appearance order."""
        ids = self.ids
        keep = (ids // label_divisor != ignore_label) & (ids % label_divisor != 0)
        return ids[keep].tolist()

    def coords(self, pid: int) -> tuple[np.ndarray, np.ndarray]:
        flat = self.pixels.get(pid, np.zeros(0, dtype=np.int64))
        return flat // self.width, flat % self.width


class _CenterCanvas:
    """A heatmap with DeepLab2's padding so the Gaussian can be pasted near borders."""

    def __init__(self, height: int, width: int, sigma: float):
        self.kernel, self.size = gaussian_kernel(sigma)
        self.pad = int(round(3 * sigma + 1))
        end = int(round(3 * sigma + 2))
        self.height, self.width = height, width
        self.canvas = np.zeros((height + self.pad + end, width + self.pad + end), np.float32)

    def paste(self, cy: int, cx: int) -> None:
        # The centre pixel is the window's upper-left corner in padded coordinates.
        window = self.canvas[cy:cy + self.size, cx:cx + self.size]
        np.maximum(window, self.kernel, out=window)

    def result(self) -> np.ndarray:
        return self.canvas[self.pad:self.pad + self.height, self.pad:self.pad + self.width]


def _round_half_even(value: float) -> int:
    return int(np.round(np.float32(value)))  # tf.round on float32


def _noisy_prev_centers(prev: np.ndarray, label_divisor: int, ignore_label: int,
                        sigma: float, generator: torch.Generator | None,
                        offset_noise: float = 0.05, false_positive_rate: float = 0.2,
                        false_positive_noise: float = 0.05
                        ) -> tuple[np.ndarray, dict[int, tuple[int, int]]]:
    """Motion-DeepLab's previous-frame centre heatmap with noise, and id -> centre."""
    height, width = prev.shape
    canvas = _CenterCanvas(height, width, sigma)
    segments = _Segments(prev)
    centres: dict[int, tuple[int, int]] = {}

    def clip(value: float, high: int) -> int:
        return min(max(_round_half_even(value), 0), high - 1)

    for pid in segments.instances(label_divisor, ignore_label):
        ys, xs = segments.coords(pid)
        box_y, box_x = float(ys.max() - ys.min()), float(xs.max() - xs.min())
        noise = torch.randn(4, generator=generator).tolist()
        draw = float(torch.rand((), generator=generator))
        cy = clip(ys.mean() + noise[0] * offset_noise * box_y, height)
        cx = clip(xs.mean() + noise[1] * offset_noise * box_x, width)
        centres[pid] = (cy, cx)
        canvas.paste(cy, cx)
        fy = clip(cy + noise[2] * false_positive_noise * box_y, height)
        fx = clip(cx + noise[3] * false_positive_noise * box_x, width)
        if draw < false_positive_rate:
            canvas.paste(fy, fx)
    return canvas.result().copy(), centres


def _crowd_to_void(panoptic: np.ndarray, things: np.ndarray, label_divisor: int,
                   void: int) -> np.ndarray:
    is_thing = np.isin(panoptic // label_divisor, things)
    return np.where(is_thing & (panoptic % label_divisor == 0), void, panoptic)


def _as_numpy(label: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(label, torch.Tensor):
        label = label.detach().cpu().numpy()
    return np.asarray(label).astype(np.int64)


def panoptic_deeplab_targets(panoptic: torch.Tensor | np.ndarray, *,
                             thing_class_ids: Sequence[int], label_divisor: int,
                             ignore_label: int, crowd: torch.Tensor | None = None,
                             sigma: float = 8.0, small_instance_area: int = 4096,
                             small_instance_weight: float = 1.0,
                             prev_panoptic: torch.Tensor | None = None,
                             next_panoptic: torch.Tensor | None = None,
                             max_thing_id: int | None = None,
                             generator: torch.Generator | None = None
                             ) -> dict[str, torch.Tensor]:
    """Targets of one ``[H, W]`` panoptic label (see the module docstring for the keys)."""
    label = _as_numpy(panoptic)
    if label.ndim != 2:
        raise ValueError(f"panoptic must be [H, W], got shape {tuple(label.shape)}")
    if not 0 <= ignore_label < label_divisor:
        raise ValueError(f"ignore_label must be in [0, label_divisor), got {ignore_label}")
    height, width = label.shape
    things = np.asarray(list(thing_class_ids), dtype=np.int64)
    void = ignore_label * label_divisor
    semantic = label // label_divisor
    is_thing = np.isin(semantic, things)
    crowd_region = is_thing & (label % label_divisor == 0)
    if crowd is not None:
        crowd_region |= _as_numpy(crowd).astype(bool) & is_thing
    instance_label = np.where(crowd_region, void, label)
    segments = _Segments(instance_label)

    semantic_weights = np.ones((height, width), np.float32)
    canvas = _CenterCanvas(height, width, sigma)
    offset = np.zeros((2, height, width), np.float32)
    out: dict[str, torch.Tensor] = {}
    prev_centres: dict[int, tuple[int, int]] = {}
    if prev_panoptic is not None:
        prev_label = _crowd_to_void(_as_numpy(prev_panoptic), things, label_divisor, void)
        prev_center, prev_centres = _noisy_prev_centers(prev_label, label_divisor,
                                                        ignore_label, sigma, generator)
        out["prev_center"] = torch.from_numpy(prev_center)
        frame_offset = np.zeros((2, height, width), np.float32)
    if next_panoptic is not None:
        next_segments = _Segments(_crowd_to_void(_as_numpy(next_panoptic), things,
                                                 label_divisor, void))
        next_offset = np.zeros((2, height, width), np.float32)

    for pid in segments.instances(label_divisor, ignore_label):
        ys, xs = segments.coords(pid)
        # Mean position (exact in float64), rounded half to even as tf.round.
        cy, cx = int(np.round(ys.mean())), int(np.round(xs.mean()))
        if ys.size < small_instance_area:
            semantic_weights[ys, xs] = small_instance_weight
        canvas.paste(cy, cx)
        offset[0, ys, xs] = cy - ys
        offset[1, ys, xs] = cx - xs
        if pid in prev_centres:
            py, px = prev_centres[pid]
            frame_offset[0, ys, xs] = py - ys
            frame_offset[1, ys, xs] = px - xs
        if next_panoptic is not None:
            nys, nxs = next_segments.coords(pid)
            next_offset[0, nys, nxs] = cy - nys
            next_offset[1, nys, nxs] = cx - nxs

    out.update({
        "semantic": torch.from_numpy(semantic),
        "semantic_weights": torch.from_numpy(semantic_weights),
        "panoptic": torch.from_numpy(instance_label.astype(np.int32)),
        "crowd": torch.from_numpy(crowd_region),
        "center": torch.from_numpy(canvas.result().copy()),
        "center_weights": torch.from_numpy((~crowd_region & (semantic != ignore_label))
                                           .astype(np.float32)),
        "offset": torch.from_numpy(offset),
        "offset_weights": torch.from_numpy((~crowd_region & is_thing).astype(np.float32)),
    })
    if prev_panoptic is not None:
        out["frame_offset"] = torch.from_numpy(frame_offset)
        out["frame_offset_weights"] = torch.from_numpy(
            (frame_offset != 0).any(axis=0).astype(np.float32))
    if next_panoptic is not None:
        out["next_offset"] = torch.from_numpy(next_offset)
        out["next_offset_weights"] = torch.from_numpy(
            (np.abs(next_offset).sum(axis=0) > 0).astype(np.float32))
    if max_thing_id is not None:
        out["thing_id_mask"], out["thing_id_class"] = _thing_id_mask(
            segments, (height, width), label_divisor, ignore_label, max_thing_id)
    return out


def _thing_id_mask(segments: _Segments, shape: tuple[int, int], label_divisor: int,
                   ignore_label: int, max_thing_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = segments.instances(label_divisor, ignore_label)
    if len(ids) > max_thing_id:
        raise ValueError(f"{len(ids)} thing instances exceed max_thing_id={max_thing_id}")
    mask = np.full(shape, -1, dtype=np.int64)
    classes = np.full((max_thing_id,), -1, dtype=np.int64)
    for index, pid in enumerate(ids):
        ys, xs = segments.coords(pid)
        mask[ys, xs] = index
        classes[index] = pid // label_divisor
    return torch.from_numpy(mask), torch.from_numpy(classes)


@dataclass
class PanopticTargetGenerator:
    """Adds Panoptic-DeepLab targets to a :class:`~deeplab_zoo.data.sample.Sample`.

    ``small_instance_weight`` 1.0 disables DeepLab2's ``increase_small_instance_weights``
    (its configs use threshold 4096 and weight 3.0 when enabled). The previous-frame
    centre noise draws from ``generator`` (or the global torch RNG).
    """

    dataset: DatasetInfo
    sigma: float = 8.0
    small_instance_area: int = 4096
    small_instance_weight: float = 1.0
    max_thing_id: int | None = None

    def __call__(self, sample: Sample, generator: torch.Generator | None = None
                 ) -> dict[str, torch.Tensor]:
        info = self.dataset
        targets = panoptic_deeplab_targets(
            sample["panoptic"], thing_class_ids=info.thing_class_ids,
            label_divisor=info.label_divisor, ignore_label=info.ignore_label,
            crowd=sample.get("crowd"), sigma=self.sigma,
            small_instance_area=self.small_instance_area,
            small_instance_weight=self.small_instance_weight,
            prev_panoptic=sample.get("prev_panoptic"), next_panoptic=sample.get("next_panoptic"),
            max_thing_id=self.max_thing_id, generator=generator)
        if "depth" in sample:
            targets["depth"] = sample["depth"].float()
        return targets
