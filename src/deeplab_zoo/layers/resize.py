"""Resizing as DeepLab2 does it (``tf.compat.v1.image.resize(..., align_corners=True)``)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def resize_align_corners(x: torch.Tensor, size: Sequence[int],
                         mode: str = "bilinear") -> torch.Tensor:
    """Resizes NCHW ``x`` to ``size`` with align_corners semantics (no-op if equal)."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    if mode == "nearest":
        # TF's align_corners nearest neighbour rounds half away from zero (roundf).
        in_h, in_w = x.shape[-2:]
        ys = _align_corners_nearest_index(in_h, size[0], x.device)
        xs = _align_corners_nearest_index(in_w, size[1], x.device)
        return x[..., ys[:, None], xs[None, :]]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def _align_corners_nearest_index(in_size: int, out_size: int, device) -> torch.Tensor:
    scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    idx = torch.floor(torch.arange(out_size, device=device, dtype=torch.float64) * scale + 0.5)
    return idx.long().clamp_(0, in_size - 1)


def resize_and_rescale_offsets(offsets: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resizes an N2HW (dy, dx) offset map and scales it by (out - 1) / (in - 1) per axis."""
    in_h, in_w = offsets.shape[-2:]
    scale_y = (int(size[0]) - 1) / max(in_h - 1, 1)
    scale_x = (int(size[1]) - 1) / max(in_w - 1, 1)
    scale = offsets.new_tensor([scale_y, scale_x]).view(1, 2, 1, 1)
    return resize_align_corners(offsets * scale, size)


def scale_dimension(value: int, scale: float) -> int:
    """DeepLab2's ``(value - 1) * scale + 1`` size rule (e.g. 1025 at 1/16 -> 65)."""
    return int((float(value) - 1.0) * scale + 1.0)
