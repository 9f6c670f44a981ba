"""MaX-DeepLab / kMaX-DeepLab post-processing, as DeepLab2's
``model/post_processor/max_deeplab.py``.

Inputs are the mask transformer's raw outputs: ``pixel_space_mask_logits``
``[N, K, h, w]`` (one map per mask slot, at the model's native stride) and
``transformer_class_logits`` ``[N, K, C + 1]`` (last channel = void). Class channel
``c < C`` means dataset class ``thing_stuff_class_ids(...)[c]``: DeepLab2 orders the
thing classes first, then the stuff classes (both sorted, the void label excluded).

Mask logits are resized to the output size with TensorFlow's ``resize_bilinear``
(align corners; reproduced operation by operation in float32), then:

* ``'pixelwise'`` (MaX-DeepLab): each pixel takes its arg-max slot among the slots whose
  class confidence reaches ``class_confidence_threshold``; pixels whose slot
  probability is at most ``pixel_confidence_threshold`` (or whose overall arg-max slot
  was filtered out) are void.
* ``'maskwise'`` (kMaX-DeepLab): slots are ranked by ``class_conf ** w_c *
  mask_conf ** w_m``; each slot's binary mask (probability > pixel threshold) is pasted
  in that order onto the free pixels if its class is confident (thing / stuff
  thresholds) and at most ``1 - overlapping_threshold`` of it is already taken.

Thing segments smaller than ``thing_area_limit`` pixels and stuff classes covering
fewer than ``stuff_area_limit`` pixels become void. ``semantic_pred`` comes from a
second, unthresholded pixelwise pass, as in DeepLab2. ``instance_pred`` is DeepLab2's
mask id + 1 (in maskwise mode the id is the slot's position in the ranking),
not filtered by confidence.

Everything is vectorised over pixels and batched; only the maskwise paste loops over
the confident slots of each image (their number is read back to the host).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..data.datasets import stuff_class_ids

__all__ = [
    "MaskTransformerPostprocessConfig",
    "mask_transformer_postprocess",
    "tf_resize_bilinear_align_corners",
    "tf_softmax",
    "thing_stuff_class_ids",
]

POSTPROCESS_MODES = ("pixelwise", "maskwise")
_SMALL_CONSTANT_FOR_SOFTMAX = -99999.0
# Largest resized-logits chunk (elements) held at once: output rows are processed in
# chunks (every per-pixel result is independent of the chunking).
_CHUNK_ELEMENTS = 1 << 25


@dataclass(frozen=True)
class MaskTransformerPostprocessConfig:
    """DeepLab2 ``evaluator_options`` that drive MaX/kMaX post-processing.

    Defaults are DeepLab2's proto defaults (``pixelwise``, no area limits).
    """

    mode: str = "pixelwise"
    pixel_confidence_threshold: float = 0.4
    class_confidence_threshold: float = 0.7
    thing_class_confidence_threshold: float = 0.7
    stuff_class_confidence_threshold: float = 0.7
    overlapping_threshold: float = 0.5
    reorder_class_weight: float = 1.0
    reorder_mask_weight: float = 0.0
    thing_area_limit: int = 0
    stuff_area_limit: int = 0

    def __post_init__(self):
        if self.mode not in POSTPROCESS_MODES:
            raise ValueError(f"mode must be one of {POSTPROCESS_MODES}, got {self.mode!r}")
        for name in ("thing_area_limit", "stuff_area_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def thing_stuff_class_ids(num_thing_stuff_classes: int, thing_class_ids: Sequence[int],
                          void_label: int) -> list[int]:
    """Dataset class of each non-void class channel: things first, then stuff (DeepLab2's
    ``thing_class_ids + get_stuff_class_ids(...)``)."""
    things = [int(c) for c in thing_class_ids]
    return things + stuff_class_ids(num_thing_stuff_classes, things, void_label)


def tf_softmax(x: torch.Tensor, dim: int) -> torch.Tensor:
    """float32 softmax computed as TensorFlow does: ``exp(x - max) * (1 / sum)``."""
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e * torch.reciprocal(e.sum(dim=dim, keepdim=True))


def _tf_interpolation(in_size: int, out_size: int, device: torch.device
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lower, upper, lerp) per output index, as TF's legacy align-corners scaler."""
    if out_size > 1:
        scale = np.float32(in_size - 1) / np.float32(out_size - 1)
    else:
        scale = np.float32(in_size) / np.float32(out_size)
    position = torch.arange(out_size, device=device, dtype=torch.float32) * float(scale)
    floor = torch.floor(position)
    lower = floor.long().clamp(min=0)
    upper = torch.ceil(position).long().clamp(max=in_size - 1)
    return lower, upper, position - floor


def tf_resize_bilinear_align_corners(x: torch.Tensor, size: Sequence[int],
                                     rows: slice | None = None) -> torch.Tensor:
    """``tf.compat.v1.image.resize_bilinear(align_corners=True)`` of ``[..., h, w]`` float32.

    Reproduces TF's arithmetic (float32 source positions, ``top + (bottom - top) * dy``
    of ``left + (right - left) * dx``), so results are bit-identical to TF on CPU.
    ``rows`` selects a range of output rows (for chunked processing).
    """
    in_h, in_w = x.shape[-2:]
    out_h, out_w = int(size[0]), int(size[1])
    y_low, y_high, y_lerp = _tf_interpolation(in_h, out_h, x.device)
    x_low, x_high, x_lerp = _tf_interpolation(in_w, out_w, x.device)
    if rows is not None:
        y_low, y_high, y_lerp = y_low[rows], y_high[rows], y_lerp[rows]
    top, bottom = x[..., y_low, :], x[..., y_high, :]
    top_left, top_right = top[..., x_low], top[..., x_high]
    bottom_left, bottom_right = bottom[..., x_low], bottom[..., x_high]
    top = top_left + (top_right - top_left) * x_lerp
    bottom = bottom_left + (bottom_right - bottom_left) * x_lerp
    return top + (bottom - top) * y_lerp[:, None]


def _row_chunks(num_rows: int, elements_per_row: int):
    step = max(1, _CHUNK_ELEMENTS // max(1, elements_per_row))
    for start in range(0, num_rows, step):
        yield slice(start, min(num_rows, start + step))


def _count_filter(values: torch.Tensor, area_limit: int) -> torch.Tensor:
    """Per image: True where the value's pixel count is >= ``area_limit``
    (DeepLab2's ``count > area_limit - 0.5``)."""
    n = values.shape[0]
    flat = values.reshape(n, -1).long()
    size = int(flat.max()) + 1
    offsets = torch.arange(n, device=flat.device)[:, None] * size
    counts = torch.bincount((flat + offsets).reshape(-1), minlength=n * size).reshape(n, size)
    return (torch.gather(counts, 1, flat) >= area_limit).reshape(values.shape)


def _merge(mask_id_plus_one: torch.Tensor, semantic: torch.Tensor, thing: torch.Tensor,
           stuff: torch.Tensor, *, void_label: int, label_divisor: int, thing_area_limit: int,
           stuff_area_limit: int) -> torch.Tensor:
    """DeepLab2's ``_merge_mask_id_and_semantic_maps`` (integer arithmetic, same result)."""
    thing_ids = mask_id_plus_one * thing
    thing_semantic = (semantic + 1) * thing
    stuff_semantic = (semantic + 1) * stuff
    if stuff_area_limit > 0:
        stuff_semantic = stuff_semantic * _count_filter(stuff_semantic, stuff_area_limit)
    if thing_area_limit > 0:
        keep = _count_filter(thing_ids, thing_area_limit)
        thing_ids = thing_ids * keep
        thing_semantic = thing_semantic * keep
    semantic_new = thing_semantic + stuff_semantic - 1
    semantic_new = torch.where(semantic_new < 0, torch.full_like(semantic_new, void_label),
                               semantic_new)
    return (semantic_new * label_divisor + thing_ids).to(torch.int32)


def _check_inputs(mask_logits: torch.Tensor, class_logits: torch.Tensor) -> None:
    if not isinstance(mask_logits, torch.Tensor) or mask_logits.ndim != 4:
        raise ValueError("pixel_space_mask_logits must be a [N, K, h, w] tensor, got "
                         f"{getattr(mask_logits, 'shape', type(mask_logits))}")
    if not isinstance(class_logits, torch.Tensor) or class_logits.ndim != 3:
        raise ValueError("transformer_class_logits must be a [N, K, C + 1] tensor, got "
                         f"{getattr(class_logits, 'shape', type(class_logits))}")
    if class_logits.shape[:2] != mask_logits.shape[:2]:
        raise ValueError(f"batch / slot dims differ: mask logits {tuple(mask_logits.shape)}, "
                         f"class logits {tuple(class_logits.shape)}")
    if class_logits.shape[-1] < 2:
        raise ValueError("transformer_class_logits needs at least one class and the void "
                         "channel")
    if not (mask_logits.is_floating_point() and class_logits.is_floating_point()):
        raise ValueError("mask and class logits must be floating-point tensors")


@torch.no_grad()
def mask_transformer_postprocess(pixel_space_mask_logits: torch.Tensor,
                                 transformer_class_logits: torch.Tensor, *,
                                 thing_class_ids: Sequence[int], void_label: int,
                                 label_divisor: int, output_size: Sequence[int],
                                 config: MaskTransformerPostprocessConfig | None = None
                                 ) -> dict[str, torch.Tensor]:
    """DeepLab2's MaX-DeepLab post-processor on a batch.

    Args:
        pixel_space_mask_logits: ``[N, K, h, w]`` mask logits (native stride).
        transformer_class_logits: ``[N, K, C + 1]`` class logits, channels in DeepLab2's
            thing-then-stuff order (see :func:`thing_stuff_class_ids`), last = void.
        thing_class_ids: dataset ids of the thing classes.
        void_label: the dataset's ignore label (void pixels get ``void_label * divisor``).
        label_divisor: panoptic label divisor.
        output_size: ``(H, W)`` the maps are resized to (DeepLab2: the eval crop).
        config: thresholds and mode.

    Returns:
        ``panoptic_pred``, ``instance_pred``, ``semantic_pred`` (int32 ``[N, H, W]``),
        ``instance_scores`` and ``semantic_scores`` (float32 ``[N, H, W]``).
    """
    config = config or MaskTransformerPostprocessConfig()
    _check_inputs(pixel_space_mask_logits, transformer_class_logits)
    mask_logits = pixel_space_mask_logits.float()
    class_logits = transformer_class_logits.float()
    n, num_slots = mask_logits.shape[:2]
    height, width = int(output_size[0]), int(output_size[1])
    device = mask_logits.device
    class_ids = thing_stuff_class_ids(class_logits.shape[-1] - 1, thing_class_ids, void_label)
    num_things = len(thing_class_ids)
    class_ids_t = torch.tensor(class_ids, device=device, dtype=torch.long)
    f32 = torch.float32

    class_probs = tf_softmax(class_logits, dim=-1)[..., :-1]
    class_conf, class_pred = class_probs.max(dim=-1)  # first maximum on ties, as tf.argmax
    pixel_threshold = torch.tensor(config.pixel_confidence_threshold, dtype=f32)

    maskwise = config.mode == "maskwise"
    if maskwise:
        thing_thr = torch.tensor(config.thing_class_confidence_threshold, dtype=f32)
        stuff_thr = torch.tensor(config.stuff_class_confidence_threshold, dtype=f32)
        num_detections = ((class_conf >= thing_thr) | (class_conf >= stuff_thr)).sum(dim=1)
        # Mask confidence: mean probability of the pixels each slot claims (native size).
        probs = tf_softmax(mask_logits, dim=1)
        detected = (probs > pixel_threshold).to(f32)
        mask_scores = (probs * detected).flatten(2).sum(dim=2)
        denominator = detected.flatten(2).sum(dim=2)
        mask_scores = torch.where(denominator > 0, mask_scores / denominator,
                                  torch.zeros_like(mask_scores))
        reorder_score = (torch.pow(class_conf, config.reorder_class_weight)
                         * torch.pow(mask_scores, config.reorder_mask_weight))
        order = torch.sort(reorder_score, dim=1, descending=True, stable=True).indices
        class_pred = torch.gather(class_pred, 1, order)
        class_conf = torch.gather(class_conf, 1, order)
        is_thing = class_pred < num_things
        confident_slot = torch.where(is_thing, class_conf >= thing_thr, class_conf >= stuff_thr)
    else:
        class_thr = torch.tensor(config.class_confidence_threshold, dtype=f32)
        kept = (class_conf >= class_thr).to(f32)
        num_detections = (kept > 0.5).sum(dim=1)
        # Logits of filtered slots are replaced by a very small constant (DeepLab2 ops).
        keep_scale = kept[:, :, None, None]
        fill = (_SMALL_CONSTANT_FOR_SOFTMAX * (1.0 - kept))[:, :, None, None]

    mask_id = torch.zeros(n, height, width, dtype=torch.long, device=device)
    confident = torch.zeros(n, height, width, dtype=torch.bool, device=device)
    instance_scores = torch.zeros(n, height, width, dtype=f32, device=device)
    semantic_scores = torch.zeros(n, height, width, dtype=f32, device=device)
    semantic_mask_id = torch.zeros(n, height, width, dtype=torch.long, device=device)
    if maskwise:
        candidates = [torch.nonzero(confident_slot[i]).flatten() for i in range(n)]
        binaries = [torch.zeros(len(c), height, width, dtype=torch.bool, device=device)
                    for c in candidates]

    for rows in _row_chunks(height, n * num_slots * width):
        resized = tf_resize_bilinear_align_corners(mask_logits, (height, width), rows)
        semantic_mask_id[:, rows] = resized.argmax(dim=1)
        if maskwise:
            probs = tf_softmax(resized, dim=1)
            instance_scores[:, rows] = probs.amax(dim=1)
            for i in range(n):
                slots = order[i, candidates[i]]
                binaries[i][:, rows] = probs[i, slots] > pixel_threshold
        else:
            detected_logits = resized * keep_scale + fill
            confidence = tf_softmax(detected_logits, dim=1).amax(dim=1)
            best = detected_logits.argmax(dim=1)
            same_max = resized.amax(dim=1) == detected_logits.amax(dim=1)
            mask_id[:, rows] = best
            confident[:, rows] = (confidence > pixel_threshold) & same_max
            instance_scores[:, rows] = confidence
            semantic_scores[:, rows] = torch.gather(class_conf, 1, best.flatten(1)).view_as(
                confidence)

    if maskwise:
        threshold = torch.tensor(config.overlapping_threshold, dtype=f32, device=device)
        for i in range(n):
            owner = torch.zeros(height, width, dtype=torch.long, device=device)
            for rank, binary in zip(candidates[i].tolist(), binaries[i]):
                original = binary.sum().to(f32)
                new = binary & (owner == 0)
                keep = new.sum().to(f32) > original * threshold
                owner = torch.where(new & keep, torch.full_like(owner, rank + 1), owner)
            confident[i] = owner > 0
            mask_id[i] = (owner - 1).clamp(min=0)
            semantic_scores[i] = torch.where(owner > 0, class_conf[i][mask_id[i]],
                                             torch.zeros((), dtype=f32, device=device))

    slot_class = torch.gather(class_pred, 1, mask_id.flatten(1)).view_as(mask_id)
    thing = confident & (slot_class < num_things)
    stuff = confident & (slot_class >= num_things)
    semantic = class_ids_t[slot_class]
    mask_id_plus_one = mask_id + 1

    empty = (num_detections == 0)[:, None, None]
    mask_id_plus_one = torch.where(empty, torch.ones_like(mask_id_plus_one), mask_id_plus_one)
    semantic = torch.where(empty, torch.zeros_like(semantic), semantic)
    thing = thing & ~empty
    stuff = stuff & ~empty
    zero = torch.zeros((), dtype=f32, device=device)
    instance_scores = torch.where(empty, zero, instance_scores)
    semantic_scores = torch.where(empty, zero, semantic_scores)

    panoptic = _merge(mask_id_plus_one, semantic, thing.long(), stuff.long(),
                      void_label=void_label, label_divisor=label_divisor,
                      thing_area_limit=config.thing_area_limit,
                      stuff_area_limit=config.stuff_area_limit)
    # Unthresholded pixelwise pass: every slot kept, arg-max slot's class everywhere.
    semantic_pred = class_ids_t[torch.gather(
        (class_probs.argmax(dim=-1)), 1, semantic_mask_id.flatten(1)).view_as(mask_id)]
    return {
        "panoptic_pred": panoptic,
        "instance_pred": mask_id_plus_one.to(torch.int32),
        "semantic_pred": semantic_pred.to(torch.int32),
        "instance_scores": instance_scores,
        "semantic_scores": semantic_scores,
    }
