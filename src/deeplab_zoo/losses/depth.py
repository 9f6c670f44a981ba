"""ViP-DeepLab's depth loss: SILog error + relative squared error (``base_loss.py``).

Per sample, over the pixels whose ground truth differs from ``ignore_depth``, with
``d = log(gt) - log(pred)``::

    silog    = mean(d ** 2) - mean(d) ** 2
    relative = sqrt(mean(((gt - pred) / gt) ** 2))

A sample without any valid pixel gets 0 (DeepLab2 would produce NaN there, which its
trainer then replaces by 0 only for the whole batch).
"""
from __future__ import annotations

import torch

__all__ = ["depth_loss", "relative_squared_error", "silog_error"]


def _masked(gt: torch.Tensor, pred: torch.Tensor, ignore_depth: float
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if pred.ndim == 4 and pred.shape[1] == 1:
        pred = pred[:, 0]
    if gt.shape != pred.shape:
        raise ValueError(f"depth prediction {tuple(pred.shape)} and target {tuple(gt.shape)} "
                         "shapes differ")
    gt = gt.float().reshape(gt.shape[0], -1)
    pred = pred.float().reshape(pred.shape[0], -1)
    valid = gt != ignore_depth
    count = valid.sum(dim=1).to(gt.dtype)
    # Invalid pixels get gt = pred = 1 so the logs stay finite; they are masked out anyway.
    one = torch.ones_like(gt)
    return torch.where(valid, gt, one), torch.where(valid, pred, one), valid.to(gt.dtype), count


def _mean(values: torch.Tensor, valid: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    return (values * valid).sum(dim=1) / count.clamp(min=1)


def silog_error(gt: torch.Tensor, pred: torch.Tensor, ignore_depth: float = 0.0
                ) -> torch.Tensor:
    """Scale-invariant log error per sample (Eigen et al. 2014), ``[B]``."""
    gt, pred, valid, count = _masked(gt, pred, ignore_depth)
    diff = torch.log(gt) - torch.log(pred)
    return _mean(diff**2, valid, count) - _mean(diff, valid, count) ** 2


def relative_squared_error(gt: torch.Tensor, pred: torch.Tensor, ignore_depth: float = 0.0
                           ) -> torch.Tensor:
    """Root mean squared relative error per sample (Uhrig et al. 2017), ``[B]``."""
    gt, pred, valid, count = _masked(gt, pred, ignore_depth)
    mean = _mean(((gt - pred) / gt) ** 2, valid, count)
    # sqrt has an infinite gradient at 0; a perfect prediction gets a zero gradient instead.
    return torch.where(mean > 0, torch.sqrt(mean.clamp(min=1e-30)), torch.zeros_like(mean))


def depth_loss(gt: torch.Tensor, pred: torch.Tensor, ignore_depth: float = 0.0) -> torch.Tensor:
    """ViP-DeepLab's ``depth_loss``: SILog + relative squared error, ``[B]``."""
    return silog_error(gt, pred, ignore_depth) + relative_squared_error(gt, pred, ignore_depth)
