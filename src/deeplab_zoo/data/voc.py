"""PASCAL VOC 2012 semantic segmentation (+ SBD "train_aug"), research/deeplab's ``pascal_voc_seg``.

Layout (the VOC2012 devkit; ``root`` may be ``VOCdevkit`` or ``VOCdevkit/VOC2012``)::

    root/JPEGImages/<id>.jpg
    root/ImageSets/Segmentation/<split>.txt       one image id per line
    root/SegmentationClass/<id>.png               palette PNGs (index = class id)
    root/SegmentationClassRaw/<id>.png            research/deeplab's palette-free copies
    root/SegmentationClassAug/<id>.png            SBD-augmented labels ("train_aug")

Splits ``train``, ``val``, ``trainval`` read ``SegmentationClassRaw`` when present,
else ``SegmentationClass``; ``train_aug`` (10582 images: VOC train + SBD, minus VOC val)
reads ``SegmentationClassAug``. ``label_dir=`` overrides the folder. Labels are the
palette indices themselves: 0 background, 1..20 objects, 255 boundary/void (the
ignore label). 21 classes, no instances: ``panoptic`` equals the semantic map
(label divisor 1), ``crowd`` is all False.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .base import (
    PanopticDataset,
    bool_tensor,
    check_same_size,
    check_semantic,
    image_tensor,
    label_tensor,
)
from .datasets import DatasetInfo, register_dataset_info
from .io import read_image, read_label_png
from .sample import Sample

VOC_CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)


def voc_colormap(num_colors: int = 256) -> np.ndarray:
    """The PASCAL VOC palette (``uint8 [num_colors, 3]``): bits of the class index spread
    over the high bits of R, G, B (research/deeplab ``create_pascal_label_colormap``)."""
    colors = np.zeros((num_colors, 3), dtype=np.int64)
    index = np.arange(num_colors)
    for shift in range(7, -1, -1):
        for channel in range(3):
            colors[:, channel] |= ((index >> channel) & 1) << shift
        index = index >> 3
    return colors.astype(np.uint8)


#: Colours of the 21 classes (void 255 is ``voc_colormap()[255]`` = (224, 224, 192)).
VOC_COLORS = tuple(tuple(int(c) for c in row) for row in voc_colormap(21))

VOC_INFO = DatasetInfo("voc", 21, 255, 1, (), VOC_CLASS_NAMES, VOC_COLORS)
register_dataset_info(VOC_INFO)

_SPLIT_LABEL_DIRS = {"train_aug": ("SegmentationClassAug",)}
_DEFAULT_LABEL_DIRS = ("SegmentationClassRaw", "SegmentationClass")


def colorize(semantic: np.ndarray) -> np.ndarray:
    """``uint8 [H, W, 3]`` VOC colours of a semantic map (255 = void colour)."""
    semantic = np.asarray(semantic)
    if semantic.min(initial=0) < 0 or semantic.max(initial=0) > 255:
        raise ValueError("VOC labels must be in [0, 255]")
    return voc_colormap()[semantic.astype(np.int64)]


class PascalVOCSemantic(PanopticDataset):
    """PASCAL VOC 2012 (+SBD) semantic segmentation; items are :class:`Sample` dicts."""

    info = VOC_INFO

    def __init__(self, root: str | Path, split: str = "val", *, label_dir: str | Path | None = None,
                 transform=None, skip_bad: bool = False) -> None:
        root = Path(root)
        if (root / "VOC2012").is_dir() and not (root / "JPEGImages").is_dir():
            root = root / "VOC2012"
        self.label_dir_override = None if label_dir is None else Path(label_dir)
        super().__init__(root, split, transform=transform, skip_bad=skip_bad)

    def _label_dir(self) -> Path:
        if self.label_dir_override is not None:
            folder = self.label_dir_override
            return folder if folder.is_absolute() else self.root / folder
        names = _SPLIT_LABEL_DIRS.get(self.split, _DEFAULT_LABEL_DIRS)
        for name in names:
            if (self.root / name).is_dir():
                return self.root / name
        raise DatasetError(f"no label folder for split {self.split!r} under {self.root} "
                           f"(expected one of {', '.join(names)})")

    def _index(self) -> list[tuple[str, Path, Path]]:
        if not (self.root / "JPEGImages").is_dir():
            raise DatasetError(f"not a VOC2012 folder (no JPEGImages/): {self.root}")
        list_file = self.root / "ImageSets" / "Segmentation" / f"{self.split}.txt"
        if not list_file.is_file():
            raise DatasetError(f"missing split list for {self.split!r}: {list_file}")
        try:
            lines = list_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise DatasetError(f"cannot read split list {list_file}: {err}") from err
        label_dir = self._label_dir()
        records = []
        for number, line in enumerate(lines, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 1:
                raise DatasetError(f"{list_file}:{number}: expected one image id, got {line!r}")
            name = fields[0]
            image, label = self.root / "JPEGImages" / f"{name}.jpg", label_dir / f"{name}.png"
            if self._check_files((image, "image"), (label, "label PNG")):
                records.append((name, image, label))
        return records

    def _load(self, record: tuple[str, Path, Path]) -> Sample:
        name, image_path, label_path = record
        image = read_image(image_path)
        label = read_label_png(label_path)
        if label.ndim != 2:
            raise DatasetError(f"label PNG {label_path} must be single-channel (palette or "
                               f"grey), got shape {label.shape}")
        check_same_size(label_path, label, image)
        semantic = label.astype(np.int32)
        check_semantic(semantic, self.info, label_path)
        return {"image": image_tensor(image), "panoptic": label_tensor(semantic),
                "crowd": bool_tensor(np.zeros(semantic.shape, dtype=bool)), "name": name}
