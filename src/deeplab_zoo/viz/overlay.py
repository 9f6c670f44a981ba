"""Colour maps for semantic / panoptic predictions and blended overlays."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..inference import Prediction


def palette(num_classes: int, colors: Sequence[tuple[int, int, int]] = ()) -> np.ndarray:
    """``[num_classes, 3]`` uint8 colours: the dataset's where given, else distinct hues."""
    out = np.zeros((max(num_classes, len(colors), 1), 3), dtype=np.uint8)
    rng = np.random.default_rng(0)
    out[:] = rng.integers(40, 256, size=out.shape, dtype=np.uint8)
    if colors:
        out[: len(colors)] = np.asarray(colors, dtype=np.uint8)
    return out


def colorize_semantic(semantic: np.ndarray, colors: Sequence[tuple[int, int, int]] = (),
                      ignore_label: int | None = None) -> np.ndarray:
    """HxW class ids -> HxWx3 uint8 (ignored pixels black)."""
    semantic = np.asarray(semantic).astype(np.int64)
    table = palette(int(semantic.max(initial=0)) + 1, colors)
    out = table[np.clip(semantic, 0, len(table) - 1)]
    if ignore_label is not None:
        out[semantic == ignore_label] = 0
    return out


def colorize_panoptic(panoptic: np.ndarray, label_divisor: int,
                      colors: Sequence[tuple[int, int, int]] = (),
                      void_label: int | None = None) -> np.ndarray:
    """HxW panoptic ids -> HxWx3 uint8: class colour, instances shaded apart, void black."""
    panoptic = np.asarray(panoptic).astype(np.int64)
    semantic = panoptic // label_divisor
    instance = panoptic % label_divisor
    out = colorize_semantic(semantic, colors).astype(np.int16)
    # Shift each instance's colour by a deterministic offset so neighbours differ.
    shift = ((instance * 37) % 61 - 30)[..., None] * (instance > 0)[..., None]
    out = np.clip(out + shift, 0, 255)
    if void_label is not None:
        out[panoptic == void_label] = 0
    out = out.astype(np.uint8)
    # Draw segment boundaries in white.
    edge = np.zeros(panoptic.shape, dtype=bool)
    edge[1:, :] |= panoptic[1:, :] != panoptic[:-1, :]
    edge[:, 1:] |= panoptic[:, 1:] != panoptic[:, :-1]
    out[edge] = 255
    return out


def overlay_prediction(image: np.ndarray, prediction: Prediction, alpha: float = 0.5) -> np.ndarray:
    """Blends the panoptic map (or the semantic map) over an HxWx3 uint8 image."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if prediction.panoptic is not None:
        colour = colorize_panoptic(prediction.panoptic, prediction.label_divisor,
                                   prediction.colors, prediction.void_label)
    else:
        colour = colorize_semantic(prediction.semantic, prediction.colors)
    if image.shape[:2] != colour.shape[:2]:
        raise ValueError(f"image size {image.shape[:2]} differs from prediction size "
                         f"{colour.shape[:2]}")
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colour.astype(np.float32)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)
