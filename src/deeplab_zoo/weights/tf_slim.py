"""TF-Slim variable names (research/deeplab's TF1 checkpoints) -> our ``state_dict`` names.

research/deeplab's checkpoints are name-based TF1 checkpoints whose keys are TF-Slim
scopes (``xception_65/entry_flow/conv1_1/weights``,
``decoder/feature_projection0/BatchNorm/moving_mean``). They do not follow DeepLab2's
Keras attribute names, so each model family maps its *layer scopes* onto module paths
with a small table next to the module (``tf_slim_name_map``), and this file holds the
one generic part: what a variable below a layer scope becomes. A layer scope maps onto
one of our conv blocks (``layers/conv.py``) or a bare batch norm:

============================================  =================================================
``<layer>/weights``, ``<layer>/biases``       ``<module>.conv.weight`` / ``.conv.bias``
``<layer>/BatchNorm/gamma`` (beta, moving_*)  ``<module>.batch_norm.weight`` (bias, running_*)
``<layer>_depthwise/...``, ``_pointwise/...``  ``<module>.depthwise...`` / ``.pointwise...``
                                              (research/deeplab's split separable conv)
``<layer>/depthwise_weights``                 ``<module>.depthwise_conv.weight`` if the layer is
                                              ``depthwise``/``*_depthwise``, else (one
                                              ``slim.separable_conv2d``)
                                              ``<module>.depthwise.depthwise_conv.weight``
``<layer>/pointwise_weights``                 ``<module>.pointwise.conv.weight``
``<bn>/gamma`` (no ``BatchNorm`` scope)       ``<bn>.weight`` (a bare ``nn.BatchNorm2d``)
============================================  =================================================

Layouts are converted by leaf in :mod:`.convert` (``weights``/``pointwise_weights``
HWIO -> OIHW, ``depthwise_weights`` HWC1 -> C1HW).
"""
from __future__ import annotations

from collections.abc import Callable

#: batch-norm variable -> torch name.
SLIM_BATCH_NORM = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
                   "moving_variance": "running_var"}
#: last component of TF1 training-only variables (optimizer slots, EMA shadows).
_TRAINING_SLOTS = ("Momentum", "ExponentialMovingAverage", "Adam", "Adam_1", "RMSProp",
                   "RMSProp_1", "Adagrad", "Ftrl", "Ftrl_1")


def is_training_variable(key: str) -> bool:
    """True for ``global_step`` and optimizer / moving-average slots of a TF1 checkpoint."""
    parts = key.split("/")
    return key == "global_step" or parts[-1] in _TRAINING_SLOTS


def split_slim_key(key: str) -> tuple[list[str], list[str]] | None:
    """``(layer scope parts, torch suffix parts)`` of a TF-Slim variable, or None.

    E.g. ``a/aspp1_depthwise/BatchNorm/gamma`` -> ``(['a', 'aspp1', 'depthwise'],
    ['batch_norm', 'weight'])``. The caller maps the scope parts onto a module path.
    """
    parts = key.split("/")
    leaf = parts[-1]
    if leaf in SLIM_BATCH_NORM:
        if len(parts) >= 3 and parts[-2] == "BatchNorm":
            scope, suffix = parts[:-2], ["batch_norm", SLIM_BATCH_NORM[leaf]]
        else:
            scope, suffix = parts[:-1], [SLIM_BATCH_NORM[leaf]]
    elif leaf in ("weights", "biases"):
        scope, suffix = parts[:-1], ["conv", "weight" if leaf == "weights" else "bias"]
    elif leaf == "pointwise_weights":
        scope, suffix = parts[:-1], ["pointwise", "conv", "weight"]
    elif leaf == "depthwise_weights":
        scope, suffix = parts[:-1], ["depthwise_conv", "weight"]
    else:
        return None
    if not scope:
        return None
    for marker in ("_depthwise", "_pointwise"):
        if scope[-1].endswith(marker) and len(scope[-1]) > len(marker):
            scope = scope[:-1] + [scope[-1][: -len(marker)], marker[1:]]
    if leaf == "depthwise_weights" and scope[-1] != "depthwise":
        suffix = ["depthwise", *suffix]
    return scope, suffix


def map_slim_key(key: str, scope_map: Callable[[list[str]], list[str] | None]) -> str | None:
    """Our name for TF-Slim variable ``key``: ``scope_map(layer scope parts)`` + the suffix.

    ``scope_map`` is a family's rename table (None: not one of its layers).
    """
    split = split_slim_key(key)
    if split is None:
        return None
    modules = scope_map(split[0])
    if modules is None:
        return None
    return ".".join([*modules, *split[1]])
