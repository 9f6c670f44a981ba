"""Datasets: descriptors, readers of the original on-disk formats, and transforms.

Readers of the original on-disk formats are built by name with :func:`build_dataset`;
their modules are imported lazily so that importing the descriptors stays cheap.
"""
from __future__ import annotations

import importlib
from typing import Any

# name -> (module, class); DeepLab2's dataset names are accepted as aliases.
_READERS = {
    "cityscapes": ("cityscapes", "CityscapesPanoptic"),
    "coco": ("coco", "CocoPanoptic"),
    "kitti_step": ("step", "KittiStep"),
    "motchallenge_step": ("step", "MotChallengeStep"),
    "cityscapes_dvps": ("dvps", "CityscapesDvps"),
    "semkitti_dvps": ("dvps", "SemKittiDvps"),
    "ade20k": ("ade20k", "Ade20kPanoptic"),
    "custom": ("custom", "CustomPanopticDataset"),
}
_ALIASES = {
    "cityscapes_panoptic": "cityscapes",
    "coco_panoptic": "coco",
    "ade20k_panoptic": "ade20k",
}
DATASET_NAMES = tuple(sorted([*_READERS, "synthetic"]))


def build_dataset(name: str, root: Any = None, split: str = "train", **kwargs: Any):
    """Builds the reader of dataset ``name`` for ``root``/``split``.

    ``kwargs`` go to the reader (``transform``, ``skip_bad``, and reader options such as
    ``treat_crowd_as_ignore`` or ``two_frames``). ``synthetic`` ignores ``root`` and
    ``split`` and passes ``kwargs`` to ``SyntheticPanopticDataset``.
    """
    key = _ALIASES.get(name, name)
    if key == "synthetic":
        from .synthetic import SyntheticPanopticDataset

        return SyntheticPanopticDataset(**kwargs)
    if key not in _READERS:
        raise ValueError(f"unknown dataset {name!r}; known: {list(DATASET_NAMES)}")
    if root is None:
        raise ValueError(f"dataset {name!r} needs a root folder")
    module, cls = _READERS[key]
    reader = getattr(importlib.import_module(f".{module}", __name__), cls)
    return reader(root, split, **kwargs)
