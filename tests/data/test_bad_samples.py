"""Missing and corrupt files raise DatasetError naming the file, or are skipped and counted."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from dataset_fakes import image_array, make_cityscapes, make_coco, make_step, write_png

from deeplab_zoo.data import io
from deeplab_zoo.data.cityscapes import CityscapesPanoptic
from deeplab_zoo.data.coco import CocoPanoptic
from deeplab_zoo.data.step import KittiStep
from deeplab_zoo.errors import DatasetError

STEMS = ("000000000139", "000000000285", "000000000632")


def corrupt(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_io_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    with pytest.raises(DatasetError, match=re.escape(str(missing))):
        io.read_image(missing)
    with pytest.raises(DatasetError, match=re.escape(str(missing))):
        io.require_file(missing, "label")
    bad = write_png(tmp_path / "bad.png", image_array())
    corrupt(bad)
    with pytest.raises(DatasetError, match=re.escape(str(bad))):
        io.read_label_png(bad)
    cut = write_png(tmp_path / "cut.png", image_array())
    truncate(cut)
    with pytest.raises(DatasetError, match=re.escape(str(cut))):
        io.read_image(cut)
    grey = write_png(tmp_path / "grey.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DatasetError, match="RGB label"):
        io.read_rgb_label(grey)
    assert io.read_image(grey).shape == (4, 4, 3)  # images are converted to RGB
    js = tmp_path / "broken.json"
    js.write_text("{not json")
    with pytest.raises(DatasetError, match=re.escape(str(js))):
        io.read_json(js)


def test_missing_label_raises_at_construction(tmp_path: Path) -> None:
    fake = make_coco(tmp_path, stems=STEMS)
    fake["pngs"][STEMS[1]].unlink()
    with pytest.raises(DatasetError, match=re.escape(str(fake["pngs"][STEMS[1]]))):
        CocoPanoptic(tmp_path, "val")
    ds = CocoPanoptic(tmp_path, "val", skip_bad=True)
    assert len(ds) == 2 and ds.num_skipped == 1
    assert STEMS[1] in ds.skipped[0][0]
    assert [ds[i]["name"] for i in range(2)] == [STEMS[0], STEMS[2]]


def test_image_without_annotation(tmp_path: Path) -> None:
    make_coco(tmp_path, stems=STEMS[:1])
    write_png(tmp_path / "val2017" / "extra.png", image_array())  # not a .jpg: ignored
    from dataset_fakes import write_jpg

    write_jpg(tmp_path / "val2017" / "000000000999.jpg", image_array())
    with pytest.raises(DatasetError, match="000000000999.jpg"):
        CocoPanoptic(tmp_path, "val")
    assert len(CocoPanoptic(tmp_path, "val", skip_bad=True)) == 1


def test_corrupt_label_raises_or_is_skipped(tmp_path: Path) -> None:
    fake = make_coco(tmp_path, stems=STEMS)
    bad = fake["pngs"][STEMS[1]]
    corrupt(bad)
    ds = CocoPanoptic(tmp_path, "val")
    ds[0]
    with pytest.raises(DatasetError, match=re.escape(str(bad))):
        ds[1]
    ds = CocoPanoptic(tmp_path, "val", skip_bad=True)
    assert len(ds) == 3
    assert ds[1]["name"] == STEMS[2]  # replaced by the next good sample
    assert ds.num_skipped == 1 and str(bad) in ds.skipped[0][0]
    assert ds[1]["name"] == STEMS[2] and ds.num_skipped == 1  # remembered, not re-read


def test_corrupt_image_and_size_mismatch(tmp_path: Path) -> None:
    fake = make_step(tmp_path, frames=2)
    image = tmp_path / "images" / "train" / "0001" / "000000.png"
    truncate(image)
    with pytest.raises(DatasetError, match=re.escape(str(image))):
        KittiStep(tmp_path, "train")[0]
    write_png(image, np.zeros((16, 48, 3), np.uint8))
    with pytest.raises(DatasetError, match=re.escape(str(fake["labels"][0]))):
        KittiStep(tmp_path, "train")[0]


def test_all_bad_is_an_error(tmp_path: Path) -> None:
    fake = make_cityscapes(tmp_path)
    corrupt(fake["png"])
    ds = CityscapesPanoptic(tmp_path, "val", skip_bad=True)
    with pytest.raises(DatasetError, match="every sample"):
        ds[0]


def test_missing_root_and_empty_split(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a folder"):
        CityscapesPanoptic(tmp_path / "absent", "val")
    (tmp_path / "leftImg8bit" / "test").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no samples"):
        CityscapesPanoptic(tmp_path, "test")
    with pytest.raises(DatasetError, match="image folder"):
        CityscapesPanoptic(tmp_path, "train")


def test_training_stops_on_a_corrupt_file_or_skips_it(tmp_path: Path) -> None:
    """`deeplab-zoo train` on real-format data: a corrupt label stops the run with the file
    named; with skip_bad_samples the run goes on without it."""
    from deeplab_zoo.train import TrainConfig, Trainer

    fake = make_coco(tmp_path / "coco", split="train", stems=STEMS)
    bad = fake["pngs"][STEMS[0]]
    corrupt(bad)
    config = TrainConfig(model="demo", dataset="coco", data_dir=str(tmp_path / "coco"),
                         steps=2, batch_size=2, crop_size=(33, 33), save_every=2,
                         log_every=1, progress=False)
    with pytest.raises(DatasetError, match=re.escape(str(bad))):
        Trainer(config, tmp_path / "strict", device="cpu").run()
    summary = Trainer(config.replace(skip_bad_samples=True), tmp_path / "lenient",
                      device="cpu").run()
    assert summary["step"] == 2 and (tmp_path / "lenient" / "model.safetensors").is_file()
