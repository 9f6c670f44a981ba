"""Evaluation metrics with DeepLab2's exact semantics (``deeplab2/evaluation``).

Every metric is a streaming accumulator with ``update(...)``, ``compute() -> dict``,
``merge(other)`` (add another accumulator's state, e.g. from other DDP ranks; objects are
picklable for ``torch.distributed.all_gather_object``) and ``reset()``. Inputs are numpy
arrays or torch tensors (moved to the host); label maps are non-negative integers encoded
``semantic * label_divisor + instance``. Bad inputs raise ``ValueError``.
"""
from .coco_instance_ap import COCO_STAT_NAMES, CocoInstanceAP, CocoMaskAP
from .depth import DepthMetrics
from .dstq import DepthAwareSTQ
from .mean_iou import MeanIoU
from .panoptic_quality import PanopticQuality
from .stq import SegmentationTrackingQuality
from .vpq import VideoPanopticQuality, WindowedVideoPanopticQuality

__all__ = [
    "COCO_STAT_NAMES",
    "CocoInstanceAP",
    "CocoMaskAP",
    "DepthAwareSTQ",
    "DepthMetrics",
    "MeanIoU",
    "PanopticQuality",
    "SegmentationTrackingQuality",
    "VideoPanopticQuality",
    "WindowedVideoPanopticQuality",
]
