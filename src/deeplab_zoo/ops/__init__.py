"""Native ops (optional compiled extension) with their pure-PyTorch references.

``backend()`` says what runs: ``"native-cuda"``, ``"native-cpu"`` or ``"reference"``.
Build the extension with ``python -m deeplab_zoo.ops.build``; without it every function
here runs the pure-PyTorch reference, with identical results (bit for bit for the
post-processing ops; within float rounding for `axial_attention`, whose fused kernels sum
in their own order).
"""
from __future__ import annotations

from ._extension import status as extension_status
from .axial import axial_attention, axial_attention_terms, similarity_moments
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
    "axial_attention",
    "axial_attention_terms",
    "backend",
    "center_group",
    "center_heatmap_nms",
    "extension_status",
    "merge_semantic_instance",
    "native_available",
    "panoptic_deeplab_postprocess",
    "semantic_argmax",
    "similarity_moments",
]
