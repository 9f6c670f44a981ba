"""Small helpers shared by layers (DeepLab2 ``model/utils.py``)."""
from __future__ import annotations


def make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """Rounds ``value`` to the nearest multiple of ``divisor`` (DeepLab2 rule).

    The result is at least ``min_value`` (default ``divisor``) and never more than
    10% below ``value``; ``min_value`` must itself be a multiple of ``divisor``.
    """
    if min_value is None:
        min_value = divisor
    elif min_value % divisor != 0:
        raise ValueError(f"min_value {min_value} must be divisible by divisor {divisor}")
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return int(new_value)
