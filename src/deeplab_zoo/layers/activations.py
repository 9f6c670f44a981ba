"""Activation functions by DeepLab2 name (``model/layers/activations.py``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class HardSigmoid(nn.Module):
    """DeepLab2's hard sigmoid: ``relu6(x + 3) * 0.16667`` (note: not exactly 1/6)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) * 0.16667


class HardSwish(nn.Module):
    """``x * relu6(x + 3) / 6``, written out so the op order matches DeepLab2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * F.relu6(x + 3.0) * (1.0 / 6.0)


def get_activation(name: str | None) -> nn.Module:
    """Returns the activation module DeepLab2 calls ``name`` (None -> identity)."""
    if name is None:
        return nn.Identity()
    key = str(name).lower()
    table = {
        "relu": nn.ReLU,
        "relu6": nn.ReLU6,
        "sigmoid": nn.Sigmoid,
        "hard_sigmoid": HardSigmoid,
        "hard_swish": HardSwish,
        "swish": nn.SiLU,
        "silu": nn.SiLU,
        "gelu": nn.GELU,
        "approximated_gelu": lambda: nn.GELU(approximate="tanh"),
        "identity": nn.Identity,
        "none": nn.Identity,
        "linear": nn.Identity,
    }
    if key not in table:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(table)}")
    return table[key]()
