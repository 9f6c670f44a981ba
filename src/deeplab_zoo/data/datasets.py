"""Dataset descriptors: class counts, thing classes, label encoding (DeepLab2 ``data/dataset.py``).

A pretrained tag (``.cityscapes``, ``.coco`` ...) names one of these; it fixes the
number of classes, which classes are things, the ignore label and the panoptic label
divisor used by post-processing and metrics.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

CITYSCAPES_CLASS_NAMES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
    "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
    "bus", "train", "motorcycle", "bicycle",
)

CITYSCAPES_COLORS = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)

MOTCHALLENGE_CLASS_NAMES = ("sidewalk", "building", "vegetation", "sky", "pedestrian",
                            "road", "other")

_ADE20K_THINGS = (
    8, 9, 11, 13, 15, 16, 19, 20, 21, 23, 24, 25, 28, 31, 32, 33, 34, 36, 37, 38, 39, 40,
    42, 43, 44, 45, 46, 48, 50, 51, 54, 56, 57, 58, 59, 63, 65, 66, 67, 68, 70, 71, 72, 73,
    74, 75, 76, 77, 79, 81, 82, 83, 84, 86, 87, 88, 89, 90, 91, 93, 94, 96, 98, 99, 103,
    104, 105, 108, 109, 111, 112, 113, 116, 117, 119, 120, 121, 122, 124, 125, 126, 127,
    128, 130, 131, 133, 134, 135, 136, 137, 138, 139, 140, 143, 144, 145, 147, 148, 149, 150,
)


def stuff_class_ids(num_thing_stuff_classes: int, thing_class_ids: Sequence[int],
                    void_label: int) -> list[int]:
    """DeepLab2's ``get_stuff_class_ids``: the non-thing, non-void class ids, sorted."""
    if void_label >= num_thing_stuff_classes:
        ids = set(range(num_thing_stuff_classes))
    else:
        ids = set(range(num_thing_stuff_classes + 1)) - {void_label}
    return sorted(ids - set(thing_class_ids))


@dataclass(frozen=True)
class DatasetInfo:
    """Label conventions of one dataset."""

    name: str
    num_classes: int
    ignore_label: int
    label_divisor: int
    thing_class_ids: tuple[int, ...]
    class_names: tuple[str, ...] = ()
    colors: tuple[tuple[int, int, int], ...] = ()
    is_video: bool = False
    has_depth: bool = False

    @property
    def void_label(self) -> int:
        """Panoptic id of void pixels (``ignore_label * label_divisor``)."""
        return self.ignore_label * self.label_divisor

    @property
    def num_thing_stuff_classes(self) -> int:
        """Classes other than void (DeepLab2's ``get_num_thing_stuff_classes``)."""
        if self.ignore_label < 0 or self.ignore_label > self.num_classes:
            return self.num_classes
        return self.num_classes - 1

    @property
    def stuff_class_ids(self) -> list[int]:
        """The non-thing, non-void class ids, sorted."""
        return stuff_class_ids(self.num_thing_stuff_classes, self.thing_class_ids,
                               self.ignore_label)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["dataset"] = out.pop("name")
        out["void_label"] = self.void_label
        return out


_DATASETS = {
    info.name: info
    for info in (
        DatasetInfo("cityscapes", 19, 255, 1000, tuple(range(11, 19)),
                    CITYSCAPES_CLASS_NAMES, CITYSCAPES_COLORS),
        DatasetInfo("kitti_step", 19, 255, 1000, (11, 13), CITYSCAPES_CLASS_NAMES,
                    CITYSCAPES_COLORS, is_video=True),
        DatasetInfo("motchallenge_step", 7, 255, 1000, (4,), MOTCHALLENGE_CLASS_NAMES,
                    is_video=True),
        DatasetInfo("cityscapes_dvps", 19, 32, 1000, tuple(range(11, 19)),
                    CITYSCAPES_CLASS_NAMES, CITYSCAPES_COLORS, is_video=True, has_depth=True),
        DatasetInfo("semkitti_dvps", 19, 255, 65536, tuple(range(8)), is_video=True,
                    has_depth=True),
        DatasetInfo("coco", 134, 0, 256, tuple(range(1, 81))),
        DatasetInfo("ade20k", 151, 0, 1000, _ADE20K_THINGS),
    )
}


def register_dataset_info(info: DatasetInfo) -> None:
    """Adds a dataset descriptor (e.g. the synthetic dataset or a custom one)."""
    _DATASETS[info.name] = info


def get_dataset_info(name: str) -> DatasetInfo:
    """The descriptor of dataset ``name``; ValueError listing known names otherwise."""
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(_DATASETS)}")
    return _DATASETS[name]
