"""COCO mask AP of panoptic predictions, as DeepLab2's ``evaluation/coco_instance_ap.py``.

Evaluation is delegated to ``pycocotools`` (``COCOeval`` with ``iouType='segm'``), fed the
way DeepLab2 feeds it:

* :class:`CocoMaskAP` (DeepLab2's ``InstanceAveragePrecision``) takes per-image instance
  masks, classes, crowd flags and detection scores. Images get ids 1, 2, ... and
  ground-truth annotations consecutive ids from 1 in update order; the category list is
  every class seen in ground truth or detections; the ground-truth ``area`` is the mask
  area. Without any detection the result is all zeros (DeepLab2's placeholder).
* :class:`CocoInstanceAP` (DeepLab2's ``PanopticInstanceAveragePrecision``) derives those
  from panoptic maps: ground-truth instances are the panoptic ids whose class is a thing
  class (stuff and the ignore label are dropped; a thing id with instance 0 counts as an
  instance, as in DeepLab2), in row-major first-appearance order; a crowd flag per instance
  comes from an optional ``is_crowd`` map. Detections are the predicted panoptic ids of
  thing classes, scored with DeepLab2's convention: the mean over the instance's pixels of
  the semantic probability of its class, times the mean of the ``instance_score_map``.

The 12 results follow ``COCOeval.stats`` order: ``ap``, ``ap50``, ``ap75``, ``ap_small``,
``ap_medium``, ``ap_large``, ``ar1``, ``ar10``, ``ar100``, ``ar_small``, ``ar_medium``,
``ar_large`` (-1 where COCO has no ground truth for the entry); ``stats`` has them as a list.
``semantic_probability`` is channels-first ``[num_classes, H, W]`` (the layout of
``softmax(logits)[i]``; DeepLab2 uses ``[H, W, C]``) or an ``[H, W]`` confidence map (MaX-
DeepLab). Scores are averaged in float64 and rounded to float32 (DeepLab2 averages in float32;
only the ranking of near-equal scores can differ).
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._counting import runs
from ._inputs import (
    as_float_map,
    as_label_map,
    check_int,
    check_same_shape,
    check_semantic_range,
    class_set,
)

__all__ = ["COCO_STAT_NAMES", "CocoInstanceAP", "CocoMaskAP"]

COCO_STAT_NAMES = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar1", "ar10",
                   "ar100", "ar_small", "ar_medium", "ar_large")


def _mask_api() -> Any:
    try:
        from pycocotools import mask as mask_api
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("COCO instance AP needs pycocotools: pip install pycocotools "
                          "(or deeplab-zoo[eval])") from err
    return mask_api


@dataclass
class _ImageRecord:
    height: int
    width: int
    gt: list[tuple[dict, int, int]] = field(default_factory=list)  # (rle, class, is_crowd)
    dets: list[tuple[dict, int, float]] = field(default_factory=list)  # (rle, class, score)


def _encode(mask_api: Any, mask: np.ndarray) -> dict:
    return mask_api.encode(np.asfortranarray(mask.astype(np.uint8, copy=False)))


class CocoMaskAP:
    """COCO mask AP over per-image instance masks (DeepLab2's ``InstanceAveragePrecision``)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget all images."""
        self._images: list[_ImageRecord] = []

    def merge(self, other: CocoMaskAP) -> CocoMaskAP:
        """Append the images of ``other`` (renumbered after this one's); returns self."""
        if not isinstance(other, CocoMaskAP):
            raise ValueError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        self._images.extend(other._images)
        return self

    @property
    def num_images(self) -> int:
        """Number of images accumulated."""
        return len(self._images)

    def update(self, gt_masks: Any, gt_classes: Any, det_masks: Any, det_scores: Any,
               det_classes: Any, gt_is_crowd: Any = None) -> None:
        """Add one image.

        Args:
            gt_masks: [N, H, W] binary ground-truth masks (H, W > 0; N may be 0).
            gt_classes: [N] integer classes.
            det_masks: [M, H, W] binary detection masks.
            det_scores: [M] float scores.
            det_classes: [M] integer classes.
            gt_is_crowd: optional [N] booleans (COCO ``iscrowd``).
        """
        gt_m = _binary_masks("gt_masks", gt_masks)
        det_m = _binary_masks("det_masks", det_masks)
        if gt_m.shape[1:] != det_m.shape[1:]:
            raise ValueError(f"gt_masks and det_masks must share H, W, got {gt_m.shape[1:]} "
                             f"and {det_m.shape[1:]}")
        gt_c = _vector("gt_classes", gt_classes, gt_m.shape[0], integer=True)
        det_c = _vector("det_classes", det_classes, det_m.shape[0], integer=True)
        scores = _vector("det_scores", det_scores, det_m.shape[0], integer=False)
        if gt_is_crowd is None:
            crowd = np.zeros(gt_m.shape[0], dtype=bool)
        else:
            crowd = _vector("gt_is_crowd", gt_is_crowd, gt_m.shape[0], integer=None) != 0
        mask_api = _mask_api()
        record = _ImageRecord(int(gt_m.shape[1]), int(gt_m.shape[2]))
        record.gt = [(_encode(mask_api, m), int(c), int(k))
                     for m, c, k in zip(gt_m, gt_c.tolist(), crowd.tolist())]
        record.dets = [(_encode(mask_api, m), int(c), float(s))
                       for m, c, s in zip(det_m, det_c.tolist(), scores.tolist())]
        self._images.append(record)

    def _add_record(self, record: _ImageRecord) -> None:
        self._images.append(record)

    def compute(self) -> dict[str, Any]:
        """Run COCOeval; returns the 12 named stats and ``stats`` (list)."""
        stats = self._evaluate()
        results: dict[str, Any] = dict(zip(COCO_STAT_NAMES, stats.tolist()))
        results["stats"] = stats.tolist()
        results["num_images"] = self.num_images
        return results

    def _evaluate(self) -> np.ndarray:
        if not any(record.dets for record in self._images):
            return np.zeros(len(COCO_STAT_NAMES), dtype=np.float64)
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
        mask_api = _mask_api()

        images, annotations, detections, categories = [], [], [], set()
        next_id = 1
        for image_id, record in enumerate(self._images, start=1):
            images.append({"id": image_id, "height": record.height, "width": record.width})
            for rle, cls, crowd in record.gt:
                annotations.append({
                    "id": next_id, "image_id": image_id, "category_id": cls,
                    "bbox": mask_api.toBbox(rle).tolist(), "segmentation": rle,
                    "area": float(mask_api.area(rle)), "iscrowd": crowd,
                })
                next_id += 1
                categories.add(cls)
            for rle, cls, score in record.dets:
                detections.append({"image_id": image_id, "category_id": cls,
                                   "segmentation": rle, "score": score})
                categories.add(cls)
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = COCO()
            coco_gt.dataset = {"images": images, "annotations": annotations,
                               "categories": [{"id": c} for c in sorted(categories)]}
            coco_gt.createIndex()
            coco_dt = coco_gt.loadRes(detections)
            evaluator = COCOeval(coco_gt, coco_dt, iouType="segm")
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        return np.asarray(evaluator.stats, dtype=np.float64)


class CocoInstanceAP(CocoMaskAP):
    """COCO mask AP of panoptic predictions (DeepLab2's ``PanopticInstanceAveragePrecision``).

    Args:
        num_classes: number of semantic classes.
        thing_classes: classes with instances; all others (and the ignore label) are skipped.
        label_divisor: panoptic encoding ``semantic * label_divisor + instance``.
        ignore_label: semantic label of void.
    """

    def __init__(self, num_classes: int, thing_classes: Iterable[int], label_divisor: int,
                 ignore_label: int) -> None:
        self.num_classes = check_int("num_classes", num_classes, 1)
        self.is_thing = class_set("thing_classes", thing_classes, self.num_classes)
        self.label_divisor = check_int("label_divisor", label_divisor, 1)
        self.ignore_label = check_int("ignore_label", ignore_label, 0)
        super().__init__()

    def update(self, gt_panoptic: Any, pred_panoptic: Any,  # type: ignore[override]
               semantic_probability: Any, instance_score_map: Any,
               is_crowd_map: Any = None) -> None:
        """Add one image.

        Args:
            gt_panoptic: [H, W] ground-truth panoptic map.
            pred_panoptic: [H, W] predicted panoptic map.
            semantic_probability: [num_classes, H, W] class probabilities, or an [H, W]
                confidence map.
            instance_score_map: [H, W] per-pixel instance score (e.g. the centre score).
            is_crowd_map: optional [H, W] boolean map, True on crowd instances.
        """
        gt = as_label_map("gt_panoptic", gt_panoptic)
        pred = as_label_map("pred_panoptic", pred_panoptic)
        check_same_shape("gt_panoptic", gt, "pred_panoptic", pred)
        height, width = gt.shape
        probs = as_float_map("semantic_probability", semantic_probability)
        if probs.shape != (height, width) and (probs.ndim != 3 or probs.shape[1:] != gt.shape):
            raise ValueError("semantic_probability must be [num_classes, H, W] or [H, W] with "
                             f"H, W = {gt.shape}, got shape {tuple(probs.shape)}")
        scores_map = as_float_map("instance_score_map", instance_score_map, ndim=2)
        check_same_shape("gt_panoptic", gt, "instance_score_map", scores_map)
        crowd_map = None
        if is_crowd_map is not None:
            crowd_map = np.asarray(_to_bool_map(is_crowd_map))
            check_same_shape("gt_panoptic", gt, "is_crowd_map", crowd_map)

        mask_api = _mask_api()
        record = _ImageRecord(height, width)
        div = self.label_divisor

        # Ground truth: thing-class ids in row-major first-appearance order (as tf.unique).
        gt_runs = _RowRuns(gt.reshape(-1))
        gt_class = gt_runs.ids // div
        check_semantic_range("gt_panoptic", gt_class, self.num_classes, self.ignore_label)
        gt_crowd = np.zeros(gt_runs.ids.size, dtype=bool)
        if crowd_map is not None:
            gt_crowd = gt_runs.sum_per_id(crowd_map.reshape(-1).astype(np.float64)) > 0
        gt_keep = gt_runs.first_appearance_order(self._is_thing_class(gt_class))

        # Detections: thing-class ids, scored with DeepLab2's combined instance score.
        pred_flat = pred.reshape(-1)
        pred_runs = _RowRuns(pred_flat)
        pred_class = pred_runs.ids // div
        check_semantic_range("pred_panoptic", pred_class, self.num_classes, self.ignore_label)
        if probs.ndim == 3:
            run_class = pred_runs.run_values // div
            run_class = np.where(run_class == self.ignore_label, 0, run_class)
            if probs.shape[0] <= int(run_class.max()):
                raise ValueError(f"semantic_probability has {probs.shape[0]} channels but "
                                 f"pred_panoptic has class {int(run_class.max())}")
            # Probability of each pixel's own (predicted) class.
            index = np.repeat(run_class * pred_flat.size, pred_runs.lengths)
            index += np.arange(pred_flat.size)
            pixel_prob = np.take(probs.reshape(-1), index).astype(np.float64)
        else:
            pixel_prob = probs.reshape(-1).astype(np.float64)
        semantic_score = pred_runs.sum_per_id(pixel_prob) / pred_runs.area
        instance_score = (pred_runs.sum_per_id(scores_map.reshape(-1).astype(np.float64))
                          / pred_runs.area)
        combined = semantic_score.astype(np.float32) * instance_score.astype(np.float32)
        pred_keep = pred_runs.first_appearance_order(self._is_thing_class(pred_class))

        gt_rles = _column_major_rles(mask_api, gt, gt_runs.ids[gt_keep])
        record.gt = [(rle, int(gt_class[k]), int(gt_crowd[k]))
                     for rle, k in zip(gt_rles, gt_keep.tolist())]
        pred_rles = _column_major_rles(mask_api, pred, pred_runs.ids[pred_keep])
        record.dets = [(rle, int(pred_class[k]), float(combined[k]))
                       for rle, k in zip(pred_rles, pred_keep.tolist())]
        self._add_record(record)

    def _is_thing_class(self, classes: np.ndarray) -> np.ndarray:
        inside = (classes < self.num_classes) & (classes != self.ignore_label)
        return inside & self.is_thing[np.where(inside, classes, 0)]

    def merge(self, other: CocoMaskAP) -> CocoInstanceAP:
        """Append the images of ``other`` (same settings); returns self."""
        if not isinstance(other, CocoInstanceAP):
            raise ValueError(f"cannot merge {type(other).__name__} into CocoInstanceAP")
        mine = (self.num_classes, self.label_divisor, self.ignore_label, self.is_thing.tolist())
        theirs = (other.num_classes, other.label_divisor, other.ignore_label,
                  other.is_thing.tolist())
        if mine != theirs:
            raise ValueError("cannot merge CocoInstanceAP metrics with different settings")
        super().merge(other)
        return self


class _RowRuns:
    """Row-major runs of a flat label map: per-id areas, sums and first appearance."""

    def __init__(self, flat: np.ndarray) -> None:
        self.size = flat.size
        self.starts, self.run_values = runs(flat)
        self.lengths = np.diff(np.append(self.starts, flat.size))
        self.ids, first_run, self.run_index = np.unique(
            self.run_values, return_index=True, return_inverse=True)
        self.run_index = self.run_index.reshape(-1)
        self.first_run = first_run
        self.area = np.bincount(self.run_index, weights=self.lengths, minlength=self.ids.size)

    def sum_per_id(self, pixel_values: np.ndarray) -> np.ndarray:
        """Sum of ``pixel_values`` (flat, float64) over each id's pixels."""
        per_run = np.add.reduceat(pixel_values, self.starts)
        return np.bincount(self.run_index, weights=per_run, minlength=self.ids.size)

    def first_appearance_order(self, keep: np.ndarray) -> np.ndarray:
        """Indices into ``ids`` of the kept ids, ordered by first row-major appearance."""
        kept = np.flatnonzero(keep)
        return kept[np.argsort(self.first_run[kept], kind="stable")]


def _column_major_rles(mask_api: Any, label_map: np.ndarray, ids: np.ndarray) -> list[dict]:
    """COCO RLEs of ``label_map == id`` for each id, from the runs of the column-major scan
    (identical to ``mask.encode`` of each binary mask, without materialising the masks)."""
    if ids.size == 0:
        return []
    height, width = label_map.shape
    flat = label_map.T.reshape(-1)
    starts, values = runs(flat)
    ends = np.append(starts[1:], flat.size)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    lo = np.searchsorted(sorted_values, ids, side="left")
    hi = np.searchsorted(sorted_values, ids, side="right")
    objects = []
    for a, b in zip(lo.tolist(), hi.tolist()):
        selected = order[a:b]
        bounds = np.empty(2 * selected.size + 2, dtype=np.int64)
        bounds[0], bounds[-1] = 0, flat.size
        bounds[1:-1:2] = starts[selected]
        bounds[2:-1:2] = ends[selected]
        counts = np.diff(bounds)
        if counts.size > 1 and counts[-1] == 0:
            counts = counts[:-1]
        objects.append({"counts": counts.tolist(), "size": [height, width]})
    return mask_api.frPyObjects(objects, height, width)


def _to_bool_map(value: Any) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.ndim != 2:
        raise ValueError(f"is_crowd_map must be [H, W], got shape {tuple(array.shape)}")
    if not (array.dtype == np.bool_ or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"is_crowd_map must be boolean, got dtype {array.dtype}")
    return array != 0


def _binary_masks(name: str, value: Any) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.ndim != 3 or array.shape[1] == 0 or array.shape[2] == 0:
        raise ValueError(f"{name} must be [N, H, W] with H, W > 0, got shape "
                         f"{tuple(array.shape)}")
    if array.size and not (array.dtype == np.bool_ or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must be binary (bool or integer 0/1), got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() > 1):
        raise ValueError(f"{name} must only hold 0 and 1")
    return array.astype(np.uint8, copy=False)


def _vector(name: str, value: Any, length: int, integer: bool | None) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    array = np.asarray(value).reshape(-1) if np.ndim(value) <= 1 else np.asarray(value)
    if array.ndim != 1 or array.shape[0] != length:
        raise ValueError(f"{name} must be a vector of length {length}, got shape "
                         f"{tuple(np.shape(value))}")
    if integer is True and length and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    if integer is False and length and not (np.issubdtype(array.dtype, np.floating)
                                            or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must hold numbers, got dtype {array.dtype}")
    return array
