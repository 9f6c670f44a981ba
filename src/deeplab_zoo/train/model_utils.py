"""Training-time model adjustments: gradient checkpointing and batch-norm modes."""
from __future__ import annotations

import functools
import re

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..layers.axial_attention import MultiAxisBatchNorm
from ..layers.keras_batch_norm import KerasAxesBatchNorm

__all__ = [
    "enable_gradient_checkpointing",
    "freeze_batch_norm",
    "set_frozen_batch_norm_eval",
]

# Every batch norm of the zoo: PyTorch's and the attention layers' multi-axis ones.
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, MultiAxisBatchNorm,
       KerasAxesBatchNorm)
_BLOCK_NAME = re.compile(r"(^|\.)(block\d+|blocks\.\d+|stage\d+\.block\d+)$")


def _checkpointed_forward(module: nn.Module, original, *args, **kwargs):
    if not (module.training and torch.is_grad_enabled()):
        return original(*args, **kwargs)
    calls = {"count": 0}

    def run(*inner_args, **inner_kwargs):
        calls["count"] += 1
        if calls["count"] == 1:
            return original(*inner_args, **inner_kwargs)
        # Recomputation during backward: batch norm must not update its running
        # statistics a second time (momentum 0 keeps them exactly; the batch counter is
        # put back).
        saved = []
        for bn in module.modules():
            if isinstance(bn, _BN):
                tracked = getattr(bn, "num_batches_tracked", None)
                saved.append((bn, bn.momentum, None if tracked is None else tracked.clone()))
        for bn, _, _ in saved:
            bn.momentum = 0.0
        try:
            return original(*inner_args, **inner_kwargs)
        finally:
            for bn, momentum, tracked in saved:
                bn.momentum = momentum
                if tracked is not None:
                    bn.num_batches_tracked.copy_(tracked)

    return checkpoint(run, *args, use_reentrant=False, **kwargs)


def enable_gradient_checkpointing(model: nn.Module, pattern: str | None = None) -> list[str]:
    """Recomputes each encoder block's activations in the backward pass.

    Wraps the ``forward`` of modules whose qualified name matches ``pattern`` (default:
    ``blockN`` / ``blocks.N`` children, i.e. residual / inverted-bottleneck blocks) so
    their activations are not kept. State-dict names are unchanged; results and
    gradients are identical up to recomputation being bit-exact (it is on CPU).
    Returns the wrapped module names.
    """
    regex = re.compile(pattern) if pattern else _BLOCK_NAME
    root = getattr(model, "encoder", model)
    wrapped = []
    for name, module in root.named_modules():
        if not name or not regex.search(name) or getattr(module, "_zoo_checkpointed", False):
            continue
        if any(name.startswith(prefix + ".") for prefix in wrapped):
            continue  # an ancestor already recomputes this block
        module.forward = functools.partial(_checkpointed_forward, module, module.forward)
        module._zoo_checkpointed = True
        wrapped.append(name)
    return wrapped


def freeze_batch_norm(model: nn.Module) -> int:
    """Frozen BN: running statistics are used and not updated, scale / shift not trained.

    Call :func:`set_frozen_batch_norm_eval` after every ``model.train()``. Returns the
    number of batch-norm layers frozen.
    """
    count = 0
    for module in model.modules():
        if isinstance(module, _BN):
            for param in module.parameters():
                param.requires_grad_(False)
            module._zoo_frozen = True
            count += 1
    set_frozen_batch_norm_eval(model)
    return count


def set_frozen_batch_norm_eval(model: nn.Module) -> None:
    """Puts frozen batch-norm layers back into eval mode (``train()`` resets them)."""
    for module in model.modules():
        if getattr(module, "_zoo_frozen", False):
            module.eval()
