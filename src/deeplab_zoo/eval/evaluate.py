"""Runs a model over a dataset and accumulates DeepLab2's metrics (PQ, mIoU)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.datasets import DatasetInfo
from ..metrics import MeanIoU, PanopticQuality


def _check_compatible(model: nn.Module, info: DatasetInfo) -> None:
    ours = model.dataset
    if ours.num_classes != info.num_classes or ours.label_divisor != info.label_divisor:
        raise ValueError(
            f"model {getattr(model, 'pretrained_name', type(model).__name__)!r} predicts "
            f"{ours.num_classes} classes of {ours.name!r} (label divisor {ours.label_divisor}) "
            f"but the dataset is {info.name!r} with {info.num_classes} classes (divisor "
            f"{info.label_divisor}); pick a model tag for this dataset")


def evaluate(model: nn.Module, dataset: Any, *, info: DatasetInfo | None = None,
             scales: Sequence[float] = (1.0,), flip: bool = False, limit: int | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Predicts every sample of ``dataset`` and returns the metrics as a dict.

    ``dataset`` yields :class:`~deeplab_zoo.data.sample.Sample` dicts (``image`` uint8
    ``[3, H, W]``, ``panoptic`` ground truth). Panoptic models report ``pq``/``sq``/``rq``
    (also for things and stuff) and mIoU of their semantic prediction; semantic models
    report mIoU. ``scales``/``flip`` are DeepLab2's multi-scale / flipped evaluation.
    """
    info = info or getattr(dataset, "info", None) or model.dataset
    _check_compatible(model, info)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    miou = MeanIoU(info.num_classes, info.ignore_label)
    pq = (PanopticQuality(info.num_classes, info.ignore_label, info.label_divisor,
                          thing_classes=info.thing_class_ids)
          if getattr(model, "is_panoptic", False) else None)
    for index in tqdm(range(count), desc="evaluate", unit="img", disable=not progress):
        sample = dataset[index]
        image = sample["image"]
        if image.dtype != torch.uint8:  # transforms may give float 0..255
            image = image.clamp(0, 255).round().to(torch.uint8)
        prediction = model.predict(image[:3], scales=scales, flip=flip)
        gt = sample["panoptic"].numpy().astype(np.int64)
        miou.update(gt // info.label_divisor, prediction.semantic)
        if pq is not None:
            pq.update(gt, prediction.panoptic)
    result: dict[str, Any] = {"num_images": count, "scales": list(scales), "flip": flip}
    if pq is not None:
        result.update(pq.compute())
    semantic = miou.compute()
    result["miou"] = semantic["miou"]
    result["per_class_iou"] = semantic["per_class_iou"]
    return result


def format_report(result: dict[str, Any], class_names: Sequence[str] = ()) -> str:
    """A per-class table (PQ/SQ/RQ where available, IoU) and the summary lines."""
    def pct(value: float) -> str:
        return "   -" if value is None or (isinstance(value, float) and math.isnan(value)) \
            else f"{100 * value:5.1f}"

    lines = []
    per_class = result.get("per_class")
    ious = list(result.get("per_class_iou", []))
    header = f"{'class':<20} {'PQ':>5} {'SQ':>5} {'RQ':>5} {'IoU':>5}"
    lines.append(header)
    lines.append("-" * len(header))
    for c, iou in enumerate(ious):
        name = class_names[c] if c < len(class_names) else str(c)
        if per_class is not None:
            cells = [pct(per_class["pq"][c] if per_class["valid"][c] else None),
                     pct(per_class["sq"][c] if per_class["valid"][c] else None),
                     pct(per_class["rq"][c] if per_class["valid"][c] else None)]
        else:
            cells = ["   -"] * 3
        lines.append(f"{name:<20} " + " ".join(f"{x:>5}" for x in cells) + f" {pct(iou):>5}")
    lines.append("-" * len(header))
    summary = [f"images {result['num_images']}"]
    for key in ("pq", "sq", "rq", "pq_things", "pq_stuff", "miou"):
        if key in result:
            summary.append(f"{key} {pct(result[key]).strip()}")
    lines.append(", ".join(summary))
    return "\n".join(lines)
