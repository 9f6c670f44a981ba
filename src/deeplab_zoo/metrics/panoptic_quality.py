"""Panoptic Quality (PQ), as DeepLab2's ``evaluation/panoptic_quality.py`` defines it.

Kirillov et al., "Panoptic Segmentation", CVPR 2019. Semantics follow DeepLab2 exactly:

* labels are ``semantic * label_divisor + instance``; a ground-truth and a predicted segment
  of the same (non-ignored) class match when their IoU is > 0.5, where the union leaves out
  the part of the predicted segment lying on ground-truth *void* (the segment
  ``ignore_label * label_divisor``, i.e. instance 0 of the ignore class);
* unmatched ground-truth segments of non-ignored classes are false negatives;
* unmatched predicted segments of non-ignored classes are false positives unless more than
  half of their area lies on ground-truth void;
* per class ``SQ = iou_sum / TP``, ``RQ = TP / (TP + FN/2 + FP/2)`` (0 where the
  denominator is 0), ``PQ = SQ * RQ``; the reported values are means over the classes with
  ``TP + FN + FP > 0`` (NaN when there is none, as ``tf.reduce_mean`` of an empty set).

DeepLab2 reports ``[PQ, SQ, RQ, mean TP, mean FN, mean FP]``; :meth:`PanopticQuality.compute`
returns those under ``pq``, ``sq``, ``rq``, ``tp``, ``fn``, ``fp`` plus the things / stuff
split (when ``thing_classes`` is given) and the per-class accumulators. Statistics are
accumulated in float64 (DeepLab2 uses float32 variables, so its sums over many images can
differ in the last digits). Ids whose class is neither in ``[0, num_classes)`` nor the ignore
label raise ``ValueError`` (DeepLab2 fails with an index error, or skips such a prediction when
it lies mostly on void).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from ._counting import pair_counts
from ._inputs import as_label_map, check_int, check_same_shape, check_semantic_range, class_set

__all__ = ["PanopticQuality", "panoptic_segment_stats"]

_INT64_MAX = np.iinfo(np.int64).max


def panoptic_segment_stats(gt: np.ndarray, pred: np.ndarray, *, num_classes: int,
                           ignore_label: int, label_divisor: int
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class ``(iou_sum, tp, fn, fp)`` (float64 [num_classes]) of one pair of maps.

    ``gt`` / ``pred`` are validated flat non-negative integer panoptic maps (see
    :class:`PanopticQuality`). Fully vectorised: one joint histogram of the two maps, then
    array operations on the (ground-truth segment, predicted segment) pairs.
    """
    pairs = pair_counts(gt, pred)
    gt_ids, gt_area = pairs.a.ids, pairs.a.counts
    pred_ids, pred_area = pairs.b.ids, pairs.b.counts
    gt_class = gt_ids // label_divisor
    pred_class = pred_ids // label_divisor
    check_semantic_range("gt_panoptic", gt_class, num_classes, ignore_label)
    check_semantic_range("pred_panoptic", pred_class, num_classes, ignore_label)
    gi, pi, inter = pairs.a_index, pairs.b_index, pairs.counts

    # Area of each predicted segment lying on ground-truth void (instance 0 of the ignore class).
    void_overlap = np.zeros(pred_ids.size, dtype=np.int64)
    on_void = gt_ids[gi] == ignore_label * label_divisor
    void_overlap[pi[on_void]] = inter[on_void]

    pair_class = gt_class[gi]
    candidate = (pair_class == pred_class[pi]) & (pair_class != ignore_label)
    gi, pi, inter = gi[candidate], pi[candidate], inter[candidate]
    pair_class = pair_class[candidate]
    union = gt_area[gi] + pred_area[pi] - inter - void_overlap[pi]
    iou = inter / union
    match = iou > 0.5
    tp = np.bincount(pair_class[match], minlength=num_classes).astype(np.float64)
    iou_sum = np.bincount(pair_class[match], weights=iou[match], minlength=num_classes)

    gt_matched = np.zeros(gt_ids.size, dtype=bool)
    gt_matched[gi[match]] = True
    pred_matched = np.zeros(pred_ids.size, dtype=bool)
    pred_matched[pi[match]] = True

    missed = ~gt_matched & (gt_class != ignore_label)
    fn = np.bincount(gt_class[missed], minlength=num_classes).astype(np.float64)
    # A false positive is not penalised when it mostly lies on ground-truth void.
    spurious = (~pred_matched & (pred_class != ignore_label)
                & ~(void_overlap / pred_area > 0.5))
    fp = np.bincount(pred_class[spurious], minlength=num_classes).astype(np.float64)
    return iou_sum[:num_classes], tp[:num_classes], fn[:num_classes], fp[:num_classes]


def _divide_no_nan(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _mean(values: np.ndarray, mask: np.ndarray) -> float:
    return float(values[mask].mean()) if mask.any() else math.nan


class PanopticQuality:
    """Streaming Panoptic Quality over HxW panoptic maps (DeepLab2 semantics).

    Args:
        num_classes: number of semantic classes.
        ignore_label: semantic class of void / ignored pixels (may be >= ``num_classes``).
        label_divisor: panoptic encoding ``semantic * label_divisor + instance`` (DeepLab2's
            ``max_instances_per_category``).
        offset: DeepLab2's pair-encoding offset (``gt * offset + pred``): every predicted id
            must be below it, or DeepLab2's pair ids would collide; this is checked and a
            ``ValueError`` raised instead.
        thing_classes: classes with instances, for the ``*_things`` / ``*_stuff`` means
            (NaN when not given).
        max_instances_per_category: DeepLab2's name for ``label_divisor``; give either.

    ``update(gt_panoptic, pred_panoptic)`` takes HxW non-negative integer maps (numpy arrays or
    torch tensors); ``merge(other)`` adds another accumulator's statistics (e.g. from other
    ranks); ``compute()`` returns the results dict; ``reset()`` clears the statistics.
    """

    def __init__(self, num_classes: int, ignore_label: int, label_divisor: int | None = None,
                 offset: int = 2**24, *, thing_classes: Iterable[int] | None = None,
                 max_instances_per_category: int | None = None) -> None:
        self.num_classes = check_int("num_classes", num_classes, 1)
        self.ignore_label = check_int("ignore_label", ignore_label, 0)
        if label_divisor is None and max_instances_per_category is None:
            raise ValueError("label_divisor (max_instances_per_category) is required")
        if label_divisor is not None and max_instances_per_category is not None:
            if int(label_divisor) != int(max_instances_per_category):
                raise ValueError("label_divisor and max_instances_per_category are the same "
                                 f"setting; got {label_divisor} and {max_instances_per_category}")
        divisor = label_divisor if label_divisor is not None else max_instances_per_category
        self.label_divisor = check_int("label_divisor", divisor, 1)
        self.offset = check_int("offset", offset, 1)
        self.has_thing_classes = thing_classes is not None
        self.is_thing = class_set("thing_classes", thing_classes, self.num_classes)
        self.reset()

    # -- state ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Clear the accumulated statistics."""
        self.iou_sum = np.zeros(self.num_classes, dtype=np.float64)
        self.tp = np.zeros(self.num_classes, dtype=np.float64)
        self.fn = np.zeros(self.num_classes, dtype=np.float64)
        self.fp = np.zeros(self.num_classes, dtype=np.float64)

    def _check_compatible(self, other: PanopticQuality) -> None:
        if type(other) is not type(self):
            raise ValueError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        mine = (self.num_classes, self.ignore_label, self.label_divisor)
        theirs = (other.num_classes, other.ignore_label, other.label_divisor)
        if mine != theirs:
            raise ValueError("cannot merge metrics with different (num_classes, ignore_label, "
                             f"label_divisor): {mine} vs {theirs}")

    def merge(self, other: PanopticQuality) -> PanopticQuality:
        """Add the statistics of ``other`` (same settings) to this accumulator; returns self."""
        self._check_compatible(other)
        self.iou_sum += other.iou_sum
        self.tp += other.tp
        self.fn += other.fn
        self.fp += other.fp
        return self

    # -- update --------------------------------------------------------------------------
    def _prepare(self, gt_panoptic: Any, pred_panoptic: Any) -> tuple[np.ndarray, np.ndarray]:
        gt = as_label_map("gt_panoptic", gt_panoptic, keep_dtype=True)
        pred = as_label_map("pred_panoptic", pred_panoptic, keep_dtype=True)
        check_same_shape("gt_panoptic", gt, "pred_panoptic", pred)
        return gt, pred

    def _accumulate(self, gt: np.ndarray, pred: np.ndarray) -> None:
        pred_max = int(pred.max())
        if pred_max >= self.offset:
            raise ValueError(f"pred_panoptic has id {pred_max} >= offset {self.offset}; "
                             "raise offset above the largest panoptic id")
        gt_max = int(gt.max())
        if gt_max > (_INT64_MAX - pred_max) // self.offset:
            raise ValueError(f"gt_panoptic id {gt_max} * offset {self.offset} overflows int64")
        iou_sum, tp, fn, fp = panoptic_segment_stats(
            gt.reshape(-1), pred.reshape(-1), num_classes=self.num_classes,
            ignore_label=self.ignore_label, label_divisor=self.label_divisor)
        self.iou_sum += iou_sum
        self.tp += tp
        self.fn += fn
        self.fp += fp

    def update(self, gt_panoptic: Any, pred_panoptic: Any) -> None:
        """Accumulate one image: HxW ground-truth and predicted panoptic maps."""
        gt, pred = self._prepare(gt_panoptic, pred_panoptic)
        self._accumulate(gt, pred)

    # -- results -------------------------------------------------------------------------
    def compute(self) -> dict[str, Any]:
        """Results as a dict of floats (see the module docstring); ``per_class`` holds lists."""
        sq = _divide_no_nan(self.iou_sum, self.tp)
        rq = _divide_no_nan(self.tp, self.tp + 0.5 * self.fn + 0.5 * self.fp)
        pq = sq * rq
        valid = (self.tp + self.fn + self.fp) != 0
        results: dict[str, Any] = {
            "pq": _mean(pq, valid), "sq": _mean(sq, valid), "rq": _mean(rq, valid),
            "tp": _mean(self.tp, valid), "fn": _mean(self.fn, valid),
            "fp": _mean(self.fp, valid), "num_valid_classes": int(valid.sum()),
        }
        for part, mask in (("things", self.is_thing), ("stuff", ~self.is_thing)):
            subset = valid & mask if self.has_thing_classes else np.zeros_like(valid)
            results[f"pq_{part}"] = _mean(pq, subset)
            results[f"sq_{part}"] = _mean(sq, subset)
            results[f"rq_{part}"] = _mean(rq, subset)
            results[f"num_valid_{part}"] = int(subset.sum())
        results["per_class"] = {
            "pq": pq.tolist(), "sq": sq.tolist(), "rq": rq.tolist(),
            "tp": self.tp.tolist(), "fn": self.fn.tolist(), "fp": self.fp.tolist(),
            "iou_sum": self.iou_sum.tolist(), "valid": valid.tolist(),
        }
        return results
