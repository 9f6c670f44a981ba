"""Panoptic-DeepLab post-processing, bit-exact with DeepLab2's pure-TF merge path.

Reproduces ``deeplab2/model/post_processor/panoptic_deeplab.py`` with
``merge_semantic_and_instance_with_tf_op: false``: semantic argmax of the softmax,
centre thresholding + NMS, the ``keep_k_centers`` filter (including TensorFlow's
``top_k(sorted=False)`` ordering quirk), nearest-centre grouping and the
majority-vote merge. Every function is device-agnostic (CPU or CUDA tensors) and
vectorised; only data-dependent sizes (number of centres, ids) are read back to
the host. Coordinates are (y, x) throughout; offsets are (dy, dx).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "center_heatmap_nms",
    "find_instance_centers",
    "group_pixels",
    "merge_semantic_and_instance",
    "panoptic_deeplab_postprocess",
    "semantic_argmax",
    "tf_top_k_unsorted_last_index",
]

_INT32_MAX = 2**31 - 1
# float32 exp(x) rounds to exactly 1.0 iff x >= -2**-25, so this is the set of classes
# whose softmax probability equals the maximum one (see `semantic_argmax`).
_EXP_ROUNDS_TO_ONE = -(2.0**-25)
# Elements of the largest temporary in `group_pixels` ([pixels, centres] float32): small
# enough to stay in cache on CPU (measured fastest), larger on GPUs to limit launches.
_GROUP_CHUNK_ELEMENTS = 1 << 19
_GROUP_CHUNK_ELEMENTS_GPU = 1 << 24


def _check_int(name: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if not (isinstance(value, torch.Tensor) and value.numel() == 1
                and not value.is_floating_point()):
            raise ValueError(f"{name} must be an int, got {value!r}")
        value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_map(name: str, tensor: Any, ndim: int, layout: str) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.ndim != ndim:
        raise ValueError(f"{name} must be {layout}, got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0 and tensor.ndim >= 2 and 0 in tensor.shape[-2:]:
        raise ValueError(f"{name} has an empty spatial size: shape {tuple(tensor.shape)}")
    return tensor


def _as_float32(name: str, tensor: torch.Tensor) -> torch.Tensor:
    if not tensor.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {tensor.dtype}")
    return tensor.float()


def _thing_ids_tensor(thing_class_ids: Sequence[int] | torch.Tensor,
                      device: torch.device) -> torch.Tensor:
    ids = torch.as_tensor(thing_class_ids, device=device)
    if ids.ndim > 1 or (ids.numel() and ids.is_floating_point()):
        raise ValueError(f"thing_class_ids must be a 1-D sequence of ints, got {thing_class_ids!r}")
    return ids.reshape(-1).long()


def semantic_argmax(semantic_logits: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Class per pixel exactly as DeepLab2's ``argmax(softmax(logits))``, as int32.

    TF's float32 softmax is ``exp(x - max) * (1 / sum)``: a class ties with the maximum
    probability iff ``exp(x - max)`` rounds to 1.0, i.e. ``x - max >= -2**-25``, and
    argmax then returns the FIRST such class. This can differ from ``argmax(logits)``
    when logits differ by less than ~3e-8, and is what this function reproduces.

    Args:
        semantic_logits: float tensor with classes along ``dim`` (e.g. [N, C, H, W]).
        dim: the class dimension.

    Returns:
        int32 tensor with ``dim`` removed (e.g. [N, H, W]).
    """
    logits = _as_float32("semantic_logits", semantic_logits)
    num_classes = logits.shape[dim]
    if num_classes == 0:
        raise ValueError(f"semantic_logits has no classes along dim {dim}: "
                         f"shape {tuple(logits.shape)}")
    maximum = logits.amax(dim=dim)
    pred = torch.full_like(maximum, num_classes - 1, dtype=torch.int32)
    # Walk classes from last to first so the first class at the maximum wins (one cheap
    # pass per class instead of a strided argmax over the class axis).
    for c in range(num_classes - 2, -1, -1):
        pred.masked_fill_((logits.select(dim, c) - maximum) >= _EXP_ROUNDS_TO_ONE, c)
    return pred


def center_heatmap_nms(center_heatmap: torch.Tensor, *, center_threshold: float,
                       nms_kernel: int) -> torch.Tensor:
    """Thresholded, non-maximum-suppressed centre heatmap (DeepLab2's ``instance_center_pred``).

    Values ``<= center_threshold`` become 0; a pixel keeps its value iff it equals the
    ``nms_kernel`` x ``nms_kernel`` max-pool of the thresholded map padded with ZEROS
    (pad ``(k-1)//2`` before, the rest after), otherwise it becomes 0.

    Args:
        center_heatmap: [H, W] float.
        center_threshold: score threshold (compared in float32, strictly greater).
        nms_kernel: max-pool window size (>= 1).

    Returns:
        [H, W] float32.
    """
    heat = _as_float32("center_heatmap", _check_map("center_heatmap", center_heatmap, 2, "[H, W]"))
    kernel = _check_int("nms_kernel", nms_kernel, 1)
    threshold = torch.tensor(float(center_threshold), dtype=torch.float32, device=heat.device)
    zero = heat.new_zeros(())
    heat = torch.where(heat > threshold, heat, zero)
    pad_begin = (kernel - 1) // 2
    pad_end = kernel - 1 - pad_begin
    padded = F.pad(heat[None, None], (pad_begin, pad_end, pad_begin, pad_end), value=0.0)
    # A k x k max-pool is exactly a 1 x k max-pool followed by a k x 1 one (much faster).
    pooled = F.max_pool2d(F.max_pool2d(padded, (1, kernel), 1), (kernel, 1), 1)[0, 0]
    return torch.where(pooled == heat, heat, zero)


# --- TensorFlow's CPU top_k(sorted=False) -----------------------------------------------
# TF's CPU kernel (k > 1) feeds every column index through a bounded heap (gtl::TopN with
# a "greater" comparator: higher value, then lower index, is better) and returns the heap
# array as it stands. Only the LAST returned value matters to DeepLab2 (the cut-off of
# keep_k_centers), and it depends on the exact sequence of heap operations, so the heap
# is replayed here. Behaviour verified against tf.math.top_k of TensorFlow 2.21 (CPU):
# the first k+1 indices are heapified and the worst dropped; afterwards each index that
# beats the current worst is inserted by pop_heap (over k) -> overwrite last -> push_heap.
# Heap primitives follow the classic hole-based std::make_heap/push_heap/pop_heap.

_Item = tuple[float, int]


def _worse(a: _Item, b: _Item) -> bool:
    """Heap order: ``a`` < ``b`` iff ``a`` is the better element (so the worst is on top)."""
    return a[0] > b[0] or (a[0] == b[0] and a[1] < b[1])


def _sift_up(heap: list[_Item], hole: int, top: int, item: _Item,
             less: Callable[[_Item, _Item], bool]) -> None:
    parent = (hole - 1) // 2
    while hole > top and less(heap[parent], item):
        heap[hole] = heap[parent]
        hole = parent
        parent = (hole - 1) // 2
    heap[hole] = item


def _adjust_down(heap: list[_Item], hole: int, length: int, item: _Item,
                 less: Callable[[_Item, _Item], bool]) -> None:
    top = hole
    child = hole
    while child < (length - 1) // 2:
        child = 2 * (child + 1)
        if less(heap[child], heap[child - 1]):
            child -= 1
        heap[hole] = heap[child]
        hole = child
    if length % 2 == 0 and child == (length - 2) // 2:
        child = 2 * (child + 1)
        heap[hole] = heap[child - 1]
        hole = child - 1
    _sift_up(heap, hole, top, item, less)


def _make_heap(heap: list[_Item], less: Callable[[_Item, _Item], bool]) -> None:
    length = len(heap)
    for parent in range((length - 2) // 2, -1, -1):
        _adjust_down(heap, parent, length, heap[parent], less)


def _pop_heap(heap: list[_Item], length: int, less: Callable[[_Item, _Item], bool]) -> None:
    if length > 1:
        last = length - 1
        item = heap[last]
        heap[last] = heap[0]
        _adjust_down(heap, 0, last, item, less)


def _push_heap(heap: list[_Item], length: int, less: Callable[[_Item, _Item], bool]) -> None:
    _sift_up(heap, length - 1, 0, heap[length - 1], less)


def tf_top_k_unsorted_last_index(values: torch.Tensor, k: int) -> int:
    """Flat index of the LAST element of TF's CPU ``tf.math.top_k(values, k, sorted=False)``.

    Args:
        values: 1-D float tensor with ``numel() > k``.
        k: number of elements, ``1 <= k < numel()``.

    Returns:
        An index into ``values``. For ``k == 1`` TF returns the first maximum.
    """
    flat = values.reshape(-1)
    n = flat.numel()
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}] for {n} values, got {k}")
    if k == 1:
        return int(flat.argmax())  # TF's k == 1 path: first index of the maximum
    heap: list[_Item] = list(zip(flat[: k + 1].tolist(), range(k + 1)))
    _make_heap(heap, _worse)
    _pop_heap(heap, k + 1, _worse)
    del heap[k]
    # The worst kept value never decreases, so only later values above the current
    # worst can ever enter the heap: replay just those (NMS maps are mostly zeros).
    tail = flat[k + 1:]
    candidates = torch.nonzero(tail > tail.new_tensor(heap[0][0])).reshape(-1)
    cand_values = tail[candidates].tolist()
    for value, index in zip(cand_values, (candidates + (k + 1)).tolist()):
        if value > heap[0][0]:
            _pop_heap(heap, k, _worse)
            heap[k - 1] = (value, index)
            _push_heap(heap, k, _worse)
    return heap[k - 1][1]


def _centers_from_nms_map(nms_map: torch.Tensor, keep_k_centers: int
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    centers = torch.nonzero(nms_map > 0)
    num = centers.shape[0]
    if 0 < keep_k_centers < num:
        # DeepLab2 keeps centres STRICTLY above top_k(sorted=False)[-1]; with TF's heap
        # order that last value is not necessarily the k-th largest (fewer may remain).
        flat = nms_map.reshape(-1)
        cut = flat[tf_top_k_unsorted_last_index(flat, keep_k_centers)]
        centers = torch.nonzero(nms_map > cut)
    scores = nms_map[centers[:, 0], centers[:, 1]]
    return centers, scores


def find_instance_centers(center_heatmap: torch.Tensor, *, center_threshold: float,
                          nms_kernel: int, keep_k_centers: int
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Instance centres from a centre heatmap, exactly as DeepLab2 picks them.

    Threshold (``> center_threshold``), zero-padded max-pool NMS (see
    `center_heatmap_nms`), then every positive pixel is a centre, in row-major order.
    If more than ``keep_k_centers`` (> 0) survive, only those strictly greater than
    the last value of TF's ``top_k(sorted=False)`` are kept (DeepLab2's quirk: this may
    keep fewer than ``keep_k_centers``, even none).

    Args:
        center_heatmap: [H, W] float.
        center_threshold: score threshold.
        nms_kernel: NMS window size.
        keep_k_centers: maximum number of centres; <= 0 keeps all.

    Returns:
        (centers [K, 2] int64 (y, x) in row-major order, scores [K] float32).
    """
    keep = _check_int("keep_k_centers", keep_k_centers)
    nms_map = center_heatmap_nms(center_heatmap, center_threshold=center_threshold,
                                 nms_kernel=nms_kernel)
    return _centers_from_nms_map(nms_map, keep)


def group_pixels(centers: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Assigns every pixel to the centre nearest to ``pixel + offset``.

    Euclidean distance computed in float32 as DeepLab2 does
    (``sqrt((cy - (y + dy))**2 + (cx - (x + dx))**2)``); ties go to the first centre.
    Works in pixel chunks so memory stays bounded for large images / many centres.

    Args:
        centers: [K, 2] integer (y, x).
        offsets: [2, H, W] float (dy, dx).

    Returns:
        [H, W] int64: index + 1 of the nearest centre (all 0 if K == 0).
    """
    offsets = _as_float32("offsets", _check_map("offsets", offsets, 3, "[2, H, W]"))
    if offsets.shape[0] != 2:
        raise ValueError(f"offsets must be [2, H, W] (dy, dx), got shape {tuple(offsets.shape)}")
    if not isinstance(centers, torch.Tensor) or centers.ndim != 2 or centers.shape[1] != 2:
        shape = tuple(centers.shape) if isinstance(centers, torch.Tensor) else type(centers)
        raise ValueError(f"centers must be a [K, 2] tensor of (y, x), got {shape}")
    height, width = offsets.shape[1:]
    num = centers.shape[0]
    device = offsets.device
    if num == 0:
        return torch.zeros(height, width, dtype=torch.int64, device=device)
    center_yx = centers.to(device=device, dtype=torch.float32)
    cy = center_yx[None, :, 0]
    cx = center_yx[None, :, 1]
    ys = torch.arange(height, device=device, dtype=torch.float32)[:, None].expand(height, width)
    xs = torch.arange(width, device=device, dtype=torch.float32)[None, :].expand(height, width)
    target_y = (ys + offsets[0]).reshape(-1, 1)
    target_x = (xs + offsets[1]).reshape(-1, 1)
    total = height * width
    budget = _GROUP_CHUNK_ELEMENTS if device.type == "cpu" else _GROUP_CHUNK_ELEMENTS_GPU
    chunk = max(1, budget // num)
    nearest = torch.empty(total, dtype=torch.int64, device=device)
    for start in range(0, total, chunk):
        stop = min(total, start + chunk)
        # (p - c)**2 == (c - p)**2 exactly, so this equals DeepLab2's norm(c - p).
        dist = target_y[start:stop] - cy
        dist.mul_(dist)
        dx = target_x[start:stop] - cx
        dx.mul_(dx)
        dist.add_(dx).sqrt_()
        nearest[start:stop] = dist.argmin(dim=1)
    return (nearest + 1).reshape(height, width)


def merge_semantic_and_instance(semantic: torch.Tensor, instance: torch.Tensor, *,
                                thing_class_ids: Sequence[int] | torch.Tensor,
                                label_divisor: int, stuff_area_limit: int,
                                void_label: int) -> torch.Tensor:
    """Panoptic map from semantic classes and class-agnostic instance ids (DeepLab2 pure TF).

    - Start from ``void_label * label_divisor`` everywhere.
    - Each instance id != 0 with at least one thing-class pixel gets the majority
      semantic class of its thing pixels (smallest class on ties), and a per-class
      counter 1, 2, ... assigned in order of the id's first appearance in the row-major
      flattened instance map; its thing pixels become ``class * label_divisor + counter``.
    - Pixels with instance id 0 of a stuff class become ``class * label_divisor`` if the
      class has at least ``stuff_area_limit`` such pixels, else stay void. Thing regions
      have no area limit; thing pixels without an instance stay void.

    Vectorised (unique / bincount / scatter), no loop over pixels or instances.

    Args:
        semantic: [H, W] non-negative integer classes.
        instance: [H, W] integer instance ids (0 = none).
        thing_class_ids: classes that have instances.
        label_divisor: panoptic label divisor (> every per-class instance count).
        stuff_area_limit: minimum stuff area in pixels.
        void_label: semantic label of void.

    Returns:
        [H, W] int32 panoptic ids.
    """
    semantic = _check_map("semantic", semantic, 2, "[H, W]")
    instance = _check_map("instance", instance, 2, "[H, W]")
    if semantic.shape != instance.shape:
        raise ValueError(f"semantic and instance shapes differ: {tuple(semantic.shape)} vs "
                         f"{tuple(instance.shape)}")
    if semantic.is_floating_point() or instance.is_floating_point():
        raise ValueError("semantic and instance must be integer tensors, got "
                         f"{semantic.dtype} and {instance.dtype}")
    divisor = _check_int("label_divisor", label_divisor, 1)
    limit = _check_int("stuff_area_limit", stuff_area_limit)
    void = _check_int("void_label", void_label)
    if not 0 <= void * divisor <= _INT32_MAX:
        raise ValueError(f"void_label * label_divisor = {void * divisor} does not fit int32")
    device = semantic.device
    instance = instance.to(device)
    thing_ids = _thing_ids_tensor(thing_class_ids, device)

    sem = semantic.reshape(-1).long()
    inst = instance.reshape(-1).long()
    total = sem.numel()
    if int(sem.min()) < 0:
        raise ValueError(f"semantic must be non-negative, got minimum {int(sem.min())}")
    num_classes = int(sem.max()) + 1
    is_thing = torch.isin(sem, thing_ids)
    panoptic = torch.full((total,), void * divisor, dtype=torch.int64, device=device)

    # Things: majority class per instance, counters in order of first appearance.
    # Small non-negative ids (always the case for `group_pixels` output) index directly;
    # anything else is compacted with a (sorting) unique first.
    max_id = int(inst.max())
    if int(inst.min()) >= 0 and (max_id + 1) * num_classes <= max(4 * total, 1 << 20):
        num_ids, inverse = max_id + 1, inst
    else:
        ids, inverse = torch.unique(inst, return_inverse=True)
        num_ids = ids.numel()
    valid = (inst != 0) & is_thing
    votes = torch.bincount(inverse[valid] * num_classes + sem[valid],
                           minlength=num_ids * num_classes).reshape(num_ids, num_classes)
    processed = torch.nonzero(votes.sum(dim=1) > 0).reshape(-1)
    if processed.numel():
        first_seen = torch.full((num_ids,), total, dtype=torch.int64, device=device)
        first_seen.scatter_reduce_(0, inverse, torch.arange(total, device=device), "amin")
        order = processed[torch.argsort(first_seen[processed])]
        classes = votes[order].argmax(dim=1)  # first maximum = smallest class on ties
        by_class = torch.argsort(classes, stable=True)
        sorted_classes = classes[by_class]
        position = torch.arange(order.numel(), device=device)
        run_start = torch.ones_like(sorted_classes, dtype=torch.bool)
        run_start[1:] = sorted_classes[1:] != sorted_classes[:-1]
        first_of_run = torch.cummax(torch.where(run_start, position, 0), dim=0).values
        counter = torch.empty_like(position)
        counter[by_class] = position - first_of_run + 1
        max_counter = int(counter.max())
        if max_counter >= divisor:
            raise ValueError(f"label_divisor={divisor} is too small: a class has {max_counter} "
                             "instances, so panoptic ids would collide")
        largest = int(classes.max()) * divisor + max_counter
        if largest > _INT32_MAX:
            raise ValueError(f"panoptic id {largest} overflows int32 (label_divisor={divisor})")
        new_ids = torch.zeros(num_ids, dtype=torch.int64, device=device)
        new_ids[order] = classes * divisor + counter
        panoptic = torch.where(valid, new_ids[inverse], panoptic)

    # Stuff: regions outside instances, kept if large enough.
    no_instance = inst == 0
    area = torch.bincount(sem[no_instance], minlength=num_classes)
    keep_class = area >= limit
    keep_class &= ~torch.isin(torch.arange(num_classes, device=device), thing_ids)
    keep = no_instance & keep_class[sem]
    largest_stuff = int(torch.where(keep, sem, 0).max()) * divisor
    if largest_stuff > _INT32_MAX:
        raise ValueError(f"panoptic id {largest_stuff} overflows int32 (label_divisor={divisor})")
    panoptic = torch.where(keep, sem * divisor, panoptic)
    return panoptic.to(torch.int32).reshape(semantic.shape)


def check_head_outputs(semantic_logits: Any, center_heatmap: Any, offset_map: Any
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validates the three head outputs (shapes, one device); returns them with the
    heatmap and offsets as float32. ValueError names the offending argument."""
    logits = _check_map("semantic_logits", semantic_logits, 4, "[N, C, H, W]")
    heat = _check_map("center_heatmap", center_heatmap, 4, "[N, 1, H, W]")
    offsets = _check_map("offset_map", offset_map, 4, "[N, 2, H, W]")
    batch, num_classes, height, width = logits.shape
    if num_classes == 0:
        raise ValueError(f"semantic_logits has no classes: shape {tuple(logits.shape)}")
    if tuple(heat.shape) != (batch, 1, height, width):
        raise ValueError(f"center_heatmap must be [N, 1, H, W] = {(batch, 1, height, width)} "
                         f"to match semantic_logits, got {tuple(heat.shape)}")
    if tuple(offsets.shape) != (batch, 2, height, width):
        raise ValueError(f"offset_map must be [N, 2, H, W] = {(batch, 2, height, width)} "
                         f"to match semantic_logits, got {tuple(offsets.shape)}")
    device = logits.device
    if heat.device != device or offsets.device != device:
        raise ValueError(f"inputs must be on one device, got semantic_logits on {device}, "
                         f"center_heatmap on {heat.device}, offset_map on {offsets.device}")
    return logits, _as_float32("center_heatmap", heat), _as_float32("offset_map", offsets)


def panoptic_deeplab_postprocess(semantic_logits: torch.Tensor, center_heatmap: torch.Tensor,
                                 offset_map: torch.Tensor, *,
                                 thing_class_ids: Sequence[int] | torch.Tensor,
                                 label_divisor: int, stuff_area_limit: int,
                                 center_threshold: float, nms_kernel: int,
                                 keep_k_centers: int, void_label: int
                                 ) -> dict[str, Any]:
    """DeepLab2's Panoptic-DeepLab ``PostProcessor`` (pure-TF merge), batched.

    Computation is float32 (inputs of other float dtypes are cast) and per image.

    Args:
        semantic_logits: [N, C, H, W] float.
        center_heatmap: [N, 1, H, W] float (raw head output, no sigmoid).
        offset_map: [N, 2, H, W] float, (dy, dx) in pixels.
        thing_class_ids: classes that have instances.
        label_divisor: panoptic label divisor.
        stuff_area_limit: minimum area of a stuff region (smaller -> void).
        center_threshold: centre score threshold.
        nms_kernel: centre NMS window size.
        keep_k_centers: maximum number of centres (<= 0: all).
        void_label: semantic label of void.

    Returns:
        dict with ``panoptic_pred``, ``semantic_pred``, ``instance_pred`` ([N, H, W] int32),
        ``instance_center_pred`` (the thresholded + NMS heatmap) and ``instance_scores``
        (score of the pixel's centre on thing pixels, 0 elsewhere) ([N, H, W] float32),
        plus ``center_points`` / ``center_scores``: per-image lists of the [K, 2] int64
        (y, x) centres (instance id k + 1 is centre k) and their [K] float32 scores.
    """
    logits, heat, offsets = check_head_outputs(semantic_logits, center_heatmap, offset_map)
    batch, num_classes, height, width = logits.shape
    device = logits.device
    kernel = _check_int("nms_kernel", nms_kernel, 1)
    keep_k = _check_int("keep_k_centers", keep_k_centers)
    _check_int("label_divisor", label_divisor, 1)
    _check_int("stuff_area_limit", stuff_area_limit)
    _check_int("void_label", void_label)
    threshold = float(center_threshold)
    if math.isnan(threshold):
        raise ValueError("center_threshold must not be NaN")
    thing_ids = _thing_ids_tensor(thing_class_ids, device)

    semantic = semantic_argmax(logits, dim=1)
    panoptic, instances, center_maps, score_maps = [], [], [], []
    center_points, center_scores = [], []
    for i in range(batch):
        nms_map = center_heatmap_nms(heat[i, 0], center_threshold=threshold, nms_kernel=kernel)
        centers, scores = _centers_from_nms_map(nms_map, keep_k)
        is_thing = torch.isin(semantic[i], thing_ids)
        if centers.shape[0] == 0:
            instance = torch.zeros(height, width, dtype=torch.int32, device=device)
            score_map = torch.zeros(height, width, dtype=torch.float32, device=device)
        else:
            nearest = group_pixels(centers, offsets[i])
            instance = torch.where(is_thing, nearest, 0).to(torch.int32)
            score_map = scores[nearest - 1] * is_thing.to(torch.float32)
        panoptic.append(merge_semantic_and_instance(
            semantic[i], instance, thing_class_ids=thing_ids, label_divisor=label_divisor,
            stuff_area_limit=stuff_area_limit, void_label=void_label))
        instances.append(instance)
        center_maps.append(nms_map)
        score_maps.append(score_map)
        center_points.append(centers)
        center_scores.append(scores)

    def stack(maps: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        if not maps:
            return torch.zeros(0, height, width, dtype=dtype, device=device)
        return torch.stack(maps)

    return {
        "panoptic_pred": stack(panoptic, torch.int32),
        "semantic_pred": semantic,
        "instance_pred": stack(instances, torch.int32),
        "instance_center_pred": stack(center_maps, torch.float32),
        "instance_scores": stack(score_maps, torch.float32),
        "center_points": center_points,
        "center_scores": center_scores,
    }
