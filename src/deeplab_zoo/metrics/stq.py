"""Segmentation and Tracking Quality (STQ), as DeepLab2's ``segmentation_and_tracking_quality``.

Weber et al., "STEP: Segmenting and Tracking Every Pixel", NeurIPS 2021 Datasets track.
``STQ = sqrt(AQ * IoU)`` with, as in DeepLab2 (TF and numpy versions, which agree):

* **AQ** (association quality), per sequence: for every ground-truth track (a ``thing``
  panoptic id, excluding instance 0 = *crowd*) ``1/|g| * sum_p TPA(p,g) * IoU(p,g)`` over the
  predicted thing ids ``p`` it intersects, where areas are counted over the whole sequence,
  predictions are restricted to thing classes outside the ground-truth crowd region, and
  ``IoU = TPA / (|p| + |g| - TPA)``. The overall AQ is the sum over sequences divided by the
  total number of tracks; the per-sequence AQ divides by that sequence's tracks.
* **IoU** (segmentation quality): mean IoU of a per-sequence confusion matrix whose
  ground-truth-ignore rows are dropped. When ``ignore_label >= num_classes`` the matrix has an
  extra row / column for it (``ignore_label > num_classes`` is remapped to ``num_classes``),
  so predicting the ignore label on a valid pixel adds a class with IoU 0, exactly as DeepLab2
  does. The mean runs over classes with a non-zero union.

Frames are grouped by ``sequence_id`` (results keep first-seen order). Optional per-pixel
``weights`` scale every count (DeepLab2's panoramic-video weighting). Accumulators are sparse
id histograms built with vectorised ``bincount`` (no per-segment Python loops); counts are
float64.

Keys of :meth:`SegmentationTrackingQuality.compute` are DeepLab2's, lower-cased: ``stq``,
``aq``, ``iou``, ``stq_per_seq``, ``aq_per_seq``, ``iou_per_seq``, ``id_per_seq``,
``length_per_seq``.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._counting import merge_counts, pair_counts
from ._inputs import as_float_map, as_label_map, check_int, check_same_shape, class_set

__all__ = ["SegmentationTrackingQuality"]

_EPSILON = 1e-15
_EMPTY_IDS = np.zeros(0, dtype=np.int64)
_EMPTY_COUNTS = np.zeros(0, dtype=np.float64)


@dataclass
class _SequenceStats:
    """Additive statistics of one sequence."""

    confusion: np.ndarray
    gt_ids: np.ndarray = field(default_factory=lambda: _EMPTY_IDS)
    gt_areas: np.ndarray = field(default_factory=lambda: _EMPTY_COUNTS)
    pred_ids: np.ndarray = field(default_factory=lambda: _EMPTY_IDS)
    pred_areas: np.ndarray = field(default_factory=lambda: _EMPTY_COUNTS)
    pair_keys: np.ndarray = field(default_factory=lambda: _EMPTY_IDS)  # gt * offset + pred
    pair_areas: np.ndarray = field(default_factory=lambda: _EMPTY_COUNTS)
    length: int = 0

    def add(self, other: _SequenceStats) -> None:
        self.confusion = self.confusion + other.confusion
        self.gt_ids, self.gt_areas = merge_counts(self.gt_ids, self.gt_areas, other.gt_ids,
                                                  other.gt_areas)
        self.pred_ids, self.pred_areas = merge_counts(self.pred_ids, self.pred_areas,
                                                      other.pred_ids, other.pred_areas)
        self.pair_keys, self.pair_areas = merge_counts(self.pair_keys, self.pair_areas,
                                                       other.pair_keys, other.pair_areas)
        self.length += other.length


def _sum_by_id(ids: np.ndarray, index: np.ndarray, values: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ids occurring in ``index`` and the sums of ``values`` per id."""
    sums = np.bincount(index, weights=values, minlength=ids.size)
    present = np.bincount(index, minlength=ids.size) > 0
    return ids[present], sums[present]


def _iou_from_confusion(confusion: np.ndarray) -> float:
    intersections = np.diag(confusion)
    unions = confusion.sum(axis=0) + confusion.sum(axis=1) - intersections
    num_classes = np.count_nonzero(unions)
    if num_classes == 0:
        return math.nan  # DeepLab2 divides 0 by 0 here
    ious = intersections / np.maximum(unions, _EPSILON)
    return float(np.sum(ious) / num_classes)


class SegmentationTrackingQuality:
    """Streaming STQ over video frames (DeepLab2 semantics, see the module docstring).

    Args:
        num_classes: number of semantic classes.
        thing_classes: classes with tracked instances.
        ignore_label: semantic label of ignored pixels.
        label_divisor: panoptic encoding ``semantic * label_divisor + instance``.
        offset: pair encoding offset; DeepLab2 requires ``offset >= num_classes *
            label_divisor`` (``ValueError`` otherwise), and predicted ids must stay below it.
    """

    def __init__(self, num_classes: int, thing_classes: Iterable[int], ignore_label: int,
                 label_divisor: int, offset: int = 2**24) -> None:
        self.num_classes = check_int("num_classes", num_classes, 1)
        self.is_thing = class_set("thing_classes", thing_classes, self.num_classes)
        self.thing_classes = np.flatnonzero(self.is_thing)
        self.ignore_label = check_int("ignore_label", ignore_label, 0)
        self.label_divisor = check_int("label_divisor", label_divisor, 1)
        self.offset = check_int("offset", offset, 1)
        lower_bound = self.num_classes * self.label_divisor
        if self.offset < lower_bound:
            raise ValueError(f"offset {self.offset} is too small: it must be at least "
                             f"num_classes * label_divisor = {lower_bound}")
        if self.ignore_label >= self.num_classes:
            self._matrix_size = self.num_classes + 1
            self._include = np.arange(self.num_classes)
        else:
            self._matrix_size = self.num_classes
            self._include = np.array([c for c in range(self.num_classes)
                                      if c != self.ignore_label], dtype=np.int64)
        self.reset()

    # -- state ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Clear all sequences."""
        self._sequences: dict[Hashable, _SequenceStats] = {}

    def _settings(self) -> tuple:
        return (self.num_classes, tuple(self.thing_classes.tolist()), self.ignore_label,
                self.label_divisor, self.offset)

    def merge(self, other: SegmentationTrackingQuality) -> SegmentationTrackingQuality:
        """Add the statistics of ``other`` (same settings); returns self.

        Sequences only in ``other`` are appended; a sequence present in both is summed (the
        same as one accumulator having seen all its frames). DeepLab2's ``merge_state``
        rejects shared sequences instead.
        """
        if type(other) is not type(self):
            raise ValueError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        if other._settings() != self._settings():
            raise ValueError("cannot merge STQ metrics with different settings: "
                             f"{self._settings()} vs {other._settings()}")
        for sequence_id, stats in other._sequences.items():
            self._stats(sequence_id).add(stats)
        return self

    def _stats(self, sequence_id: Hashable) -> _SequenceStats:
        if sequence_id not in self._sequences:
            size = self._matrix_size
            self._sequences[sequence_id] = _SequenceStats(np.zeros((size, size), np.float64))
        return self._sequences[sequence_id]

    # -- update --------------------------------------------------------------------------
    def update(self, gt_panoptic: Any, pred_panoptic: Any, sequence_id: Hashable = 0,
               weights: Any = None) -> None:
        """Accumulate one frame of sequence ``sequence_id`` (HxW panoptic maps).

        ``weights`` (optional, HxW, real) multiplies each pixel's contribution.
        """
        gt = as_label_map("gt_panoptic", gt_panoptic, keep_dtype=True).reshape(-1)
        pred = as_label_map("pred_panoptic", pred_panoptic, keep_dtype=True).reshape(-1)
        check_same_shape("gt_panoptic", gt, "pred_panoptic", pred)
        if weights is not None:
            w = as_float_map("weights", weights).astype(np.float64)
            if w.size != gt.size:
                raise ValueError(f"weights must have one value per pixel ({gt.size}), got "
                                 f"shape {tuple(w.shape)}")
            w = w.reshape(-1)
        else:
            w = None
        pred_max = int(pred.max())
        if pred_max >= self.offset:
            raise ValueError(f"pred_panoptic has id {pred_max} >= offset {self.offset}")
        gt_max = int(gt.max())
        if gt_max > (np.iinfo(np.int64).max - pred_max) // self.offset:
            raise ValueError(f"gt_panoptic id {gt_max} * offset {self.offset} overflows int64")
        if hasattr(sequence_id, "item") and getattr(sequence_id, "ndim", None) == 0:
            sequence_id = sequence_id.item()  # numpy / torch scalars -> Python values
        if not isinstance(sequence_id, Hashable):
            raise ValueError(f"sequence_id must be hashable, got {type(sequence_id).__name__}")

        # One joint histogram of the (gt id, pred id) pairs gives every statistic.
        pairs = pair_counts(gt, pred, w)
        g = pairs.a.ids[pairs.a_index]
        p = pairs.b.ids[pairs.b_index]
        area = pairs.counts.astype(np.float64)
        g_class = g // self.label_divisor
        p_class = p // self.label_divisor
        frame = _SequenceStats(self._confusion(g_class, p_class, area), length=1)

        size = max(int(g_class.max(initial=0)), int(p_class.max(initial=0)), self.num_classes)
        is_thing = np.zeros(size + 1, dtype=bool)
        is_thing[self.thing_classes] = True
        g_thing = is_thing[g_class]
        # Instance 0 of a thing class is "crowd": no track, and predictions there are ignored.
        crowd = g_thing & (g % self.label_divisor == 0)
        g_track = g_thing & ~crowd
        p_track = is_thing[p_class] & ~crowd
        frame.gt_ids, frame.gt_areas = _sum_by_id(pairs.a.ids, pairs.a_index[g_track],
                                                  area[g_track])
        frame.pred_ids, frame.pred_areas = _sum_by_id(pairs.b.ids, pairs.b_index[p_track],
                                                      area[p_track])
        both = g_track & p_track
        frame.pair_keys = g[both] * self.offset + p[both]  # sorted: pairs are (g, p)-ordered
        frame.pair_areas = area[both]
        self._stats(sequence_id).add(frame)

    def _confusion(self, g_class: np.ndarray, p_class: np.ndarray, area: np.ndarray
                   ) -> np.ndarray:
        """Semantic confusion matrix from the pixel counts of (gt class, pred class) pairs."""
        size = self._matrix_size
        if self.ignore_label > self.num_classes:
            g_class = np.where(g_class == self.ignore_label, self.num_classes, g_class)
            p_class = np.where(p_class == self.ignore_label, self.num_classes, p_class)
        for name, cls in (("gt_panoptic", g_class), ("pred_panoptic", p_class)):
            high = int(cls.max(initial=0))
            if high >= size:
                raise ValueError(f"{name} has semantic class {high} outside [0, "
                                 f"{self.num_classes}) that is not the ignore label "
                                 f"{self.ignore_label}")
        counts = np.bincount(g_class * size + p_class, weights=area, minlength=size * size)
        return counts.reshape(size, size)

    # -- results -------------------------------------------------------------------------
    def _association(self, stats: _SequenceStats) -> tuple[float, int]:
        """(sum over tracks of the per-track association score, number of tracks)."""
        num_tubes = int(stats.gt_ids.size)
        if stats.pair_keys.size == 0:
            return 0.0, num_tubes
        gt_of_pair = stats.pair_keys // self.offset
        pred_of_pair = stats.pair_keys % self.offset
        gt_size = stats.gt_areas[np.searchsorted(stats.gt_ids, gt_of_pair)]
        pred_size = stats.pred_areas[np.searchsorted(stats.pred_ids, pred_of_pair)]
        tpa = stats.pair_areas
        with np.errstate(divide="ignore", invalid="ignore"):
            contribution = tpa * (tpa / (pred_size + gt_size - tpa)) / gt_size
        contribution = np.where(tpa > 0, contribution, 0.0)
        return float(contribution.sum()), num_tubes

    def compute(self) -> dict[str, Any]:
        """Results dict (see the module docstring); per-sequence values are lists."""
        aq_sums, tubes, ious, ids, lengths = [], [], [], [], []
        total_confusion = np.zeros((self._matrix_size, self._matrix_size), dtype=np.float64)
        keep_rows = np.zeros((self._matrix_size, 1), dtype=np.float64)
        keep_rows[self._include] = 1.0
        for sequence_id, stats in self._sequences.items():
            aq_sum, num_tubes = self._association(stats)
            aq_sums.append(aq_sum)
            tubes.append(num_tubes)
            confusion = stats.confusion * keep_rows
            total_confusion += confusion
            ious.append(_iou_from_confusion(confusion))
            ids.append(sequence_id)
            lengths.append(stats.length)
        aq_sums_arr = np.asarray(aq_sums, dtype=np.float64)
        tubes_arr = np.asarray(tubes, dtype=np.float64)
        aq = float(aq_sums_arr.sum() / max(tubes_arr.sum(), _EPSILON))
        aq_per_seq = aq_sums_arr / np.maximum(tubes_arr, _EPSILON)
        iou = _iou_from_confusion(total_confusion)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            stq_per_seq = np.sqrt(aq_per_seq * np.asarray(ious, dtype=np.float64))
        return {
            "stq": math.sqrt(aq * iou) if not math.isnan(iou) else math.nan,
            "aq": aq,
            "iou": iou,
            "stq_per_seq": stq_per_seq.tolist(),
            "aq_per_seq": aq_per_seq.tolist(),
            "iou_per_seq": ious,
            "id_per_seq": ids,
            "length_per_seq": lengths,
        }
