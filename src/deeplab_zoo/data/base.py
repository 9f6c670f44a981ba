"""Shared machinery of the on-disk dataset readers: indexing, bad-sample policy, Sample assembly.

A reader lists its samples once (``_index``) and decodes one on demand (``_load``).
Files that are missing when the index is built, or that fail to decode later, raise
:class:`~deeplab_zoo.errors.DatasetError` naming the file; with ``skip_bad=True`` they
are logged, counted in :attr:`PanopticDataset.skipped` and left out instead (a sample
that fails to decode is replaced by the next good one, so ``len`` stays fixed).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DatasetError
from .datasets import DatasetInfo
from .sample import Sample

logger = logging.getLogger(__name__)

Transform = Callable[[Sample], Sample]


class PanopticDataset(Dataset):
    """Base class: ``(root, split, *, transform=None, skip_bad=False)``; items are Samples.

    Subclasses set :attr:`info` and implement ``_index() -> list`` of records and
    ``_load(record) -> Sample``. ``skipped`` lists ``(message naming the file, stage)``
    pairs, stage ``"index"`` or ``"load"`` (per process: DataLoader workers keep their
    own copies).
    """

    info: DatasetInfo

    def __init__(self, root: str | Path, split: str, *, transform: Transform | None = None,
                 skip_bad: bool = False) -> None:
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.skip_bad = skip_bad
        self.skipped: list[tuple[str, str]] = []
        self._bad: set[int] = set()
        if not self.root.is_dir():
            raise DatasetError(f"dataset root is not a folder: {self.root}")
        self.records: list[Any] = list(self._index())
        if not self.records:
            raise DatasetError(f"no samples found for split {split!r} under {self.root}")

    # -- subclass hooks ------------------------------------------------------------
    def _index(self) -> Sequence[Any]:
        raise NotImplementedError

    def _load(self, record: Any) -> Sample:
        raise NotImplementedError

    # -- bad-sample policy ---------------------------------------------------------
    @property
    def num_skipped(self) -> int:
        """How many files/samples were skipped so far (in this process)."""
        return len(self.skipped)

    def _bad_file(self, error: DatasetError) -> None:
        """At index time: raise ``error`` or (``skip_bad``) record it and carry on."""
        if not self.skip_bad:
            raise error
        logger.warning("skipping bad sample: %s", error)
        self.skipped.append((str(error), "index"))

    def _check_files(self, *files: tuple[Path, str]) -> bool:
        """True when every ``(path, what)`` exists; otherwise reports the first missing one."""
        for path, what in files:
            if not path.is_file():
                self._bad_file(DatasetError(f"missing {what}: {path}"))
                return False
        return True

    # -- Dataset API -----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        n = len(self.records)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        index %= n
        for step in range(n):
            i = (index + step) % n
            if i in self._bad:
                continue
            try:
                sample = self._load(self.records[i])
            except DatasetError as err:
                if not self.skip_bad:
                    raise
                logger.warning("skipping bad sample: %s", err)
                self._bad.add(i)
                self.skipped.append((str(err), "load"))
                continue
            if self.transform is not None:
                sample = self.transform(sample)
            return sample
        raise DatasetError(f"every sample of split {self.split!r} under {self.root} is bad")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
                f"samples={len(self)}, skipped={self.num_skipped})")


# -- helpers shared by the readers -------------------------------------------------------
def check_semantic(semantic: np.ndarray, info: DatasetInfo, path: Path) -> None:
    """DatasetError naming ``path`` if a semantic id is neither a class nor the ignore label."""
    bad = (semantic != info.ignore_label) & ((semantic < 0) | (semantic >= info.num_classes))
    if bad.any():
        values = sorted({int(v) for v in np.unique(semantic[bad])})[:8]
        raise DatasetError(
            f"label {path} has semantic ids {values} outside [0, {info.num_classes}) that are "
            f"not the ignore label {info.ignore_label}")


def check_same_size(path: Path, label: np.ndarray, image: np.ndarray) -> None:
    """DatasetError naming ``path`` if a label/depth map and its image differ in size."""
    if label.shape[:2] != image.shape[:2]:
        raise DatasetError(
            f"{path} is {label.shape[1]}x{label.shape[0]} but its image is "
            f"{image.shape[1]}x{image.shape[0]}")


def crowd_from_panoptic(panoptic: np.ndarray, info: DatasetInfo) -> np.ndarray:
    """DeepLab2's crowd region: thing-class pixels whose instance id is 0."""
    semantic = panoptic // info.label_divisor
    things = np.isin(semantic, np.asarray(info.thing_class_ids, dtype=np.int64))
    return things & (panoptic % info.label_divisor == 0)


def image_tensor(*images: np.ndarray) -> torch.Tensor:
    """``[H, W, 3]`` uint8 arrays -> one ``[3 * n, H, W]`` uint8 tensor (frames stacked)."""
    stacked = np.concatenate(images, axis=2) if len(images) > 1 else images[0]
    return torch.from_numpy(np.ascontiguousarray(stacked.transpose(2, 0, 1)))


def label_tensor(panoptic: np.ndarray) -> torch.Tensor:
    """int32 ``[H, W]`` tensor of a panoptic map."""
    return torch.from_numpy(np.ascontiguousarray(panoptic, dtype=np.int32))


def bool_tensor(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.bool_))
