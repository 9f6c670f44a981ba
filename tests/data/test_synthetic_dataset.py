"""The synthetic panoptic dataset the demo, the evaluate CLI and tests use."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deeplab_zoo.data import build_dataset
from deeplab_zoo.data.synthetic import SYNTHETIC, SyntheticPanopticDataset, make_scene


def test_deterministic_and_well_formed():
    a = build_dataset("synthetic", num_images=3, size=(65, 97), seed=7)
    b = SyntheticPanopticDataset(3, (65, 97), seed=7)
    assert len(a) == 3 and a.info is SYNTHETIC
    for i in range(3):
        sa, sb = a[i], b[i]
        assert torch.equal(sa["image"], sb["image"]) and torch.equal(sa["panoptic"], sb["panoptic"])
        assert sa["image"].dtype == torch.uint8 and sa["image"].shape == (3, 65, 97)
        panoptic = sa["panoptic"].numpy()
        semantic, instance = panoptic // SYNTHETIC.label_divisor, panoptic % SYNTHETIC.label_divisor
        valid = semantic != SYNTHETIC.ignore_label
        assert set(np.unique(semantic[valid])) <= set(range(SYNTHETIC.num_classes))
        things = np.isin(semantic, SYNTHETIC.thing_class_ids)
        assert (instance[valid & ~things] == 0).all()  # stuff has instance 0
        assert (instance[things] > 0).all()
    other = SyntheticPanopticDataset(1, (65, 97), seed=8)[0]
    assert not torch.equal(other["image"], a[0]["image"])


def test_video_pairs_and_depth():
    ds = SyntheticPanopticDataset(1, (33, 49), seed=0, frames=3, depth=True)
    assert len(ds) == 3
    sample = ds[1]
    assert sample["image"].shape == (6, 33, 49)
    assert torch.equal(sample["prev_panoptic"], ds[0]["panoptic"])
    assert sample["depth"].dtype == torch.float32 and (sample["depth"] >= 0).all()


def test_make_scene_and_errors():
    image, panoptic = make_scene(40, 60, seed=3)
    assert image.shape == (40, 60, 3) and image.dtype == np.uint8 and panoptic.shape == (40, 60)
    with pytest.raises(ValueError):
        SyntheticPanopticDataset(-1)
    with pytest.raises(ValueError):
        SyntheticPanopticDataset(1, frames=0)
