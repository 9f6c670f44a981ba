"""Batch norm whose parameters keep a Keras multi-axis shape (e.g. ``[1, heads, 1, depth]``).

DeepLab2's attention layers normalise over several axes at once
(``BatchNormalization(axis=[1, 3])``); the checkpoint then stores gamma/beta/moving
statistics with the input's rank, size 1 on every reduced axis. This module keeps
that shape so checkpoints load unchanged, and normalises each position of the
non-reduced axes (the "channels") over the batch and the reduced axes.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class KerasAxesBatchNorm(nn.Module):
    """Batch norm over every axis where ``shape`` is 1 (axis 0, the batch, always is).

    Args:
        shape: parameter shape as Keras stores it, same rank as the input, e.g.
            ``(1, 8, 1, 32)`` for an ``[N, 8, L, 32]`` input normalised per (head, depth).
        eps / momentum: PyTorch conventions (``momentum`` = 1 - Keras momentum).
    """

    def __init__(self, shape: Sequence[int], *, eps: float = 1e-3, momentum: float = 0.01):
        super().__init__()
        shape = tuple(int(s) for s in shape)
        if shape[0] != 1:
            raise ValueError(f"KerasAxesBatchNorm: axis 0 is the batch; got shape {shape}")
        self.channel_dims = tuple(d for d, s in enumerate(shape) if s != 1)
        self.reduce_dims = tuple(d for d, s in enumerate(shape) if s == 1 and d != 0)
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape))
        self.register_buffer("running_mean", torch.zeros(shape))
        self.register_buffer("running_var", torch.ones(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.weight.dim():
            raise ValueError(f"expected a rank-{self.weight.dim()} input, got {tuple(x.shape)}")
        order = (0, *self.channel_dims, *self.reduce_dims)
        moved = x.permute(order)
        channel_shape = moved.shape[1:1 + len(self.channel_dims)]
        flat = moved.reshape(moved.shape[0], -1, *moved.shape[1 + len(self.channel_dims):])
        flat = flat.reshape(flat.shape[0], flat.shape[1], -1)
        out = F.batch_norm(flat, self.running_mean.view(-1), self.running_var.view(-1),
                           self.weight.view(-1), self.bias.view(-1), self.training,
                           self.momentum, self.eps)
        out = out.reshape(moved.shape[0], *channel_shape, *moved.shape[1 + len(channel_shape):])
        inverse = [0] * len(order)
        for position, dim in enumerate(order):
            inverse[dim] = position
        return out.permute(inverse)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.weight.shape)}, eps={self.eps}, momentum={self.momentum}"
