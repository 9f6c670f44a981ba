"""PASCAL VOC 2012 (+SBD) reader on a tiny synthetic devkit written by the test."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deeplab_zoo.data.datasets import get_dataset_info
from deeplab_zoo.data.voc import VOC_COLORS, PascalVOCSemantic, colorize, voc_colormap
from deeplab_zoo.errors import DatasetError


def _write_sample(root: Path, name: str, label: np.ndarray, *, label_dir: str,
                  size: tuple[int, int] | None = None) -> None:
    height, width = size or label.shape
    rng = np.random.default_rng(len(name))
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(image).save(root / "JPEGImages" / f"{name}.jpg", quality=95)
    png = Image.fromarray(label.astype(np.uint8), mode="P")
    png.putpalette(voc_colormap().reshape(-1).tolist())
    (root / label_dir).mkdir(exist_ok=True)
    png.save(root / label_dir / f"{name}.png")


@pytest.fixture()
def devkit(tmp_path: Path) -> Path:
    """VOCdevkit/VOC2012 with train (2), val (1) and train_aug (3, SBD labels) splits."""
    root = tmp_path / "VOCdevkit" / "VOC2012"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    labels = {}
    for i, name in enumerate(["2007_000032", "2007_000039", "2008_000123"]):
        label = np.zeros((7 + i, 9), dtype=np.uint8)
        label[1:4, 2:5] = 1 + 7 * i  # an object
        label[0, :] = 255  # boundary / void
        labels[name] = label
        _write_sample(root, name, label, label_dir="SegmentationClass")
    aug = labels["2007_000032"].copy()
    aug[5, 5] = 20
    _write_sample(root, "2011_000001", aug, label_dir="SegmentationClassAug")
    for name in ("2007_000032", "2007_000039"):
        Image.open(root / "SegmentationClass" / f"{name}.png").save(
            root / "SegmentationClassAug" / f"{name}.png")
    splits = {"train": ["2007_000032", "2007_000039"], "val": ["2008_000123"],
              "train_aug": ["2007_000032", "2007_000039", "2011_000001"]}
    for split, names in splits.items():
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(
            "\n".join(names) + "\n")
    return tmp_path / "VOCdevkit"


def test_palette_and_descriptor():
    colors = voc_colormap()
    assert colors.dtype == np.uint8 and colors.shape == (256, 3)
    assert colors[:6].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0],
                                   [0, 0, 128], [128, 0, 128]]
    assert colors[15].tolist() == [192, 128, 128]  # person
    assert colors[255].tolist() == [224, 224, 192]  # void / boundary
    info = get_dataset_info("voc")
    assert (info.num_classes, info.ignore_label, info.label_divisor) == (21, 255, 1)
    assert len(info.class_names) == 21 and info.class_names[15] == "person"
    assert info.colors == VOC_COLORS and len(VOC_COLORS) == 21
    assert colorize(np.array([[0, 15], [255, 1]])).tolist() == [
        [[0, 0, 0], [192, 128, 128]], [[224, 224, 192], [128, 0, 0]]]


def test_reads_splits(devkit: Path):
    train = PascalVOCSemantic(devkit, "train")  # VOCdevkit or VOCdevkit/VOC2012 both work
    assert len(train) == 2 and train.root.name == "VOC2012"
    sample = train[1]
    assert sample["name"] == "2007_000039"
    assert tuple(sample["image"].shape) == (3, 8, 9) and str(sample["image"].dtype) == "torch.uint8"
    panoptic = sample["panoptic"].numpy()
    assert panoptic.dtype == np.int32
    assert set(np.unique(panoptic).tolist()) == {0, 8, 255}  # palette index = class id
    assert not sample["crowd"].any()
    val = PascalVOCSemantic(devkit / "VOC2012", "val")
    assert [r[0] for r in val.records] == ["2008_000123"]
    aug = PascalVOCSemantic(devkit, "train_aug")
    assert aug.records[0][2].parent.name == "SegmentationClassAug"
    assert aug[2]["panoptic"].numpy()[5, 5] == 20


def test_raw_labels_are_preferred(devkit: Path):
    root = devkit / "VOC2012"
    (root / "SegmentationClassRaw").mkdir()
    for name in ("2007_000032", "2007_000039"):  # research/deeplab's palette-free copies
        label = np.asarray(Image.open(root / "SegmentationClass" / f"{name}.png"))
        Image.fromarray(label, mode="L").save(root / "SegmentationClassRaw" / f"{name}.png")
    train = PascalVOCSemantic(devkit, "train")
    assert train.records[0][2].parent.name == "SegmentationClassRaw"
    assert set(np.unique(train[0]["panoptic"].numpy()).tolist()) == {0, 1, 255}
    custom = PascalVOCSemantic(devkit, "train", label_dir="SegmentationClass")
    assert custom.records[0][2].parent.name == "SegmentationClass"


def test_missing_files_are_named(devkit: Path):
    root = devkit / "VOC2012"
    (root / "JPEGImages" / "2007_000039.jpg").unlink()
    with pytest.raises(DatasetError, match="2007_000039.jpg"):
        PascalVOCSemantic(devkit, "train")
    dataset = PascalVOCSemantic(devkit, "train", skip_bad=True)
    assert len(dataset) == 1 and dataset.num_skipped == 1
    with pytest.raises(DatasetError, match=r"test\.txt"):
        PascalVOCSemantic(devkit, "test")
    empty = devkit / "nothing_here"
    empty.mkdir()
    with pytest.raises(DatasetError, match="JPEGImages"):
        PascalVOCSemantic(empty, "train")


def test_bad_labels_are_named(devkit: Path):
    root = devkit / "VOC2012"
    bad = np.zeros((7, 9), dtype=np.uint8)
    bad[2, 2] = 30  # not a VOC class, not void
    Image.fromarray(bad, mode="L").save(root / "SegmentationClass" / "2007_000032.png")
    Image.fromarray(np.zeros((5, 5), np.uint8), mode="L").save(
        root / "SegmentationClass" / "2008_000123.png")  # wrong size
    (root / "SegmentationClass" / "2007_000039.png").write_bytes(b"not a png")
    train = PascalVOCSemantic(devkit, "train")
    with pytest.raises(DatasetError, match=r"2007_000032\.png.*\[30\]"):
        train[0]
    with pytest.raises(DatasetError, match=r"2007_000039\.png"):
        train[1]
    with pytest.raises(DatasetError, match=r"2008_000123\.png is 5x5"):
        PascalVOCSemantic(devkit, "val")[0]
    skipping = PascalVOCSemantic(devkit, "train", skip_bad=True)
    with pytest.raises(DatasetError, match="every sample"):
        skipping[0]
    assert skipping.num_skipped == 2


def test_malformed_split_list(devkit: Path):
    root = devkit / "VOC2012"
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000032 extra\n")
    with pytest.raises(DatasetError, match=r"train\.txt:1"):
        PascalVOCSemantic(devkit, "train")
