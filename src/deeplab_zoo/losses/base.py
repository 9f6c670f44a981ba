"""Per-pixel losses with DeepLab2's top-k reduction (``model/loss/base_loss.py``).

Every loss returns one value per sample (``[B]``); the trainer averages over the batch.
The reduction is DeepLab2's ``compute_average_top_k_loss``: keep the
``round(top_k_percent * num_pixels)`` largest weighted per-pixel losses of each sample
(all of them when ``top_k_percent == 1``) and divide their sum by the number of
*non-zero* values among them (0 when there is none). Dividing by the non-zero count,
not by the pixel count, is what DeepLab2 does: pixels with zero weight (void, stuff
for the offset loss) do not dilute the mean.

"Bootstrapped" cross-entropy is the top-k cross-entropy with ``top_k_percent < 1``
(DeepLab2's Panoptic-DeepLab configs use 0.2).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "average_top_k_loss",
    "strided_downsample",
    "top_k_cross_entropy",
    "top_k_l1",
    "top_k_mse",
    "top_k_pixel_loss",
]


def _check_top_k(top_k_percent: float) -> None:
    if not 0.0 <= top_k_percent <= 1.0:
        raise ValueError(f"top_k_percent must lie within [0, 1], got {top_k_percent}")


def average_top_k_loss(loss: torch.Tensor, top_k_percent: float = 1.0) -> torch.Tensor:
    """``[B, ...]`` per-element losses -> ``[B]`` mean of the top-k non-zero values."""
    _check_top_k(top_k_percent)
    loss = loss.reshape(loss.shape[0], -1)
    if top_k_percent != 1.0:
        # tf.math.round(float32(p) * float32(n)): round half to even in float32.
        k = int(np.round(np.float32(top_k_percent) * np.float32(loss.shape[1])))
        loss = torch.topk(loss, k, dim=1, sorted=False).values
    num_non_zero = (loss != 0).sum(dim=1).to(loss.dtype)
    total = loss.sum(dim=1)
    return torch.where(num_non_zero > 0, total / num_non_zero.clamp(min=1),
                       torch.zeros_like(total))


def strided_downsample(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """DeepLab2's ``strided_downsample`` of ``[B, H, W]`` to ``size`` (same stride per axis)."""
    height, width = tensor.shape[-2:]
    th, tw = size
    if (height, width) == (th, tw):
        return tensor
    if th < 2 or tw < 2 or (height - 1) % (th - 1) or (width - 1) % (tw - 1):
        raise ValueError(f"cannot downsample {height}x{width} to {th}x{tw} with an integer "
                         "stride: (size - 1) must divide (input - 1)")
    stride = (height - 1) // (th - 1)
    if stride != (width - 1) // (tw - 1):
        raise ValueError(f"height and width strides differ for {height}x{width} -> {th}x{tw}")
    return tensor[..., ::stride, ::stride]


def top_k_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, *,
                        ignore_label: int | None, top_k_percent: float = 1.0) -> torch.Tensor:
    """Weighted softmax cross-entropy, top-k reduced: ``[B, C, H, W]`` logits -> ``[B]``.

    ``labels`` ``[B, H, W]`` integers; pixels equal to ``ignore_label`` (or outside
    ``[0, C)``, whose one-hot encoding is all zeros in DeepLab2) contribute nothing.
    Labels larger than the logits are strided-downsampled as in DeepLab2.
    """
    if logits.ndim != 4:
        raise ValueError(f"logits must be [B, C, H, W], got shape {tuple(logits.shape)}")
    labels = strided_downsample(labels, logits.shape[-2:])
    weights = strided_downsample(weights, logits.shape[-2:])
    num_classes = logits.shape[1]
    valid = (labels >= 0) & (labels < num_classes)
    if ignore_label is not None:
        valid &= labels != ignore_label
    safe = torch.where(valid, labels, torch.zeros_like(labels)).long()
    pixel = F.cross_entropy(logits.float(), safe, reduction="none")
    pixel = pixel * valid.to(pixel.dtype) * weights.to(pixel.dtype)
    return average_top_k_loss(pixel, top_k_percent)


def top_k_pixel_loss(fn: Callable[[torch.Tensor], torch.Tensor], target: torch.Tensor,
                     pred: torch.Tensor, weights: torch.Tensor,
                     top_k_percent: float = 1.0) -> torch.Tensor:
    """``fn(target - pred)`` per pixel (channel mean for ``[B, C, H, W]``), weighted, top-k."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} "
                         "shapes differ")
    pixel = fn(target.float() - pred.float())
    if pixel.ndim == 4:  # DeepLab2 averages the channels of [B, H, W, C] maps
        pixel = pixel.mean(dim=1)
    return average_top_k_loss(pixel * weights.to(pixel.dtype), top_k_percent)


def top_k_mse(target: torch.Tensor, pred: torch.Tensor, weights: torch.Tensor,
              top_k_percent: float = 1.0) -> torch.Tensor:
    """DeepLab2's ``mse`` loss (centre heatmap): squared error, weighted, top-k."""
    return top_k_pixel_loss(torch.square, target, pred, weights, top_k_percent)


def top_k_l1(target: torch.Tensor, pred: torch.Tensor, weights: torch.Tensor,
             top_k_percent: float = 1.0) -> torch.Tensor:
    """DeepLab2's ``l1`` loss (offsets): absolute error, weighted, top-k."""
    return top_k_pixel_loss(torch.abs, target, pred, weights, top_k_percent)
