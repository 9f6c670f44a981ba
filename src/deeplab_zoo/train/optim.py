"""Optimizers and learning-rate schedules as DeepLab2's trainer builds them.

* Schedule (``trainer.py`` ``_create_optimizer``): Keras ``PolynomialDecay`` (step
  clipped to ``decay_steps``, no cycling) or ``CosineDecay`` (alpha 0) over the
  training steps, wrapped in a linear warmup ``lr * step / warmup_steps`` for
  ``step < warmup_steps`` (the decay is evaluated at the global step, not shifted).
* Adam: Keras defaults (betas 0.9 / 0.999, epsilon 1e-7); SGD: momentum 0.9.
* AdamW: DeepLab2's ``AdamWeightDecay``: decoupled decay ``w -= lr * wd * w`` before the
  Adam update, applied only to convolution / dense kernels (variables named
  ``kernel``/``weight`` in TF: here the ``weight`` of conv and linear layers, not norm
  scales, biases or embeddings).
* ``backbone_lr_multiplier`` puts the encoder's parameters in a second group with a
  scaled learning rate (DeepLab2's ``backbone_optimizer``).

Keras Adam adds epsilon to ``sqrt(v)`` before bias correction, PyTorch after; with
epsilon 1e-7 the difference is far below training noise.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import TrainConfig

__all__ = ["build_optimizer", "learning_rate", "set_learning_rate"]

_KERNEL_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.ConvTranspose2d)


def learning_rate(step: int, config: TrainConfig) -> float:
    """The learning rate (before group multipliers) used for the update at ``step``."""
    base = config.lr
    if config.warmup_steps and step < config.warmup_steps:
        return base * step / config.warmup_steps
    total = config.steps
    progress = min(step, total) / total
    if config.lr_policy == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * progress))
    return (base - config.poly_end_lr) * (1.0 - progress) ** config.poly_power + config.poly_end_lr


def set_learning_rate(optimizer: torch.optim.Optimizer, step: int, config: TrainConfig) -> float:
    """Sets every group's ``lr`` for ``step``; returns the base value."""
    lr = learning_rate(step, config)
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_multiplier", 1.0)
    return lr


def _decay_names(model: nn.Module) -> set[str]:
    names = set()
    for module_name, module in model.named_modules():
        if isinstance(module, _KERNEL_MODULES) and module.weight is not None:
            names.add(f"{module_name}.weight" if module_name else "weight")
    return names


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer of ``config`` over ``model``'s trainable parameters."""
    encoder = getattr(model, "encoder", None)
    encoder_ids = {id(p) for p in encoder.parameters()} if encoder is not None else set()
    decay = _decay_names(model) if config.optimizer == "adamw" else set()
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        in_backbone = config.backbone_lr_multiplier != 1.0 and id(param) in encoder_ids
        groups.setdefault((in_backbone, name in decay), []).append(param)
    param_groups = []
    for (in_backbone, with_decay), params in sorted(groups.items()):
        param_groups.append({
            "params": params,
            "lr_multiplier": config.backbone_lr_multiplier if in_backbone else 1.0,
            "weight_decay": config.adamw_weight_decay if with_decay else 0.0,
        })
    if not param_groups:
        raise ValueError("the model has no trainable parameters")
    lr = learning_rate(0, config)
    if config.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=lr, momentum=0.9)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(param_groups, lr=lr, betas=(0.9, 0.999), eps=1e-7)
    return torch.optim.Adam(param_groups, lr=lr, betas=(0.9, 0.999), eps=1e-7)
