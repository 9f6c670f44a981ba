"""Cityscapes panoptic, read from the original files (DeepLab2 ``build_cityscapes_data.py``).

Layout (``cityscapesscripts`` ``createPanopticImgs.py --use-train-id`` output)::

    root/leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
    root/gtFine/cityscapes_panoptic_{split}_trainId.json
    root/gtFine/cityscapes_panoptic_{split}_trainId/{file_name from the JSON}

Annotations are keyed by the JSON ``image_id`` (the image's file prefix); categories
are already train ids 0..18 (255 = void), things 11..18, label divisor 1000. Crowd
segments become void unless ``treat_crowd_as_ignore=False``. The ``test`` split has no
labels (samples carry only ``image`` and ``name``).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import DatasetError
from .custom import JsonPanopticDataset, list_images
from .datasets import get_dataset_info

_IMAGE_SUFFIX = "_leftImg8bit.png"


class CityscapesPanoptic(JsonPanopticDataset):
    """Cityscapes images with DeepLab2's train-id panoptic labels."""

    info = get_dataset_info("cityscapes")
    json_key = "image_id"
    check_area = True
    unlabelled_splits = ("test",)

    def _image_files(self) -> list[Path]:
        folder = self.root / "leftImg8bit" / self.split
        return [p for p in list_images(folder, "*/*" + _IMAGE_SUFFIX, (".png",))]

    def _image_key(self, path: Path) -> str:
        return path.name[: -len(_IMAGE_SUFFIX)]

    def _json_path(self) -> Path | None:
        if self.split in self.unlabelled_splits:
            return None
        path = self.root / "gtFine" / f"cityscapes_panoptic_{self.split}_trainId.json"
        if not path.is_file():
            raise DatasetError(
                f"missing panoptic JSON: {path} (create it with cityscapesscripts' "
                "createPanopticImgs.py --use-train-id)")
        return path

    def _label_dir(self) -> Path:
        return self.root / "gtFine" / f"cityscapes_panoptic_{self.split}_trainId"

    def category_map(self, category_id: int) -> int:
        if category_id == self.info.ignore_label or 0 <= category_id < self.info.num_classes:
            return category_id
        raise KeyError(category_id)
