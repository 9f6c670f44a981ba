"""Mean IoU from a confusion matrix, as DeepLab2's evaluator computes it.

DeepLab2 uses ``tf.keras.metrics.MeanIoU`` with the ground-truth ignore pixels weighted 0:
per class ``IoU = TP / (gt_count + pred_count - TP)`` over the non-ignored pixels, and the
mean is taken over the classes whose denominator is non-zero (0.0 when there is none, as
Keras' ``divide_no_nan``). Predictions are counted on every non-ignored pixel, so a class
that is only predicted (never in the ground truth) enters the mean with IoU 0.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ._counting import pair_counts
from ._inputs import as_label_map, check_int, check_same_shape

__all__ = ["MeanIoU"]


class MeanIoU:
    """Streaming confusion-matrix mean IoU over HxW semantic maps.

    Args:
        num_classes: number of classes; predictions and non-ignored ground truth must lie in
            ``[0, num_classes)`` (``ValueError`` otherwise, where TF raises an error too).
        ignore_label: ground-truth label excluded from evaluation (may be >= num_classes).
        label_divisor: if given, inputs are panoptic maps and ``id // label_divisor`` is used.

    ``compute()`` returns ``miou``, ``per_class_iou`` (NaN for classes absent from both ground
    truth and prediction), ``pixel_accuracy``, ``mean_class_accuracy`` (over classes present
    in the ground truth), ``num_valid_classes`` and the int64 ``confusion_matrix``
    (rows: ground truth, columns: prediction) as nested lists.
    """

    def __init__(self, num_classes: int, ignore_label: int, *,
                 label_divisor: int | None = None) -> None:
        self.num_classes = check_int("num_classes", num_classes, 1)
        self.ignore_label = check_int("ignore_label", ignore_label, 0)
        self.label_divisor = (None if label_divisor is None
                              else check_int("label_divisor", label_divisor, 1))
        self.reset()

    def reset(self) -> None:
        """Clear the confusion matrix."""
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def merge(self, other: MeanIoU) -> MeanIoU:
        """Add the confusion matrix of ``other`` (same settings); returns self."""
        if not isinstance(other, MeanIoU):
            raise ValueError(f"cannot merge {type(other).__name__} into MeanIoU")
        if (other.num_classes, other.ignore_label) != (self.num_classes, self.ignore_label):
            raise ValueError("cannot merge MeanIoU metrics with different num_classes / "
                             "ignore_label")
        self.confusion += other.confusion
        return self

    def update(self, gt_semantic: Any, pred_semantic: Any) -> None:
        """Accumulate one image: HxW ground-truth and predicted label maps."""
        gt = as_label_map("gt_semantic", gt_semantic, keep_dtype=True)
        pred = as_label_map("pred_semantic", pred_semantic, keep_dtype=True)
        check_same_shape("gt_semantic", gt, "pred_semantic", pred)
        pairs = pair_counts(gt.reshape(-1), pred.reshape(-1))
        gt_class = pairs.a.ids[pairs.a_index]
        pred_class = pairs.b.ids[pairs.b_index]
        if self.label_divisor is not None:
            gt_class = gt_class // self.label_divisor
            pred_class = pred_class // self.label_divisor
        n = self.num_classes
        pred_max = int(pred_class.max())
        if pred_max >= n:
            raise ValueError(f"pred_semantic has class {pred_max}, outside [0, {n})")
        valid = gt_class != self.ignore_label
        if valid.any() and int(gt_class[valid].max()) >= n:
            raise ValueError(f"gt_semantic has class {int(gt_class[valid].max())} outside "
                             f"[0, {n}) that is not the ignore label {self.ignore_label}")
        np.add.at(self.confusion, (gt_class[valid], pred_class[valid]), pairs.counts[valid])

    def compute(self) -> dict[str, Any]:
        """Results dict (see the class docstring)."""
        cm = self.confusion.astype(np.float64)
        tp = np.diag(cm)
        gt_count = cm.sum(axis=1)
        pred_count = cm.sum(axis=0)
        denominator = gt_count + pred_count - tp
        valid = denominator != 0
        iou = np.full(self.num_classes, np.nan)
        np.divide(tp, denominator, out=iou, where=valid)
        num_valid = int(valid.sum())
        miou = float(iou[valid].sum() / num_valid) if num_valid else 0.0
        total = cm.sum()
        present = gt_count != 0
        class_acc = np.full(self.num_classes, np.nan)
        np.divide(tp, gt_count, out=class_acc, where=present)
        return {
            "miou": miou,
            "per_class_iou": iou.tolist(),
            "pixel_accuracy": float(tp.sum() / total) if total else 0.0,
            "mean_class_accuracy": float(class_acc[present].mean()) if present.any() else 0.0,
            "num_valid_classes": num_valid,
            "confusion_matrix": self.confusion.tolist(),
        }
