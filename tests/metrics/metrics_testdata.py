"""Readers for DeepLab2's evaluation test images (tests/metrics/testdata, see its README).

Imported by the tests in tests/metrics as ``metrics_testdata``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

TESTDATA = Path(__file__).resolve().parent / "testdata"

# Colours of the *_pred_class.png images (web colour names) -> class ids used by DeepLab2's tests.
CLASS_COLORS = {
    (0, 0, 0): 0,
    (0, 0, 255): 1,  # person, blue
    (255, 0, 0): 2,  # bear, red
    (0, 255, 0): 3,  # tree, lime
    (255, 0, 255): 4,  # bird, fuchsia
    (0, 255, 255): 5,  # sky, aqua
    (255, 255, 0): 6,  # cat, yellow
}

# Ground-truth instance value -> class, per image.
TEAM_GT_CLASSES = {0: 0, 47: 1, 97: 1, 133: 1, 150: 1, 174: 1, 198: 2, 215: 1, 244: 1, 255: 1}
BIRD_GT_CLASSES = {92: 5, 176: 3, 255: 4}
CAT_GT_CLASSES = {0: 0, 255: 6}


def read_image(name: str, mode: str | None = None) -> np.ndarray:
    """A test image as an array, optionally converted to a PIL mode ('L', 'RGB', 'RGBA')."""
    with Image.open(TESTDATA / name) as image:
        if mode is not None:
            image = image.convert(mode)
        return np.array(image)


def read_class_map(name: str, colors: dict[tuple[int, int, int], int] = CLASS_COLORS
                   ) -> np.ndarray:
    """Class map from a colour-coded image; every colour must be in ``colors``."""
    rgb = read_image(name, "RGB")
    present = {tuple(c) for c in np.unique(rgb.reshape(-1, 3), axis=0).tolist()}
    if not present <= set(colors):
        raise ValueError(f"{name} has colours outside the colour map: {present - set(colors)}")
    labels = np.zeros(rgb.shape[:2], dtype=np.int64)
    for color, label in colors.items():
        labels[np.all(rgb == np.array(color), axis=2)] = label
    return labels


def read_instances_and_classes(name: str, instance_to_class: dict[int, int]
                               ) -> tuple[np.ndarray, np.ndarray]:
    """(instance map, class map) from a grey-level instance image and an instance -> class map."""
    instances = read_image(name, "L").astype(np.int64)
    if set(np.unique(instances).tolist()) != set(instance_to_class):
        raise ValueError(f"instance ids of {name} do not match the class map")
    classes = np.zeros_like(instances)
    for instance, label in instance_to_class.items():
        classes[instances == instance] = label
    return instances, classes


def combine(semantic: np.ndarray, instance: np.ndarray, divisor: int) -> np.ndarray:
    """Panoptic map ``semantic * divisor + instance`` (int32, as DeepLab2's tests build it)."""
    return (np.asarray(semantic) * divisor + np.asarray(instance)).astype(np.int32)


# The 3-frame [T, H, W] example of DeepLab2's STQ and DSTQ tests. classes: sky, vegetation, cars.
GT_SEMANTIC = np.array([
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 2, 0, 1, 1, 1],
     [0, 2, 2, 2, 2, 1, 1, 1], [2, 2, 2, 2, 2, 2, 1, 1], [2, 2, 2, 2, 2, 2, 2, 1],
     [2, 2, 2, 2, 2, 2, 2, 1], [2, 2, 2, 2, 2, 2, 1, 1]],
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [0, 2, 0, 0, 1, 1, 0, 0],
     [2, 2, 2, 1, 1, 1, 1, 0], [2, 2, 2, 2, 1, 1, 1, 1], [2, 2, 2, 2, 2, 1, 1, 1],
     [2, 2, 2, 2, 2, 1, 1, 1], [2, 2, 2, 2, 1, 1, 1, 1]],
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0],
     [2, 0, 1, 1, 1, 0, 0, 0], [2, 2, 1, 1, 1, 1, 0, 0], [2, 2, 2, 1, 1, 1, 1, 0],
     [2, 2, 2, 1, 1, 1, 1, 1], [2, 2, 2, 1, 1, 1, 1, 1]],
])
GT_INSTANCE = np.array([
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 2, 0, 0, 0, 0],
     [0, 2, 2, 2, 2, 0, 0, 0], [2, 2, 2, 2, 2, 2, 0, 0], [2, 2, 2, 2, 2, 2, 2, 0],
     [2, 2, 2, 2, 2, 2, 2, 0], [2, 2, 2, 2, 2, 2, 0, 0]],
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [0, 2, 0, 0, 0, 0, 0, 0],
     [2, 2, 2, 0, 0, 0, 0, 0], [2, 2, 2, 2, 0, 0, 0, 0], [2, 2, 2, 2, 2, 0, 0, 0],
     [2, 2, 2, 2, 2, 0, 0, 0], [2, 2, 2, 2, 0, 0, 0, 0]],
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0],
     [2, 0, 0, 0, 0, 0, 0, 0], [2, 2, 0, 0, 0, 0, 0, 0], [2, 2, 2, 0, 0, 0, 0, 0],
     [2, 2, 2, 0, 0, 0, 0, 0], [2, 2, 2, 0, 0, 0, 0, 0]],
])
PRED_SEMANTIC = np.array([
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 0, 0],
     [0, 0, 0, 2, 2, 1, 1, 1], [0, 2, 2, 2, 2, 2, 1, 1], [2, 2, 2, 2, 2, 2, 2, 1],
     [2, 2, 2, 2, 2, 2, 2, 1], [2, 2, 2, 2, 2, 2, 2, 1]],
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 0, 0],
     [0, 2, 2, 2, 1, 1, 1, 1], [2, 2, 2, 2, 1, 1, 1, 1], [2, 2, 2, 2, 2, 1, 1, 1],
     [2, 2, 2, 2, 2, 2, 1, 1], [2, 2, 2, 2, 2, 1, 1, 1]],
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0, 0, 0],
     [0, 0, 1, 1, 1, 1, 0, 0], [2, 2, 2, 1, 1, 1, 0, 0], [2, 2, 2, 1, 1, 1, 1, 1],
     [2, 2, 2, 2, 1, 1, 1, 1], [2, 2, 2, 2, 1, 1, 1, 1]],
])
PRED_INSTANCE = np.array([
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0],
     [0, 0, 0, 2, 2, 0, 0, 0], [0, 2, 2, 2, 2, 1, 0, 0], [2, 2, 2, 2, 2, 1, 1, 0],
     [2, 2, 2, 2, 1, 1, 1, 0], [2, 2, 2, 2, 1, 1, 1, 0]],
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0],
     [0, 2, 2, 2, 0, 0, 0, 0], [2, 2, 2, 2, 0, 0, 0, 0], [2, 2, 2, 2, 2, 0, 0, 0],
     [2, 2, 2, 2, 1, 1, 0, 0], [2, 2, 2, 2, 1, 0, 0, 0]],
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0],
     [0, 0, 0, 0, 0, 0, 0, 0], [2, 2, 2, 0, 0, 0, 0, 0], [2, 2, 2, 0, 0, 0, 0, 0],
     [2, 2, 2, 2, 0, 0, 0, 0], [2, 2, 2, 2, 0, 0, 0, 0]],
])
