"""COCO panoptic, read from the original files (DeepLab2 ``build_coco_data.py``).

Layout (the official panoptic release)::

    root/{train2017,val2017,test2017}/*.jpg
    root/annotations/panoptic_{train,val}2017.json
    root/annotations/panoptic_{train,val}2017/*.png

Images are matched to annotations by file stem. The 133 COCO panoptic category ids
map, in id order, to contiguous 1..133 with 0 = void (DeepLab2 ``coco_constants``);
things are 1..80; label divisor 256. Crowd segments become void unless
``treat_crowd_as_ignore=False``. ``test`` has no labels.
"""
from __future__ import annotations

from pathlib import Path

from .custom import JsonPanopticDataset, list_images
from .datasets import get_dataset_info

# The 133 category ids of the COCO panoptic release, in order (80 things, then 53 stuff).
COCO_CATEGORY_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27,
    28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53,
    54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80,
    81, 82, 84, 85, 86, 87, 88, 89, 90, 92, 93, 95, 100, 107, 109, 112, 118, 119, 122, 125, 128,
    130, 133, 138, 141, 144, 145, 147, 148, 149, 151, 154, 155, 156, 159, 161, 166, 168, 171,
    175, 176, 177, 178, 180, 181, 184, 185, 186, 187, 188, 189, 190, 191, 192, 193, 194, 195,
    196, 197, 198, 199, 200,
)

# Original COCO id -> contiguous id (1..133); 0 is void.
COCO_ID_TO_CONTIGUOUS = {cid: i + 1 for i, cid in enumerate(COCO_CATEGORY_IDS)}
# Contiguous id -> original COCO id (index 0, void, maps to 0), for official evaluation.
COCO_CONTIGUOUS_TO_ID = (0,) + COCO_CATEGORY_IDS

_IMAGE_FOLDERS = {"train": "train2017", "val": "val2017", "test": "test2017"}


class CocoPanoptic(JsonPanopticDataset):
    """COCO images with DeepLab2's contiguous-id panoptic labels (divisor 256)."""

    info = get_dataset_info("coco")
    json_key = "file_stem"
    check_area = True

    def _image_files(self) -> list[Path]:
        folder = _IMAGE_FOLDERS.get(self.split, self.split)
        return list_images(self.root / folder, "*.jpg", (".jpg",))

    def _json_path(self) -> Path | None:
        if self.split == "test":
            return None
        return self.root / "annotations" / f"panoptic_{self._year_split()}.json"

    def _label_dir(self) -> Path:
        return self.root / "annotations" / f"panoptic_{self._year_split()}"

    def _year_split(self) -> str:
        return _IMAGE_FOLDERS.get(self.split, self.split)

    def category_map(self, category_id: int) -> int:
        return COCO_ID_TO_CONTIGUOUS[category_id]
