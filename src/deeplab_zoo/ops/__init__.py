"""Native ops (optional compiled extension) with their pure-PyTorch references.

``backend()`` says what runs: ``"native-cuda"``, ``"native-cpu"`` or ``"reference"``.
Build the extension with ``python -m deeplab_zoo.ops.build``; without it every function
here runs the pure-PyTorch reference, with identical results.
"""
from __future__ import annotations

from ._extension import status as extension_status
from .panoptic import (
    backend,
    center_group,
    center_heatmap_nms,
    merge_semantic_instance,
    native_available,
    panoptic_deeplab_postprocess,
    semantic_argmax,
)

__all__ = [
    "backend",
    "center_group",
    "center_heatmap_nms",
    "extension_status",
    "merge_semantic_instance",
    "native_available",
    "panoptic_deeplab_postprocess",
    "semantic_argmax",
]
