"""Cityscapes, COCO, ADE20K and custom COCO-panoptic readers against hand-computed labels."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_fakes import H, W, make_ade20k, make_cityscapes, make_coco, make_custom, masks

from deeplab_zoo.data.ade20k import Ade20kPanoptic
from deeplab_zoo.data.cityscapes import CityscapesPanoptic
from deeplab_zoo.data.coco import COCO_CONTIGUOUS_TO_ID, COCO_ID_TO_CONTIGUOUS, CocoPanoptic
from deeplab_zoo.data.custom import CustomPanopticDataset
from deeplab_zoo.errors import DatasetError


def expected(values: dict[str, int]) -> np.ndarray:
    m = masks()
    out = np.zeros((H, W), dtype=np.int64)
    for name in ("top", "bottom", "thing_a", "thing_b", "crowd", "void"):
        out[m[name]] = values[name]
    return out


def test_cityscapes_panoptic_labels(tmp_path: Path) -> None:
    fake = make_cityscapes(tmp_path)
    ds = CityscapesPanoptic(tmp_path, "val")
    assert len(ds) == 1
    sample = ds[0]
    assert sample["name"] == "aachen_000000_000019"
    assert sample["image"].dtype == torch.uint8 and sample["image"].shape == (3, H, W)
    np.testing.assert_array_equal(sample["image"].permute(1, 2, 0).numpy(), fake["image"])
    assert sample["panoptic"].dtype == torch.int32
    # JSON order numbers the cars: 26001 is instance 1, 26000 instance 2; crowd -> void.
    want = expected({"top": 10000, "bottom": 0, "thing_a": 13002, "thing_b": 13001,
                     "crowd": 255000, "void": 255000})
    np.testing.assert_array_equal(sample["panoptic"].numpy(), want)
    np.testing.assert_array_equal(sample["crowd"].numpy(), masks()["crowd"])


def test_cityscapes_crowd_kept(tmp_path: Path) -> None:
    make_cityscapes(tmp_path)
    sample = CityscapesPanoptic(tmp_path, "val", treat_crowd_as_ignore=False)[0]
    want = expected({"top": 10000, "bottom": 0, "thing_a": 13002, "thing_b": 13001,
                     "crowd": 11000, "void": 255000})
    np.testing.assert_array_equal(sample["panoptic"].numpy(), want)
    np.testing.assert_array_equal(sample["crowd"].numpy(), masks()["crowd"])


def test_cityscapes_test_split_has_no_labels(tmp_path: Path) -> None:
    make_cityscapes(tmp_path, split="test")
    shutil.rmtree(tmp_path / "gtFine")
    sample = CityscapesPanoptic(tmp_path, "test")[0]
    assert set(sample) == {"image", "name"}


def test_cityscapes_missing_json_names_it(tmp_path: Path) -> None:
    fake = make_cityscapes(tmp_path)
    fake["json"].unlink()
    with pytest.raises(DatasetError, match="cityscapes_panoptic_val_trainId.json"):
        CityscapesPanoptic(tmp_path, "val")


def test_coco_category_mapping() -> None:
    assert len(COCO_ID_TO_CONTIGUOUS) == 133
    assert COCO_ID_TO_CONTIGUOUS[1] == 1 and COCO_ID_TO_CONTIGUOUS[90] == 80
    assert COCO_ID_TO_CONTIGUOUS[92] == 81 and COCO_ID_TO_CONTIGUOUS[200] == 133
    assert COCO_ID_TO_CONTIGUOUS[187] == 120
    assert COCO_CONTIGUOUS_TO_ID[120] == 187 and COCO_CONTIGUOUS_TO_ID[0] == 0


def test_coco_panoptic_labels(tmp_path: Path) -> None:
    make_coco(tmp_path)
    ds = CocoPanoptic(tmp_path, "val")
    sample = ds[0]
    assert sample["name"] == "000000000139"
    assert sample["image"].shape == (3, H, W)
    # divisor 256: sky-other-merged 187 -> 120, wall-other-merged 199 -> 132, person 1,
    # car 3, crowd person -> void 0.
    want = expected({"top": 120 * 256, "bottom": 132 * 256, "thing_a": 257, "thing_b": 769,
                     "crowd": 0, "void": 0})
    np.testing.assert_array_equal(sample["panoptic"].numpy(), want)
    np.testing.assert_array_equal(sample["crowd"].numpy(), masks()["crowd"])


def test_coco_unknown_category_is_an_error(tmp_path: Path) -> None:
    fake = make_coco(tmp_path)
    data = json.loads(fake["json"].read_text())
    data["annotations"][0]["segments_info"][0]["category_id"] = 12  # not a panoptic id
    fake["json"].write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="unknown category_id 12"):
        CocoPanoptic(tmp_path, "val")[0]


def test_area_mismatch_names_the_png(tmp_path: Path) -> None:
    fake = make_coco(tmp_path)
    data = json.loads(fake["json"].read_text())
    data["annotations"][0]["segments_info"][2]["area"] += 1
    fake["json"].write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="000000000139.png"):
        CocoPanoptic(tmp_path, "val")[0]


def test_ade20k_panoptic_labels(tmp_path: Path) -> None:
    make_ade20k(tmp_path)
    sample = Ade20kPanoptic(tmp_path, "val")[0]  # stuff area mismatch is not checked
    want = expected({"top": 1000, "bottom": 4000, "thing_a": 13001, "thing_b": 13002,
                     "crowd": 0, "void": 0})
    np.testing.assert_array_equal(sample["panoptic"].numpy(), want)
    assert not sample["crowd"].any()


def test_custom_dataset(tmp_path: Path) -> None:
    fake = make_custom(tmp_path)
    ds = CustomPanopticDataset(tmp_path, "train")
    assert ds.info.num_classes == 3 and ds.info.ignore_label == 0
    assert ds.info.thing_class_ids == (1,)
    assert ds.info.class_names == ("void", "cat", "grass")
    assert ds.info.colors == ((0, 0, 0), (255, 0, 0), (0, 255, 0))
    sample = ds[0]
    assert sample["name"] == "frame_a"
    np.testing.assert_array_equal(sample["image"].permute(1, 2, 0).numpy(), fake["image"])
    want = expected({"top": 2000, "bottom": 2000, "thing_a": 1001, "thing_b": 1002,
                     "crowd": 0, "void": 0})
    np.testing.assert_array_equal(sample["panoptic"].numpy(), want)
    np.testing.assert_array_equal(sample["crowd"].numpy(), masks()["crowd"])


def test_custom_dataset_options(tmp_path: Path) -> None:
    make_custom(tmp_path)
    ds = CustomPanopticDataset(tmp_path, "train", category_ids=[9, 5], label_divisor=256,
                               treat_crowd_as_ignore=False)
    want = expected({"top": 256, "bottom": 256, "thing_a": 513, "thing_b": 514,
                     "crowd": 512, "void": 0})
    np.testing.assert_array_equal(ds[0]["panoptic"].numpy(), want)


def test_deeplab2_golden_cityscapes_label(tmp_path: Path) -> None:
    """Optional: DeepLab2's own test fixture (set DEEPLAB2_SRC to a deeplab2 checkout)."""
    src = os.environ.get("DEEPLAB2_SRC")
    testdata = Path(src or "/nonexistent") / "data" / "testdata"
    if not (testdata / "dummy_gt_for_vps.png").is_file():
        pytest.skip("DEEPLAB2_SRC not set (DeepLab2 checkout with data/testdata)")
    from PIL import Image

    prefix = "dummy_000000_000000"
    city = tmp_path / "leftImg8bit" / "dummy" / "dummy"
    city.mkdir(parents=True)
    shutil.copy(testdata / "leftImg8bit" / f"{prefix}_leftImg8bit.png", city)
    shutil.copytree(testdata / "gtFine", tmp_path / "gtFine")
    sample = CityscapesPanoptic(tmp_path, "dummy", treat_crowd_as_ignore=False)[0]
    golden = np.asarray(Image.open(testdata / "dummy_gt_for_vps.png")).astype(np.int64)
    golden = golden @ np.array([1, 256, 65536])
    np.testing.assert_array_equal(sample["panoptic"].numpy(), golden)
