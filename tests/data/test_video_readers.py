"""KITTI-STEP, MOTChallenge-STEP, Cityscapes-DVPS and SemKITTI-DVPS readers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_fakes import (
    H,
    W,
    make_cityscapes_dvps,
    make_semkitti_dvps,
    make_step,
    masks,
    sem_inst_to_rgb,
    step_label,
    write_png,
)

from deeplab_zoo.data.dvps import CityscapesDvps, SemKittiDvps
from deeplab_zoo.data.step import KittiStep, MotChallengeStep
from deeplab_zoo.errors import DatasetError


def expected(values: dict[str, int]) -> np.ndarray:
    m = masks()
    out = np.zeros((H, W), dtype=np.int64)
    for name in ("top", "bottom", "thing_a", "thing_b", "crowd", "void"):
        if name in values:
            out[m[name]] = values[name]
    return out


def step_expected(frame: int) -> np.ndarray:
    return expected({"top": 10000, "bottom": 0, "thing_a": 13300 + frame, "thing_b": 11002,
                     "crowd": 13000, "void": 255000})


def test_kitti_step_single_frames(tmp_path: Path) -> None:
    fake = make_step(tmp_path)
    ds = KittiStep(tmp_path, "train")
    assert len(ds) == 2
    sample = ds[1]
    assert sample["name"] == "0001_000001"
    assert sample["sequence"] == "0001" and sample["frame"] == 1
    np.testing.assert_array_equal(sample["image"].permute(1, 2, 0).numpy(), fake["images"][1])
    np.testing.assert_array_equal(sample["panoptic"].numpy(), step_expected(1))
    # Thing pixels with instance 0 are DeepLab2's crowd region.
    np.testing.assert_array_equal(sample["crowd"].numpy(), masks()["crowd"])
    assert "prev_panoptic" not in sample


def test_kitti_step_two_frames(tmp_path: Path) -> None:
    fake = make_step(tmp_path)
    ds = KittiStep(tmp_path, "train", two_frames=True)
    first, second = ds[0], ds[1]
    assert second["image"].shape == (6, H, W)
    np.testing.assert_array_equal(second["image"][3:].permute(1, 2, 0).numpy(),
                                  fake["images"][0])
    np.testing.assert_array_equal(second["prev_panoptic"].numpy(), step_expected(0))
    # The first frame is paired with itself.
    np.testing.assert_array_equal(first["image"][:3], first["image"][3:])
    np.testing.assert_array_equal(first["prev_panoptic"].numpy(), step_expected(0))


def test_motchallenge_step_jpg(tmp_path: Path) -> None:
    root = tmp_path
    semantic = np.where(masks()["top"], 3, 5)  # sky / road
    instance = np.zeros((H, W), dtype=np.int64)
    semantic[masks()["thing_a"]], instance[masks()["thing_a"]] = 4, 7
    from dataset_fakes import image_array, write_jpg

    write_jpg(root / "images" / "val" / "0002" / "000001.jpg", image_array(3))
    write_png(root / "panoptic_maps" / "val" / "0002" / "000001.png",
              sem_inst_to_rgb(semantic, instance))
    sample = MotChallengeStep(root, "val")[0]
    want = expected({"top": 3000, "bottom": 5000, "thing_a": 4007, "thing_b": 5000,
                     "crowd": 5000, "void": 5000})  # the fake paints only "top" as sky
    np.testing.assert_array_equal(sample["panoptic"].numpy(), want)
    assert not sample["crowd"].any()


def test_step_rejects_out_of_range_labels(tmp_path: Path) -> None:
    fake = make_step(tmp_path, frames=1)
    semantic, instance = step_label(0)
    instance[masks()["thing_a"]] = 1000  # would alias the next class with divisor 1000
    write_png(fake["labels"][0], sem_inst_to_rgb(semantic, instance))
    with pytest.raises(DatasetError, match="instance id 1000"):
        KittiStep(tmp_path, "train")[0]
    semantic[masks()["thing_a"]], instance[masks()["thing_a"]] = 30, 1
    write_png(fake["labels"][0], sem_inst_to_rgb(semantic, instance))
    with pytest.raises(DatasetError, match=r"semantic ids \[30\]"):
        KittiStep(tmp_path, "train")[0]


def test_step_test_split_has_no_labels(tmp_path: Path) -> None:
    make_step(tmp_path, split="test", frames=1)
    sample = KittiStep(tmp_path, "test")[0]
    assert set(sample) == {"image", "name", "sequence", "frame"}


def test_cityscapes_dvps_pairs(tmp_path: Path) -> None:
    fake = make_cityscapes_dvps(tmp_path, frames=3)
    ds = CityscapesDvps(tmp_path, "val")
    assert len(ds) == 2  # the last frame starts no pair
    sample = ds[0]
    assert sample["name"] == "000123_000000"
    assert sample["sequence"] == "000123" and sample["frame"] == 0
    assert sample["image"].shape == (6, H, W)
    np.testing.assert_array_equal(sample["image"][3:].permute(1, 2, 0).numpy(),
                                  fake["images"][1])
    base = {"top": 10000, "bottom": 0, "thing_b": 11005, "crowd": 13000, "void": 32000}
    np.testing.assert_array_equal(sample["panoptic"].numpy(), expected({**base, "thing_a": 13001}))
    np.testing.assert_array_equal(sample["next_panoptic"].numpy(),
                                  expected({**base, "thing_a": 13002}))
    np.testing.assert_array_equal(sample["crowd"].numpy(), masks()["crowd"])
    assert sample["depth"].dtype == torch.float32
    want_depth = np.where(masks()["void"], 0.0, 10.0)
    np.testing.assert_array_equal(sample["depth"].numpy(), want_depth)
    assert float(ds[1]["depth"][5, 5]) == 10.0 + 1 / 256


def test_cityscapes_dvps_missing_depth(tmp_path: Path) -> None:
    fake = make_cityscapes_dvps(tmp_path, frames=3)
    fake["depths"][1].unlink()
    with pytest.raises(DatasetError, match="000123_000001_depth.png"):
        CityscapesDvps(tmp_path, "val")
    ds = CityscapesDvps(tmp_path, "val", skip_bad=True)
    assert len(ds) == 1 and ds.num_skipped == 1 and ds[0]["name"] == "000123_000000"


@pytest.mark.parametrize("release_layout", [False, True])
def test_semkitti_dvps(tmp_path: Path, release_layout: bool) -> None:
    make_semkitti_dvps(tmp_path, release_layout=release_layout)
    ds = SemKittiDvps(tmp_path, "val")
    assert len(ds) == 1
    sample = ds[0]
    d = 65536
    want = expected({"top": 17 * d, "bottom": 9 * d, "thing_a": 258, "thing_b": d + 3,
                     "crowd": 9 * d, "void": 255 * d})
    np.testing.assert_array_equal(sample["panoptic"].numpy(), want)
    assert not sample["crowd"].any()
    assert torch.all(sample["depth"] == 2.0)
