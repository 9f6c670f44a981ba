"""KITTI-STEP and MOTChallenge-STEP, read from the original files (DeepLab2 ``build_step_data.py``).

Layout::

    root/images/{split}/{sequence}/{frame:06d}.{png|jpg}
    root/panoptic_maps/{split}/{sequence}/{frame:06d}.png

Panoptic PNGs hold ``R = semantic id`` (train ids, 255 = void) and
``G * 256 + B = instance id``; the label is ``semantic * 1000 + instance`` (an
instance id >= 1000 would alias another class, so it is an error here). Thing pixels
with instance 0 are crowd (DeepLab2's ``get_semantic_and_panoptic_label``).
Splits whose name contains ``test`` have no labels.

With ``two_frames=True`` (Motion-DeepLab) a sample also carries the previous frame:
``image`` is ``[6, H, W]`` (current, previous) and ``prev_panoptic`` its label; the
first frame of a sequence is paired with itself, as in DeepLab2.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import DatasetError
from .base import (
    PanopticDataset,
    Transform,
    bool_tensor,
    check_same_size,
    check_semantic,
    crowd_from_panoptic,
    image_tensor,
    label_tensor,
)
from .custom import IMAGE_EXTENSIONS
from .datasets import DatasetInfo, get_dataset_info
from .io import read_image, read_label_png, require_dir
from .sample import Sample


class StepRecord(NamedTuple):
    name: str
    sequence: str
    frame: int
    image: Path
    label: Path | None
    prev_image: Path | None
    prev_label: Path | None


def decode_rgb_panoptic(rgb: np.ndarray, info: DatasetInfo, path: Path) -> np.ndarray:
    """``R * divisor + (G * 256 + B)`` of an RGB(A) label, validated against ``info``."""
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
        raise DatasetError(f"expected an RGB panoptic PNG, got shape {rgb.shape}: {path}")
    rgb = rgb.astype(np.int64)
    semantic = rgb[..., 0]
    instance = rgb[..., 1] * 256 + rgb[..., 2]
    if int(instance.max(initial=0)) >= info.label_divisor:
        raise DatasetError(f"{path} has instance id {int(instance.max())} >= label divisor "
                           f"{info.label_divisor}")
    check_semantic(semantic, info, path)
    return (semantic * info.label_divisor + instance).astype(np.int32)


class StepDataset(PanopticDataset):
    """A STEP dataset; see the module docstring. Subclasses set :attr:`info`."""

    def __init__(self, root: str | Path, split: str, *, transform: Transform | None = None,
                 skip_bad: bool = False, two_frames: bool = False) -> None:
        self.two_frames = two_frames
        super().__init__(root, split, transform=transform, skip_bad=skip_bad)

    @property
    def has_labels(self) -> bool:
        return "test" not in self.split

    def _index(self) -> list[StepRecord]:
        image_root = require_dir(self.root / "images" / self.split, "image folder")
        label_root = self.root / "panoptic_maps" / self.split
        if self.has_labels:
            require_dir(label_root, "panoptic map folder")
        records = []
        for seq_dir in sorted(p for p in image_root.iterdir() if p.is_dir()):
            images = sorted(p for p in seq_dir.iterdir()
                            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            for position, image in enumerate(images):
                frame = int(image.stem) if image.stem.isdigit() else position
                label = label_root / seq_dir.name / f"{image.stem}.png"
                if self.has_labels and not self._check_files((label, "panoptic map")):
                    continue
                prev_image = prev_label = None
                if self.two_frames:
                    if not image.stem.isdigit():
                        self._bad_file(DatasetError(
                            f"two_frames needs numeric frame names: {image}"))
                        continue
                    prev_stem = f"{frame - 1:06d}"
                    prev_image = image.with_name(prev_stem + image.suffix)
                    if not prev_image.is_file():
                        prev_image = image
                    if self.has_labels:
                        prev_label = label.with_name(prev_stem + ".png")
                        if not prev_label.is_file():
                            prev_label = label
                records.append(StepRecord(
                    f"{seq_dir.name}_{image.stem}", seq_dir.name, frame, image,
                    label if self.has_labels else None, prev_image, prev_label))
        return records

    def _read_label(self, path: Path, image: np.ndarray) -> np.ndarray:
        panoptic = decode_rgb_panoptic(read_label_png(path), self.info, path)
        check_same_size(path, panoptic, image)
        return panoptic

    def _load(self, record: StepRecord) -> Sample:
        image = read_image(record.image)
        frames = [image]
        if record.prev_image is not None:
            prev = read_image(record.prev_image)
            check_same_size(record.prev_image, prev, image)
            frames.append(prev)
        sample: Sample = {"image": image_tensor(*frames), "name": record.name,
                          "sequence": record.sequence, "frame": record.frame}
        if record.label is not None:
            panoptic = self._read_label(record.label, image)
            sample["panoptic"] = label_tensor(panoptic)
            sample["crowd"] = bool_tensor(crowd_from_panoptic(panoptic, self.info))
            if record.prev_label is not None:
                sample["prev_panoptic"] = label_tensor(self._read_label(record.prev_label, image))
        return sample


class KittiStep(StepDataset):
    """KITTI-STEP: 19 Cityscapes train-id classes, things person (11) and car (13)."""

    info = get_dataset_info("kitti_step")


class MotChallengeStep(StepDataset):
    """MOTChallenge-STEP: 7 classes, thing pedestrian (4)."""

    info = get_dataset_info("motchallenge_step")
