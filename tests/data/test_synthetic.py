"""Synthetic scenes: registered labels, motion across frames, depth, pairs, transforms."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deeplab_zoo.data.datasets import get_dataset_info
from deeplab_zoo.data.synthetic import (
    SYNTHETIC,
    SyntheticPanopticDataset,
    make_scene,
    make_sequence,
)


def test_registered_dataset_info() -> None:
    info = get_dataset_info("synthetic")
    assert info is SYNTHETIC
    assert (info.num_classes, info.ignore_label, info.label_divisor) == (6, 255, 1000)
    assert info.thing_class_ids == (3, 4, 5)
    assert len(info.class_names) == len(info.colors) == 6


def test_scene_content() -> None:
    image, panoptic = make_scene(257, 385, seed=1, num_things=8)
    semantic = panoptic // 1000
    assert set(np.unique(semantic)) - {255} <= set(range(6))
    assert {0, 2} <= set(np.unique(semantic))  # road and sky always
    ids = [i for i in np.unique(panoptic) if i // 1000 in SYNTHETIC.thing_class_ids]
    assert len(ids) >= 4 and all(i % 1000 > 0 for i in ids)
    for pid in ids:  # things are well-sized (visible >= 150 px) and textured
        assert (panoptic == pid).sum() >= 150
    assert image[semantic == 0].std() > 5
    again, again_panoptic = make_scene(257, 385, seed=1, num_things=8)
    assert np.array_equal(again, image) and np.array_equal(again_panoptic, panoptic)
    with pytest.raises(ValueError, match="at least 8x8"):
        make_scene(4, 100)


def test_things_move_and_keep_ids() -> None:
    frames = make_sequence(129, 193, seed=4, num_things=5, frames=3, max_speed=3.0)
    ids = [set(np.unique(p)) for _, p, _ in frames]
    common = {i for i in ids[0] & ids[2] if i % 1000}
    assert common
    moved = [i for i in common
             if not np.array_equal(frames[0][1] == i, frames[2][1] == i)]
    assert moved
    _, _, depth = frames[0]
    sky = frames[0][1] // 1000 == 2
    assert (depth[sky] == 0).all() and (depth[~sky & (frames[0][1] != 255000)] > 0).all()


def test_dataset_pairs_next_and_transform() -> None:
    ds = SyntheticPanopticDataset(2, (41, 57), seed=3, frames=2, pair="next",
                                  transform=lambda s: {**s, "tag": 1})
    assert len(ds) == 4
    first, last = ds[0], ds[1]
    assert torch.equal(first["next_panoptic"], last["panoptic"])
    assert torch.equal(last["next_panoptic"], last["panoptic"])  # last frame pairs with itself
    assert first["image"].shape == (6, 41, 57) and first["tag"] == 1
    assert (first["sequence"], first["frame"], last["frame"]) == ("3_000000", 0, 1)
    assert torch.equal(ds[-1]["panoptic"], ds[3]["panoptic"])
    with pytest.raises(IndexError):
        ds[4]
    with pytest.raises(ValueError, match="pair"):
        SyntheticPanopticDataset(1, pair="both")
    counts = [len([i for i in np.unique(SyntheticPanopticDataset(
        1, (129, 193), seed=s, num_things=(2, 2))[0]["panoptic"]) if i % 1000])
        for s in range(3)]
    assert max(counts) <= 2
