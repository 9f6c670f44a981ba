"""Drop path (stochastic depth), as DeepLab2's ``model/layers/drop_path.py``.

A residual branch is kept for a whole sample with probability ``keep_prob`` and
then scaled by ``1 / keep_prob``; at inference it is the identity.
"""
from __future__ import annotations

import torch
from torch import nn


def get_drop_path_keep_prob(keep_prob_for_last_stage: float, schedule: str,
                            current_stage: int, num_stages: int) -> float:
    """Keep probability of ``current_stage`` under DeepLab2's drop path schedule.

    ``'constant'``: the same probability everywhere; ``'linear'``: linearly from 1.0
    at stage 0 (the stem) down to ``keep_prob_for_last_stage`` at ``num_stages``.
    """
    if schedule == "constant":
        return keep_prob_for_last_stage
    if schedule == "linear":
        return 1.0 - (1.0 - keep_prob_for_last_stage) * current_stage / num_stages
    raise ValueError(f"drop path schedule must be 'constant' or 'linear', got {schedule!r}")


def drop_path_mask(x: torch.Tensor, keep_prob: float) -> torch.Tensor:
    """A ``[N, 1, ..., 1]`` mask of ``floor(keep_prob + U[0, 1)) / keep_prob``."""
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    random = keep_prob + torch.rand(shape, dtype=x.dtype, device=x.device)
    return torch.floor(random) / keep_prob


class DropPath(nn.Module):
    """Multiplies its input by a per-sample drop path mask in training mode."""

    def __init__(self, keep_prob: float = 1.0):
        super().__init__()
        if not 0.0 < keep_prob <= 1.0:
            raise ValueError(f"drop path keep_prob must be in (0, 1], got {keep_prob!r}")
        self.keep_prob = keep_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.keep_prob == 1.0:
            return x
        return x * drop_path_mask(x, self.keep_prob)

    def extra_repr(self) -> str:
        return f"keep_prob={self.keep_prob}"
