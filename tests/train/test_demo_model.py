"""The shipped demo model: packaged weights load offline and segment synthetic scenes."""
from __future__ import annotations

import json
from importlib.resources import files

import numpy as np
import pytest

from deeplab_zoo.data.synthetic import SYNTHETIC, SyntheticPanopticDataset
from deeplab_zoo.factory import create_model
from deeplab_zoo.metrics import PanopticQuality
from deeplab_zoo.registry import get_pretrained_cfg, list_pretrained

ASSETS = files("deeplab_zoo").joinpath("assets/demo")


@pytest.fixture(scope="module")
def model():
    # The weights ship with the package (scripts/train_demo_model.py writes them).
    return create_model("demo", pretrained=True)


def test_registered_and_small(model, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = get_pretrained_cfg("demo")
    assert cfg.name == "demo.synthetic" and cfg.url.startswith("package://")
    assert "demo.synthetic" in list_pretrained()
    size = ASSETS.joinpath("model.safetensors").stat().st_size
    assert size < 8e6
    meta = json.loads(ASSETS.joinpath("config.json").read_text())
    assert meta["metrics"]["pq"] >= 0.80 and meta["metrics"]["eval_images"] >= 100
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    create_model("demo", pretrained=True)  # no network involved


def test_segments_held_out_scenes(model) -> None:
    """A quick PQ check on 6 held-out scenes (the script measures 200)."""
    dataset = SyntheticPanopticDataset(6, (257, 385), seed=987_654)
    metric = PanopticQuality(SYNTHETIC.num_classes, SYNTHETIC.ignore_label,
                             SYNTHETIC.label_divisor, thing_classes=SYNTHETIC.thing_class_ids)
    predictions = model.predict([dataset[i]["image"] for i in range(len(dataset))])
    for i, prediction in enumerate(predictions):
        metric.update(dataset[i]["panoptic"].numpy(), prediction.panoptic)
        assert len({int(v) for v in np.unique(prediction.panoptic) if v % 1000}) >= 1
    assert metric.compute()["pq"] > 0.7
