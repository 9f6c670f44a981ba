"""Panoptic-DeepLab post-processing on the native ops, with the pure-PyTorch fallback.

Native ops (``torch.ops.deeplab_zoo.*``, compiled from ``csrc/panoptic_deeplab*``; each
has a CPU kernel, a CUDA kernel and a fake kernel for torch.compile / torch.export):

- ``semantic_argmax(Tensor semantic_logits) -> Tensor``: [N, C, H, W] float32 ->
  [N, H, W] int32, DeepLab2's argmax of the softmax (see `postprocess.semantic_argmax`).
- ``center_heatmap_nms(Tensor center_heatmap, float center_threshold, int nms_kernel)
  -> Tensor``: [N, H, W] float32 thresholded + max-pool NMS heatmap.
- ``center_group(Tensor centers, Tensor center_scores, Tensor num_centers, Tensor offsets,
  Tensor thing_mask) -> (Tensor, Tensor)``: centres [N, K, 2] int64 (y, x) padded, scores
  [N, K] float32, valid counts [N] int64, offsets [N, 2, H, W] float32 (dy, dx), thing
  mask [N, H, W] bool -> instance ids [N, H, W] int32 (index + 1 of the nearest centre on
  thing pixels, else 0) and instance scores [N, H, W] float32.
- ``merge_semantic_instance(Tensor semantic, Tensor instance, int[] thing_class_ids,
  int label_divisor, int stuff_area_limit, int void_label) -> Tensor``: [N, H, W] int32
  maps -> [N, H, W] int32 panoptic ids (majority vote, per-class counters in order of
  first appearance, stuff area limit, overflow checks).

Every result is bit-identical to the reference in `deeplab_zoo.postprocess.panoptic_deeplab`
(the oracle of the tests); the centre selection between NMS and grouping (``nonzero`` and
DeepLab2's ``keep_k_centers`` quirk) stays in PyTorch. The Python functions below take
``backend=None`` (native when the extension is loaded and has kernels for the device,
else the reference), ``"native"`` (raise if unavailable) or ``"reference"``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..postprocess import panoptic_deeplab as reference
from . import _extension

__all__ = [
    "backend",
    "center_group",
    "center_heatmap_nms",
    "merge_semantic_instance",
    "native_available",
    "panoptic_deeplab_postprocess",
    "register_fakes",
    "semantic_argmax",
]

_OPS = ("semantic_argmax", "center_heatmap_nms", "center_group", "merge_semantic_instance")
_DISPATCH_KEYS = {"cpu": "CPU", "cuda": "CUDA"}
_fakes_registered = False


def backend() -> str:
    """``"native-cuda"`` (extension with CUDA kernels and a GPU), ``"native-cpu"``
    (extension loaded) or ``"reference"`` (pure PyTorch)."""
    status = _extension.status()
    if not status.loaded:
        return "reference"
    if status.cuda and torch.cuda.is_available():
        return "native-cuda"
    return "native-cpu"


def native_available(device: torch.device | str = "cpu") -> bool:
    """Whether the native ops can run on ``device``."""
    key = _DISPATCH_KEYS.get(torch.device(device).type)
    return (key is not None and _extension.status().loaded
            and all(_extension.has_kernel(op, key) for op in _OPS))


def _use_native(backend: str | None, device: torch.device) -> bool:
    if backend == "reference":
        return False
    if backend not in (None, "native"):
        raise ValueError(f"backend must be None, 'native' or 'reference', got {backend!r}")
    if native_available(device):
        return True
    if backend == "native":
        status = _extension.status()
        if not status.loaded:
            raise RuntimeError(f"backend='native' but the deeplab_zoo extension is not "
                               f"available: {status.reason}")
        if device.type == "cuda":
            raise RuntimeError("backend='native' but the deeplab_zoo extension was built "
                               "without CUDA kernels; rebuild it with `python -m "
                               "deeplab_zoo.ops.build` where nvcc is available, or use "
                               "backend='reference'")
        raise RuntimeError(f"backend='native' but the deeplab_zoo extension has kernels for "
                           f"CPU and CUDA tensors only, got {device.type}; use "
                           f"backend='reference'")
    return False


def _ops() -> Any:
    return torch.ops.deeplab_zoo


# --- single ops --------------------------------------------------------------------------

def semantic_argmax(semantic_logits: torch.Tensor, *, backend: str | None = None
                    ) -> torch.Tensor:
    """[N, C, H, W] float logits -> [N, H, W] int32 classes, as DeepLab2 argmaxes the
    softmax (see `deeplab_zoo.postprocess.panoptic_deeplab.semantic_argmax`)."""
    logits = reference._check_map("semantic_logits", semantic_logits, 4, "[N, C, H, W]")
    logits = reference._as_float32("semantic_logits", logits)
    if _use_native(backend, logits.device):
        return _ops().semantic_argmax(logits)
    return reference.semantic_argmax(logits, dim=1)


def center_heatmap_nms(center_heatmap: torch.Tensor, *, center_threshold: float,
                       nms_kernel: int, backend: str | None = None) -> torch.Tensor:
    """[N, 1, H, W] or [N, H, W] heatmap -> [N, H, W] float32 thresholded + NMS heatmap
    (see `deeplab_zoo.postprocess.panoptic_deeplab.center_heatmap_nms`)."""
    if isinstance(center_heatmap, torch.Tensor) and center_heatmap.ndim == 4:
        if center_heatmap.shape[1] != 1:
            raise ValueError("center_heatmap must be [N, 1, H, W] or [N, H, W], got shape "
                             f"{tuple(center_heatmap.shape)}")
        center_heatmap = center_heatmap[:, 0]
    heat = center_heatmap
    heat = reference._as_float32("center_heatmap",
                                 reference._check_map("center_heatmap", heat, 3, "[N, H, W]"))
    kernel = reference._check_int("nms_kernel", nms_kernel, 1)
    threshold = float(center_threshold)
    if math.isnan(threshold):
        raise ValueError("center_threshold must not be NaN")
    if _use_native(backend, heat.device):
        return _ops().center_heatmap_nms(heat, threshold, kernel)
    maps = [reference.center_heatmap_nms(h, center_threshold=threshold, nms_kernel=kernel)
            for h in heat]
    return torch.stack(maps) if maps else torch.zeros_like(heat)


def _pad_centers(centers: Sequence[torch.Tensor], scores: Sequence[torch.Tensor] | None,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    counts = [int(c.shape[0]) for c in centers]
    width = max(counts, default=0)
    padded = torch.zeros(len(centers), width, 2, dtype=torch.int64, device=device)
    padded_scores = torch.zeros(len(centers), width, dtype=torch.float32, device=device)
    for i, (count, points) in enumerate(zip(counts, centers)):
        if points.ndim != 2 or points.shape[1] != 2 or points.is_floating_point():
            raise ValueError(f"centers[{i}] must be a [K, 2] integer tensor of (y, x), got "
                             f"{points.dtype} {tuple(points.shape)}")
        padded[i, :count] = points.to(device)
        if scores is not None:
            if tuple(scores[i].shape) != (count,):
                raise ValueError(f"center_scores[{i}] must have shape ({count},), got "
                                 f"{tuple(scores[i].shape)}")
            padded_scores[i, :count] = scores[i].to(device=device, dtype=torch.float32)
    return padded, padded_scores, torch.tensor(counts, dtype=torch.int64, device=device)


def center_group(centers: Sequence[torch.Tensor], offsets: torch.Tensor,
                 thing_mask: torch.Tensor, *, center_scores: Sequence[torch.Tensor] | None = None,
                 backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Assigns every thing pixel to the centre nearest to ``pixel + offset``.

    Args:
        centers: per image, [K_i, 2] integer (y, x) centres (instance id k + 1 = centre k).
        offsets: [N, 2, H, W] float (dy, dx).
        thing_mask: [N, H, W] bool, pixels of thing classes.
        center_scores: per image, [K_i] float scores (default: zeros).
        backend: None, "native" or "reference".

    Returns:
        (instance [N, H, W] int32: nearest centre index + 1 on thing pixels, else 0;
        instance_scores [N, H, W] float32: that centre's score on thing pixels, else 0).
        Distances are float32 ``sqrt((cy - y - dy)**2 + (cx - x - dx)**2)``, ties go to the
        first centre, exactly as in DeepLab2.
    """
    offsets = reference._as_float32(
        "offsets", reference._check_map("offsets", offsets, 4, "[N, 2, H, W]"))
    batch, channels, height, width = offsets.shape
    if channels != 2:
        raise ValueError(f"offsets must be [N, 2, H, W] (dy, dx), got {tuple(offsets.shape)}")
    if not isinstance(thing_mask, torch.Tensor) or tuple(thing_mask.shape) != (batch, height,
                                                                               width):
        shape = tuple(thing_mask.shape) if isinstance(thing_mask, torch.Tensor) else None
        raise ValueError(f"thing_mask must be [N, H, W] = {(batch, height, width)}, got {shape}")
    if len(centers) != batch or (center_scores is not None and len(center_scores) != batch):
        raise ValueError(f"centers (and center_scores) must hold one tensor per image ({batch})")
    device = offsets.device
    thing_mask = thing_mask.to(device=device, dtype=torch.bool)
    padded, scores, counts = _pad_centers(centers, center_scores, device)
    if _use_native(backend, device):
        return _ops().center_group(padded, scores, counts, offsets, thing_mask)
    instances, score_maps = [], []
    for i in range(batch):
        count = int(counts[i])
        if count == 0:
            instances.append(torch.zeros(height, width, dtype=torch.int32, device=device))
            score_maps.append(torch.zeros(height, width, dtype=torch.float32, device=device))
            continue
        nearest = reference.group_pixels(padded[i, :count], offsets[i])
        instances.append(torch.where(thing_mask[i], nearest, 0).to(torch.int32))
        score_maps.append(scores[i, :count][nearest - 1] * thing_mask[i].to(torch.float32))
    if not instances:
        empty = offsets.new_zeros(0, height, width)
        return empty.to(torch.int32), empty
    return torch.stack(instances), torch.stack(score_maps)


def merge_semantic_instance(semantic: torch.Tensor, instance: torch.Tensor, *,
                            thing_class_ids: Sequence[int] | torch.Tensor, label_divisor: int,
                            stuff_area_limit: int, void_label: int,
                            backend: str | None = None) -> torch.Tensor:
    """[N, H, W] semantic classes + instance ids -> [N, H, W] int32 panoptic ids.

    Batched `deeplab_zoo.postprocess.panoptic_deeplab.merge_semantic_and_instance` (same
    rules, same errors): majority vote per instance, per-class counters in order of first
    appearance, stuff regions smaller than ``stuff_area_limit`` -> void, ids
    ``class * label_divisor + counter``; ValueError if a counter reaches ``label_divisor``
    or an id overflows int32.
    """
    semantic = reference._check_map("semantic", semantic, 3, "[N, H, W]")
    instance = reference._check_map("instance", instance, 3, "[N, H, W]")
    if semantic.shape != instance.shape:
        raise ValueError(f"semantic and instance shapes differ: {tuple(semantic.shape)} vs "
                         f"{tuple(instance.shape)}")
    if semantic.is_floating_point() or instance.is_floating_point():
        raise ValueError("semantic and instance must be integer tensors, got "
                         f"{semantic.dtype} and {instance.dtype}")
    divisor = reference._check_int("label_divisor", label_divisor, 1)
    limit = reference._check_int("stuff_area_limit", stuff_area_limit)
    void = reference._check_int("void_label", void_label)
    instance = instance.to(semantic.device)
    thing_ids = reference._thing_ids_tensor(thing_class_ids, semantic.device)
    if _use_native(backend, semantic.device) and _fits_int32(semantic, instance):
        return _ops().merge_semantic_instance(semantic.to(torch.int32), instance.to(torch.int32),
                                              thing_ids.tolist(), divisor, limit, void)
    maps = [reference.merge_semantic_and_instance(
        s, i, thing_class_ids=thing_ids, label_divisor=divisor, stuff_area_limit=limit,
        void_label=void) for s, i in zip(semantic, instance)]
    if not maps:
        return torch.zeros(semantic.shape, dtype=torch.int32, device=semantic.device)
    return torch.stack(maps)


def _fits_int32(*tensors: torch.Tensor) -> bool:
    """The native merge takes int32 maps; wider integer maps with values outside int32
    go to the reference (which handles them) instead of being truncated."""
    for t in tensors:
        if t.dtype in (torch.int64,) and t.numel():
            low, high = torch.aminmax(t)
            if int(low) < -(2**31) or int(high) > 2**31 - 1:
                return False
    return True


# --- the whole post-processor ------------------------------------------------------------

def panoptic_deeplab_postprocess(semantic_logits: torch.Tensor, center_heatmap: torch.Tensor,
                                 offset_map: torch.Tensor, *,
                                 thing_class_ids: Sequence[int] | torch.Tensor,
                                 label_divisor: int, stuff_area_limit: int,
                                 center_threshold: float, nms_kernel: int,
                                 keep_k_centers: int, void_label: int,
                                 backend: str | None = None) -> dict[str, Any]:
    """DeepLab2's Panoptic-DeepLab post-processor on the native ops (batched).

    Same arguments and the same dict as
    `deeplab_zoo.postprocess.panoptic_deeplab.panoptic_deeplab_postprocess` (bit-identical
    values): ``panoptic_pred``, ``semantic_pred``, ``instance_pred`` ([N, H, W] int32),
    ``instance_center_pred``, ``instance_scores`` ([N, H, W] float32), ``center_points`` /
    ``center_scores`` (per-image [K, 2] int64 / [K] float32). ``backend``: None (fastest
    available), ``"native"`` (the extension, error if unavailable) or ``"reference"``.
    """
    kwargs = dict(thing_class_ids=thing_class_ids, label_divisor=label_divisor,
                  stuff_area_limit=stuff_area_limit, center_threshold=center_threshold,
                  nms_kernel=nms_kernel, keep_k_centers=keep_k_centers, void_label=void_label)
    logits = reference._check_map("semantic_logits", semantic_logits, 4, "[N, C, H, W]")
    if not _use_native(backend, logits.device):
        return reference.panoptic_deeplab_postprocess(semantic_logits, center_heatmap,
                                                      offset_map, **kwargs)
    logits, heat, offsets = reference.check_head_outputs(logits, center_heatmap, offset_map)
    batch, num_classes, height, width = logits.shape
    device = logits.device
    logits = reference._as_float32("semantic_logits", logits)
    kernel = reference._check_int("nms_kernel", nms_kernel, 1)
    keep_k = reference._check_int("keep_k_centers", keep_k_centers)
    divisor = reference._check_int("label_divisor", label_divisor, 1)
    limit = reference._check_int("stuff_area_limit", stuff_area_limit)
    void = reference._check_int("void_label", void_label)
    threshold = float(center_threshold)
    if math.isnan(threshold):
        raise ValueError("center_threshold must not be NaN")
    thing_ids = reference._thing_ids_tensor(thing_class_ids, device)

    ops = _ops()
    semantic = ops.semantic_argmax(logits)
    center_maps = ops.center_heatmap_nms(heat[:, 0], threshold, kernel)
    found = [reference._centers_from_nms_map(center_maps[i], keep_k) for i in range(batch)]
    center_points = [centers for centers, _ in found]
    center_scores = [scores for _, scores in found]
    padded, padded_scores, counts = _pad_centers(center_points, center_scores, device)
    is_thing_class = torch.zeros(num_classes, dtype=torch.bool, device=device)
    in_range = thing_ids[(thing_ids >= 0) & (thing_ids < num_classes)]
    is_thing_class[in_range] = True
    thing_mask = is_thing_class.index_select(0, semantic.reshape(-1)).view(semantic.shape)
    instance, instance_scores = ops.center_group(padded, padded_scores, counts, offsets,
                                                 thing_mask)
    panoptic = ops.merge_semantic_instance(semantic, instance, thing_ids.tolist(), divisor,
                                           limit, void)
    return {
        "panoptic_pred": panoptic,
        "semantic_pred": semantic,
        "instance_pred": instance,
        "instance_center_pred": center_maps,
        "instance_scores": instance_scores,
        "center_points": center_points,
        "center_scores": center_scores,
    }


# --- fake (meta) kernels -----------------------------------------------------------------

def register_fakes() -> None:
    """Registers the fake kernels (shape / dtype only) of the ops; idempotent."""
    global _fakes_registered
    if _fakes_registered:
        return
    _fakes_registered = True

    def check(condition: bool, message: str) -> None:
        torch._check(condition, lambda: message)

    @torch.library.register_fake("deeplab_zoo::semantic_argmax")
    def _semantic_argmax_fake(semantic_logits: torch.Tensor) -> torch.Tensor:
        check(semantic_logits.dim() == 4 and semantic_logits.dtype == torch.float32,
              "semantic_logits must be a float32 [N, C, H, W] tensor")
        batch, _, height, width = semantic_logits.shape
        return semantic_logits.new_empty((batch, height, width), dtype=torch.int32)

    @torch.library.register_fake("deeplab_zoo::center_heatmap_nms")
    def _center_heatmap_nms_fake(center_heatmap: torch.Tensor, center_threshold: float,
                                 nms_kernel: int) -> torch.Tensor:
        check(center_heatmap.dim() == 3 and center_heatmap.dtype == torch.float32,
              "center_heatmap must be a float32 [N, H, W] tensor")
        return torch.empty_like(center_heatmap, memory_format=torch.contiguous_format)

    @torch.library.register_fake("deeplab_zoo::center_group")
    def _center_group_fake(centers: torch.Tensor, center_scores: torch.Tensor,
                           num_centers: torch.Tensor, offsets: torch.Tensor,
                           thing_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check(offsets.dim() == 4 and offsets.dtype == torch.float32,
              "offsets must be a float32 [N, 2, H, W] tensor")
        check(centers.dtype == torch.int64 and num_centers.dtype == torch.int64
              and center_scores.dtype == torch.float32 and thing_mask.dtype == torch.bool,
              "center_group takes int64 centers / num_centers, float32 center_scores and a "
              "bool thing_mask")
        batch, _, height, width = offsets.shape
        return (offsets.new_empty((batch, height, width), dtype=torch.int32),
                offsets.new_empty((batch, height, width), dtype=torch.float32))

    @torch.library.register_fake("deeplab_zoo::merge_semantic_instance")
    def _merge_semantic_instance_fake(semantic: torch.Tensor, instance: torch.Tensor,
                                      thing_class_ids: list[int], label_divisor: int,
                                      stuff_area_limit: int, void_label: int) -> torch.Tensor:
        check(semantic.dim() == 3 and semantic.shape == instance.shape,
              "semantic and instance must be [N, H, W] tensors of one shape")
        check(semantic.dtype == torch.int32 and instance.dtype == torch.int32,
              "semantic and instance must be int32")
        return semantic.new_empty(semantic.shape, dtype=torch.int32)
