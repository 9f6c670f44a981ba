"""Input checking and conversion shared by the metrics (numpy or torch in, numpy out)."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = [
    "as_float_map",
    "as_label_map",
    "check_int",
    "check_same_shape",
    "check_semantic_range",
    "class_set",
]


def _to_numpy(name: str, value: Any) -> np.ndarray:
    """Numpy view of ``value`` (torch tensors are detached and copied to the host)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor, without importing it
        value = value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)):
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{name} must be a numpy array or torch tensor, "
                         f"got {type(value).__name__}")
    return value


def check_int(name: str, value: Any, minimum: int | None = None) -> int:
    """``value`` as a Python int (bools and floats are rejected), at least ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def as_label_map(name: str, value: Any, ndim: int | None = 2, *,
                 keep_dtype: bool = False) -> np.ndarray:
    """A non-negative integer label map as a numpy array (int64 unless ``keep_dtype``).

    With ``keep_dtype`` integer inputs that cast safely to ``intp`` keep their dtype (no
    full-size copy; callers must not do overflow-prone arithmetic on them).
    Raises ``ValueError`` for non-integer dtypes (bool and float included), a wrong number of
    dimensions, empty maps and negative ids.
    """
    array = _to_numpy(name, value)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer labels, got dtype {array.dtype} "
                         "(cast it, e.g. with .astype(np.int64), if the values are integral)")
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D label map, got shape {tuple(array.shape)}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: shape {tuple(array.shape)}")
    if array.dtype == np.uint64 and array.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} has ids that do not fit int64 (max {array.max()})")
    if not (keep_dtype and np.can_cast(array.dtype, np.intp)):
        array = array.astype(np.int64, copy=False)
    low = int(array.min())
    if low < 0:
        raise ValueError(f"{name} must hold non-negative ids, found {low}")
    return array


def as_float_map(name: str, value: Any, ndim: int | None = None) -> np.ndarray:
    """A real-valued map as a floating numpy array (float inputs keep their precision)."""
    array = _to_numpy(name, value)
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.floating)
                                       or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must be a real-valued array, got dtype {array.dtype}")
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(array.shape)}")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    return array


def check_same_shape(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` have the same shape."""
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")


def check_semantic_range(name: str, semantic_ids: np.ndarray, num_classes: int,
                         ignore_label: int) -> None:
    """Every id must be a class index (< ``num_classes``) or the ignore label.

    ``semantic_ids`` may be the unique ids only (cheap) or a whole map.
    """
    bad = (semantic_ids >= num_classes) & (semantic_ids != ignore_label)
    if bad.any():
        values = np.unique(semantic_ids[bad])[:8].tolist()
        raise ValueError(f"{name} has semantic classes {values} outside [0, {num_classes}) that "
                         f"are not the ignore label {ignore_label}")


def class_set(name: str, classes: Iterable[int] | None, num_classes: int) -> np.ndarray:
    """Boolean [num_classes] mask of ``classes`` (validated class indices)."""
    mask = np.zeros(num_classes, dtype=bool)
    if classes is None:
        return mask
    if hasattr(classes, "detach") or isinstance(classes, np.ndarray):
        classes = _to_numpy(name, classes).reshape(-1).tolist()
    for c in classes:
        c = check_int(f"{name} entry", c, 0)
        if c >= num_classes:
            raise ValueError(f"{name} has class {c}, outside [0, {num_classes})")
        mask[c] = True
    return mask
