"""The ``build_dataset`` registry."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from dataset_fakes import make_cityscapes, make_step

from deeplab_zoo.data import DATASET_NAMES, build_dataset
from deeplab_zoo.data.cityscapes import CityscapesPanoptic
from deeplab_zoo.data.step import KittiStep, MotChallengeStep
from deeplab_zoo.data.transforms import RandomHorizontalFlip


def test_names() -> None:
    assert set(DATASET_NAMES) >= {"cityscapes", "coco", "kitti_step", "motchallenge_step",
                                  "cityscapes_dvps", "semkitti_dvps", "ade20k", "custom",
                                  "synthetic"}
    with pytest.raises(ValueError, match="unknown dataset"):
        build_dataset("pascal", "/tmp", "train")
    with pytest.raises(ValueError, match="root"):
        build_dataset("coco", None, "val")


def test_builds_readers_with_options(tmp_path: Path) -> None:
    make_cityscapes(tmp_path)
    ds = build_dataset("cityscapes_panoptic", tmp_path, "val", skip_bad=True,
                       transform=RandomHorizontalFlip(1.0))
    assert isinstance(ds, CityscapesPanoptic) and ds.skip_bad
    assert ds.info.label_divisor == 1000
    raw = CityscapesPanoptic(tmp_path, "val")[0]
    assert torch.equal(ds[0]["panoptic"], raw["panoptic"].flip(-1))
    make_step(tmp_path / "step", frames=2)
    assert isinstance(build_dataset("kitti_step", tmp_path / "step", "train", two_frames=True),
                      KittiStep)
    assert isinstance(build_dataset("motchallenge_step", tmp_path / "step", "train"),
                      MotChallengeStep)


def test_synthetic_is_delegated() -> None:
    from deeplab_zoo.data import synthetic

    if not hasattr(synthetic, "SyntheticPanopticDataset"):
        pytest.skip("synthetic.SyntheticPanopticDataset not available yet")
    ds = build_dataset("synthetic", num_images=2, size=(33, 49), seed=0)
    assert isinstance(ds, synthetic.SyntheticPanopticDataset) and len(ds) == 2


def test_default_loader_collates(tmp_path: Path) -> None:
    make_step(tmp_path, frames=2)
    ds = build_dataset("kitti_step", tmp_path, "train")
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["image"].shape == (2, 3, 32, 48) and batch["panoptic"].dtype == torch.int32
    assert batch["sequence"] == ["0001", "0001"] and batch["frame"].tolist() == [0, 1]
