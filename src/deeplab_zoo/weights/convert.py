"""DeepLab2 checkpoint names -> our ``state_dict`` names, with shape checks.

Our modules are named after DeepLab2's Keras attributes (leading underscore
stripped), so one mechanical rule maps a key such as
``encoder/_stage2/_block1/_conv1_bn_act/_batch_norm/gamma/.ATTRIBUTES/VARIABLE_VALUE``
onto ``encoder.stage2.block1.conv1_bn_act.batch_norm.weight``. The only per-model
knowledge is the top level: a meta-architecture's ``tf_checkpoint_items`` maps
DeepLab2's checkpoint item names (``semantic_last_layer``, ...) to attribute paths,
and lives next to the head it describes.

Models whose checkpoints do not follow that rule (research/deeplab's TF1 / TF-Slim
checkpoints) instead provide a hook ``tf_name_map(key) -> str | None`` that replaces
the rule entirely: it returns the ``state_dict`` key, ``None`` for a variable that is
not the model's (reported as unused), or :data:`SKIP` for a known variable that is
deliberately not loaded (optimizer slots, an ImageNet classifier). Layouts are still
converted by leaf name (TF-Slim ``weights``/``pointwise_weights`` like ``kernel``,
``depthwise_weights`` like ``depthwise_kernel``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError

_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_LEAF = {
    "kernel": "weight", "depthwise_kernel": "weight", "gamma": "weight", "beta": "bias",
    "moving_mean": "running_mean", "moving_variance": "running_var", "bias": "bias",
    "embeddings": "weight",
}
_SEQUENTIAL_CHILD = "layer_with_weights-"
#: ``tf_name_map`` result for a variable that is known but deliberately not loaded.
SKIP = ""
# Leaf names laid out like Keras' ``kernel`` / ``depthwise_kernel`` (TF-Slim names too).
_KERNELS = ("kernel", "weights", "pointwise_weights")
_DEPTHWISE_KERNELS = ("depthwise_kernel", "depthwise_weights")
# Checkpoint entries that are training state, not model weights.
_NOT_WEIGHTS = ("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter", "global_step", "optimizer")


def is_model_variable(key: str) -> bool:
    """False for optimizer slots, counters and the object graph."""
    top = key.split("/", 1)[0]
    return top not in _NOT_WEIGHTS and ".OPTIMIZER_SLOT" not in key


def tf_items_of(model: nn.Module) -> dict[str, str]:
    """Checkpoint item -> attribute path for a meta-architecture or a bare backbone."""
    items = getattr(model, "tf_checkpoint_items", None)
    if items is not None:
        return dict(items)
    if hasattr(model, "encoder") and hasattr(model, "feature_info"):  # FeaturesOnly
        return {"encoder": "encoder"}
    return {"encoder": ""}  # a bare Backbone is DeepLab2's `encoder` item


def _part_name(part: str) -> str:
    """One key component: leading ``_`` stripped; Keras ``Sequential`` children
    (``layer_with_weights-N``, the N-th child with weights) become their index ``N``."""
    part = part.lstrip("_")
    if part.startswith(_SEQUENTIAL_CHILD):
        return part[len(_SEQUENTIAL_CHILD):]
    return part


def tf_name_map_of(model: nn.Module) -> Callable[[str], str | None] | None:
    """The model's ``tf_name_map`` hook (also through ``FeaturesOnly``), or None."""
    hook = getattr(model, "tf_name_map", None)
    if hook is not None:
        return hook
    encoder = getattr(model, "encoder", None)
    inner = getattr(encoder, "tf_name_map", None) if hasattr(model, "feature_info") else None
    if inner is None:
        return None

    def prefixed(key: str) -> str | None:
        name = inner(key)
        return name if not name else f"encoder.{name}"

    return prefixed


def torch_name(key: str, items: Mapping[str, str]) -> str | None:
    """Our state_dict key for DeepLab2 checkpoint ``key`` (None if its item is unknown)."""
    if key.endswith(_SUFFIX):
        key = key[: -len(_SUFFIX)]
    parts = key.split("/")
    # Longest matching item prefix wins (items may contain '/', e.g. nested layers).
    for cut in range(len(parts) - 1, 0, -1):
        prefix = "/".join(parts[:cut])
        if prefix in items:
            rest = [_part_name(p) for p in parts[cut:]]
            rest[-1] = _LEAF.get(rest[-1], rest[-1])
            head = items[prefix]
            return ".".join(([head] if head else []) + rest)
    return None


def _leaf(key: str) -> str:
    return (key[: -len(_SUFFIX)] if key.endswith(_SUFFIX) else key).rsplit("/", 1)[-1]


def _permutation(key: str, ndim: int) -> tuple[int, ...] | None:
    """Axis order turning a Keras/TF-Slim layout into PyTorch's, by variable kind.

    conv ``kernel`` HWIO -> OIHW, ``depthwise_kernel`` HWC1 -> C1HW, Conv1D ``kernel``
    WIO -> OIW, dense ``kernel`` IO -> OI; None (unchanged) for everything else.
    """
    leaf = _leaf(key)
    if leaf in _DEPTHWISE_KERNELS and ndim == 4:
        return (2, 3, 0, 1)
    if leaf in _KERNELS and ndim == 4:
        return (3, 2, 0, 1)
    if leaf == "kernel" and ndim == 3:
        return (2, 1, 0)
    if leaf in _KERNELS and ndim == 2:
        return (1, 0)
    return None


def convert_tensor(key: str, value: np.ndarray) -> torch.Tensor:
    """``value`` of checkpoint variable ``key`` in PyTorch's layout."""
    array = np.asarray(value)
    order = _permutation(key, array.ndim)
    if order is not None:
        array = array.transpose(order)
    return torch.from_numpy(np.ascontiguousarray(array))


def _converted_shape(key: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    order = _permutation(key, len(shape))
    return tuple(shape) if order is None else tuple(shape[i] for i in order)


def plan_tf_mapping(model: nn.Module, shapes: Mapping[str, Sequence[int]]
                    ) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Maps checkpoint keys (with their shapes) onto ``model`` without touching values.

    Returns ``(mapping tf_key -> state_dict key, report)`` where the report lists
    ``missing`` model tensors, ``unused`` checkpoint variables and ``mismatched`` shapes.
    Works on a model built on the meta device, so huge manifests are cheap to check.
    """
    name_map = tf_name_map_of(model)
    items = tf_items_of(model) if name_map is None else {}
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    mapping: dict[str, str] = {}
    unused, mismatched = [], []
    for key, shape in shapes.items():
        if not is_model_variable(key):
            continue
        name = torch_name(key, items) if name_map is None else name_map(key)
        if name == SKIP:
            continue
        if name is None or name not in state:
            unused.append(key if name is None else f"{key} (-> {name})")
            continue
        converted = _converted_shape(key, tuple(int(d) for d in shape))
        if converted != tuple(state[name].shape):
            mismatched.append(f"{key}: checkpoint {tuple(shape)} vs model "
                              f"{name} {tuple(state[name].shape)}")
            continue
        mapping[key] = name
    missing = sorted(set(state) - set(mapping.values()))
    return mapping, {"missing": missing, "unused": sorted(unused), "mismatched": mismatched}


def load_tf_variables(model: nn.Module, variables: Mapping[str, np.ndarray], *,
                      strict: bool = True) -> dict[str, list[str]]:
    """Loads DeepLab2 checkpoint ``variables`` (from ``read_tf_checkpoint``) into ``model``.

    With ``strict`` every model variable of the checkpoint must map to a tensor of
    the right shape and every parameter/buffer of the model must be covered;
    otherwise :class:`CheckpointError` lists every offending name. Returns
    ``{"missing": [...], "unused": [...], "mismatched": [...]}``.
    """
    variables = {k: v for k, v in variables.items() if v is not None}
    mapping, report = plan_tf_mapping(model, {k: np.shape(v) for k, v in variables.items()})
    if strict and any(report.values()):
        raise CheckpointError(_describe(model, report))
    state = model.state_dict()
    loaded = {name: convert_tensor(key, variables[key]).to(state[name].dtype)
              for key, name in mapping.items()}
    model.load_state_dict(loaded, strict=False)
    return report


def _describe(model: nn.Module, report: dict[str, list[str]]) -> str:
    lines = [f"checkpoint does not match {type(model).__name__}:"]
    for kind, what in (("mismatched", "shape mismatch"), ("missing", "no checkpoint variable for"),
                       ("unused", "checkpoint variable not used by the model")):
        names = report[kind]
        if names:
            lines.append(f"  {what} ({len(names)}): " + "; ".join(names[:10])
                         + (" ..." if len(names) > 10 else ""))
    lines.append("  Is this checkpoint for this architecture and output stride? Check the "
                 "model name (deeplab_zoo.list_models()).")
    return "\n".join(lines)
