"""Cityscapes-DVPS and SemKITTI-DVPS from the original files (DeepLab2 ``build_dvps_data.py``).

Layout (ViP-DeepLab's ``video_sequence`` folder)::

    root/{split}/{seq}_{frame:06d}_leftImg8bit.png
    root/{split}/{seq}_{frame:06d}_gtFine_instanceTrainIds.png
    root/{split}/{seq}_{frame:06d}_depth.png

Every sample is a pair (frame, next frame), as in DeepLab2: ``image`` is ``[6, H, W]``
(current, next), ``panoptic``/``depth`` belong to the current frame and
``next_panoptic`` to the next one. The last frame of a sequence starts no sample.

- Depth PNGs store ``metres * 256`` (uint16); ``depth`` is that / 256, 0 = unknown.
- Cityscapes-DVPS labels are single-channel PNGs already holding
  ``semantic * 1000 + instance`` (void semantic 32), read as they are
  (``build_dvps_data.py`` with ``--panoptic_divisor`` <= 0).
- SemKITTI-DVPS labels are RGB PNGs, ``R = semantic`` (255 void),
  ``G * 256 + B = instance``, giving ``semantic * 65536 + instance``. The ViP-DeepLab
  release's separate ``*_gtFine_class.png`` / ``*_gtFine_instance.png`` pair and its
  ``*_depth_{focal}.png`` depth names are accepted as well.

Thing pixels with instance 0 are crowd. Splits whose name contains ``test`` have no labels.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..errors import DatasetError
from .base import (
    PanopticDataset,
    bool_tensor,
    check_same_size,
    check_semantic,
    crowd_from_panoptic,
    image_tensor,
    label_tensor,
)
from .datasets import get_dataset_info
from .io import read_image, read_label_png, require_dir
from .sample import Sample
from .step import decode_rgb_panoptic

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_instanceTrainIds.png"
DEPTH_SUFFIX = "_depth.png"
DEPTH_SCALE = 256.0


class DvpsRecord(NamedTuple):
    name: str
    sequence: str
    frame: int
    image: Path
    next_image: Path
    label: Path | tuple[Path, Path] | None
    next_label: Path | tuple[Path, Path] | None
    depth: Path | None


class DvpsDataset(PanopticDataset):
    """A DVPS dataset; see the module docstring. Subclasses set :attr:`info`."""

    @property
    def has_labels(self) -> bool:
        return "test" not in self.split

    def _label_path(self, folder: Path, prefix: str) -> Path | tuple[Path, Path] | None:
        path = folder / (prefix + LABEL_SUFFIX)
        return path if path.is_file() else None

    def _depth_path(self, folder: Path, prefix: str) -> Path | None:
        path = folder / (prefix + DEPTH_SUFFIX)
        return path if path.is_file() else None

    def _index(self) -> list[DvpsRecord]:
        folder = require_dir(self.root / self.split, "split folder")
        records = []
        for image in sorted(folder.glob("*" + IMAGE_SUFFIX)):
            prefix = image.name[: -len(IMAGE_SUFFIX)]
            parts = prefix.split("_")
            if len(parts) < 2 or not parts[1].isdigit():
                self._bad_file(DatasetError(
                    f"expected {{sequence}}_{{frame}}{IMAGE_SUFFIX}, got {image}"))
                continue
            sequence, frame = parts[0], int(parts[1])
            next_prefix = f"{sequence}_{frame + 1:06d}"
            next_image = folder / (next_prefix + IMAGE_SUFFIX)
            if not next_image.is_file():
                continue  # last frame of its sequence: no pair (as DeepLab2)
            label = next_label = depth = None
            if self.has_labels:
                label = self._label_path(folder, prefix)
                next_label = self._label_path(folder, next_prefix)
                depth = self._depth_path(folder, prefix)
                missing = [(prefix, "panoptic label", label),
                           (next_prefix, "panoptic label", next_label),
                           (prefix, "depth map", depth)]
                bad = [(p, w) for p, w, found in missing if found is None]
                if bad:
                    p, what = bad[0]
                    suffix = LABEL_SUFFIX if what == "panoptic label" else DEPTH_SUFFIX
                    self._bad_file(DatasetError(f"missing {what}: {folder / (p + suffix)}"))
                    continue
            records.append(DvpsRecord(prefix, sequence, frame, image, next_image, label,
                                      next_label, depth))
        return records

    def _decode_label(self, path: Path | tuple[Path, Path]) -> np.ndarray:
        raise NotImplementedError

    def _read_label(self, path: Path | tuple[Path, Path], image: np.ndarray) -> np.ndarray:
        panoptic = self._decode_label(path)
        check_same_size(path if isinstance(path, Path) else path[0], panoptic, image)
        return panoptic

    def _load(self, record: DvpsRecord) -> Sample:
        image = read_image(record.image)
        next_image = read_image(record.next_image)
        check_same_size(record.next_image, next_image, image)
        sample: Sample = {"image": image_tensor(image, next_image), "name": record.name,
                          "sequence": record.sequence, "frame": record.frame}
        if record.label is None:
            return sample
        panoptic = self._read_label(record.label, image)
        sample["panoptic"] = label_tensor(panoptic)
        sample["crowd"] = bool_tensor(crowd_from_panoptic(panoptic, self.info))
        sample["next_panoptic"] = label_tensor(self._read_label(record.next_label, image))
        depth = read_label_png(record.depth)
        if depth.ndim != 2:
            raise DatasetError(f"expected a single-channel depth PNG: {record.depth}")
        check_same_size(record.depth, depth, image)
        sample["depth"] = torch.from_numpy(depth.astype(np.float32) / DEPTH_SCALE)
        return sample


class CityscapesDvps(DvpsDataset):
    """Cityscapes-DVPS: 19 train-id classes, void 32, label divisor 1000, depth."""

    info = get_dataset_info("cityscapes_dvps")

    def _decode_label(self, path: Path) -> np.ndarray:
        raw = read_label_png(path)
        if raw.ndim != 2:
            raise DatasetError(f"expected a single-channel Cityscapes-DVPS label "
                               f"(semantic * 1000 + instance), got shape {raw.shape}: {path}")
        panoptic = raw.astype(np.int64)
        check_semantic(panoptic // self.info.label_divisor, self.info, path)
        return panoptic.astype(np.int32)


class SemKittiDvps(DvpsDataset):
    """SemKITTI-DVPS: 19 classes (things 0..7), void 255, label divisor 65536, depth."""

    info = get_dataset_info("semkitti_dvps")

    def _label_path(self, folder: Path, prefix: str) -> Path | tuple[Path, Path] | None:
        path = super()._label_path(folder, prefix)
        if path is not None:
            return path
        pair = (folder / (prefix + "_gtFine_class.png"),
                folder / (prefix + "_gtFine_instance.png"))
        return pair if all(p.is_file() for p in pair) else None

    def _depth_path(self, folder: Path, prefix: str) -> Path | None:
        path = super()._depth_path(folder, prefix)
        if path is not None:
            return path
        found = sorted(folder.glob(prefix + "_depth_*.png"))
        if len(found) > 1:
            raise DatasetError(f"several depth maps for {folder / prefix}: {found}")
        return found[0] if found else None

    def _decode_label(self, path: Path | tuple[Path, Path]) -> np.ndarray:
        if isinstance(path, Path):
            return decode_rgb_panoptic(read_label_png(path), self.info, path)
        class_path, instance_path = path
        semantic = read_label_png(class_path).astype(np.int64)
        instance = read_label_png(instance_path).astype(np.int64)
        if semantic.ndim != 2 or instance.shape != semantic.shape:
            raise DatasetError(f"expected single-channel class/instance PNGs of one size: "
                               f"{class_path} {semantic.shape}, {instance_path} "
                               f"{instance.shape}")
        if int(instance.max(initial=0)) >= self.info.label_divisor:
            raise DatasetError(f"{instance_path} has instance id {int(instance.max())} >= "
                               f"label divisor {self.info.label_divisor}")
        check_semantic(semantic, self.info, class_path)
        return (semantic * self.info.label_divisor + instance).astype(np.int32)
