"""Synthetic panoptic scenes: textured stuff regions with thing shapes on top.

Used by the demo and by tests that need an image without downloading anything.
Class ids follow the Cityscapes layout (0 road, 10 sky, 8 vegetation are stuff;
11 person, 13 car are things), label divisor 1000.
"""
from __future__ import annotations

import numpy as np

from .datasets import CITYSCAPES_COLORS

STUFF = (0, 8, 10)
THINGS = (11, 13)


def make_scene(height: int = 257, width: int = 385, *, seed: int = 0,
               num_things: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(image HxWx3 uint8, panoptic HxW int32)`` for one random scene."""
    if height < 8 or width < 8:
        raise ValueError(f"scene must be at least 8x8, got {height}x{width}")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    horizon = int(height * rng.uniform(0.35, 0.55))
    semantic = np.where(yy < horizon, 10, 0)
    band = (yy >= horizon - height // 10) & (yy < horizon) & (xx < width * rng.uniform(0.3, 0.7))
    semantic[band] = 8
    panoptic = semantic * 1000
    for index in range(1, num_things + 1):
        cls = THINGS[rng.integers(len(THINGS))]
        cy = rng.integers(horizon, height)
        cx = rng.integers(0, width)
        ry, rx = rng.integers(height // 16, height // 6), rng.integers(width // 16, width // 6)
        if cls == 11:  # people: upright ellipses
            mask = ((yy - cy) / (1.6 * ry)) ** 2 + ((xx - cx) / (0.6 * rx)) ** 2 <= 1
        else:  # cars: rectangles
            mask = (np.abs(yy - cy) <= ry * 0.7) & (np.abs(xx - cx) <= rx)
        semantic[mask] = cls
        panoptic[mask] = cls * 1000 + index
    colors = np.asarray(CITYSCAPES_COLORS, dtype=np.float32)
    image = colors[semantic]
    image += rng.normal(0, 12, size=image.shape)  # texture
    return np.clip(image, 0, 255).astype(np.uint8), panoptic.astype(np.int32)
