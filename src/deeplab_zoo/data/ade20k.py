"""ADE20K panoptic, read from the original files (DeepLab2 ``build_ade20k_data.py``).

Layout (ADEChallengeData2016 plus Mask2Former's ``prepare_ade20k_pan_seg.py`` output)::

    root/images/{training,validation}/*.jpg
    root/ade20k_panoptic_{train,val}.json
    root/ade20k_panoptic_{train,val}/*.png

Images are matched to annotations by file stem. JSON category ids 0..149 become
1..150 and 255 becomes 0 = void (ignore label 0); label divisor 1000; things as
DeepLab2's ``ade20k_constants``. Segment areas are not checked: Mask2Former records
stuff areas before pasting things over them (DeepLab2 does not check them either).
"""
from __future__ import annotations

from pathlib import Path

from .custom import JsonPanopticDataset, list_images
from .datasets import get_dataset_info

_IMAGE_FOLDERS = {"train": "training", "val": "validation"}


class Ade20kPanoptic(JsonPanopticDataset):
    """ADE20K images with DeepLab2's panoptic labels (151 classes, 0 = void)."""

    info = get_dataset_info("ade20k")
    json_key = "file_stem"
    check_area = False

    def _image_files(self) -> list[Path]:
        folder = _IMAGE_FOLDERS.get(self.split, self.split)
        return list_images(self.root / "images" / folder, "*.jpg", (".jpg",))

    def _json_path(self) -> Path:
        return self.root / f"ade20k_panoptic_{self.split}.json"

    def _label_dir(self) -> Path:
        return self.root / f"ade20k_panoptic_{self.split}"

    def category_map(self, category_id: int) -> int:
        if category_id == 255:
            return 0
        if not 0 <= category_id < self.info.num_classes - 1:
            raise KeyError(category_id)
        return category_id + 1
