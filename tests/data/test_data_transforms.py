"""Augmentation transforms: DeepLab2's scale grid, pad values, crop offsets, flip, resize."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deeplab_zoo.data.datasets import get_dataset_info
from deeplab_zoo.data.transforms import (
    AutoAugmentColor,
    Compose,
    Pad,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    Resize,
    deeplab2_eval_transform,
    deeplab2_train_transform,
    get_random_scale,
    resize_nearest,
    resize_to_range_size,
)

VOID = 255 * 1000


def make_sample(h: int = 32, w: int = 48, channels: int = 3, depth: bool = False) -> dict:
    g = torch.Generator().manual_seed(0)
    panoptic = torch.randint(0, 19, (h, w), generator=g, dtype=torch.int32) * 1000
    panoptic[4:12, 6:20] = 13001
    panoptic[14:30, 22:40] = 13002
    sample = {
        "image": torch.randint(0, 256, (channels, h, w), generator=g, dtype=torch.uint8),
        "panoptic": panoptic,
        "crowd": torch.zeros(h, w, dtype=torch.bool),
        "name": "x",
    }
    sample["crowd"][0:3, 0:3] = True
    if channels == 6:
        sample["next_panoptic"] = panoptic.clone()
    if depth:
        sample["depth"] = torch.full((h, w), 10.0)
    return sample


def test_random_scale_grid() -> None:
    g = torch.Generator().manual_seed(0)
    draws = {get_random_scale(0.5, 2.0, 0.1, g) for _ in range(400)}
    grid = {float(np.float32(v)) for v in np.linspace(0.5, 2.0, 16)}
    assert draws == grid  # int((2.0 - 0.5) / 0.1 + 1) = 16 values, all drawn
    assert get_random_scale(0.75, 0.75, 0.1) == 0.75
    uniform = [get_random_scale(0.5, 1.5, 0, g) for _ in range(100)]
    assert 0.5 <= min(uniform) and max(uniform) < 1.5 and len(set(uniform)) > 90
    with pytest.raises(ValueError):
        get_random_scale(2.0, 1.0, 0.1)


def test_tf_nearest_align_corners() -> None:
    # in 4 -> out 7: positions 0, .5, 1, 1.5, 2, 2.5, 3 round half away from zero.
    row = torch.arange(4)[None].expand(2, 4)
    out = resize_nearest(row, (2, 7))
    assert out[0].tolist() == [0, 1, 1, 2, 2, 3, 3]
    out = resize_nearest(torch.arange(7)[None], (1, 3))
    assert out[0].tolist() == [0, 3, 6]


def test_random_scale_sizes_and_labels() -> None:
    sample = make_sample(depth=True)
    out = RandomScale(1.5, 1.5, 0)(sample)
    assert out["image"].shape == (3, 48, 72) and out["image"].dtype == torch.float32
    assert out["panoptic"].shape == (48, 72) and out["panoptic"].dtype == torch.int32
    assert set(out["panoptic"].unique().tolist()) <= set(sample["panoptic"].unique().tolist())
    assert out["crowd"].dtype == torch.bool
    # Depth is divided by the scale in DeepLab2's 1/256 m steps: floor(2560 / 1.5) / 256.
    assert torch.all(out["depth"] == np.floor(2560 / np.float32(1.5)) / 256)
    # Corners are kept exactly (align_corners).
    assert torch.equal(out["image"][:, 0, 0], sample["image"][:, 0, 0].float())
    assert torch.equal(out["image"][:, -1, -1], sample["image"][:, -1, -1].float())
    small = RandomScale(0.7, 0.7, 0)(sample)  # int(32 * 0.7) = 22, int(48 * 0.7) = 33
    assert small["image"].shape == (3, 22, 33)
    same = RandomScale(1.0, 1.0, 0)(sample)
    assert same["image"].dtype == torch.float32 and torch.equal(same["panoptic"],
                                                                sample["panoptic"])


def test_random_crop_pads_with_deeplab2_values() -> None:
    sample = make_sample(depth=True)
    crop = RandomCrop((40, 64), ignore_label=255, label_divisor=1000)
    for seed in range(20):
        out = crop(sample, torch.Generator().manual_seed(seed))
        assert out["image"].shape == (3, 40, 64) and out["image"].dtype == torch.float32
        pad = out["panoptic"] == VOID
        assert int(pad.sum()) == 40 * 64 - 32 * 48  # the fake has no void pixels
        assert torch.all(out["image"][:, pad] == 127.5)
        assert not out["crowd"][pad].any() and torch.all(out["depth"][pad] == 0)
        rows = torch.nonzero(~pad.all(1))[:, 0]
        cols = torch.nonzero(~pad.all(0))[:, 0]
        top, left = int(rows[0]), int(cols[0])
        # DeepLab2 draws the pad offset in [0, margin): the bottom/right pad is >= 1.
        assert top <= 40 - 32 - 1 and left <= 64 - 48 - 1
        window = (slice(top, top + 32), slice(left, left + 48))
        assert torch.equal(out["image"][(slice(None), *window)], sample["image"].float())
        assert torch.equal(out["panoptic"][window], sample["panoptic"])
        assert torch.equal(out["crowd"][window], sample["crowd"])


def test_random_crop_window_without_padding() -> None:
    sample = make_sample()
    sample["panoptic"] = torch.arange(32 * 48, dtype=torch.int32).reshape(32, 48)
    offsets = set()
    for seed in range(60):
        out = RandomCrop((16, 40), image_pad=128)(sample, torch.Generator().manual_seed(seed))
        assert out["image"].dtype == torch.uint8  # integral pad value keeps uint8
        first = int(out["panoptic"][0, 0])
        top, left = divmod(first, 48)
        assert torch.equal(out["panoptic"], sample["panoptic"][top:top + 16, left:left + 40])
        assert torch.equal(out["image"], sample["image"][:, top:top + 16, left:left + 40])
        offsets.add((top, left))
    assert {t for t, _ in offsets} <= set(range(17)) and {x for _, x in offsets} <= set(range(9))
    assert len(offsets) > 10


def test_flip_keeps_ids() -> None:
    sample = make_sample(channels=6, depth=True)
    out = RandomHorizontalFlip(1.0)(sample)
    for key in ("image", "panoptic", "next_panoptic", "crowd", "depth"):
        assert torch.equal(out[key], sample[key].flip(-1))
    assert sorted(out["panoptic"].unique().tolist()) == sorted(sample["panoptic"].unique().tolist())
    assert RandomHorizontalFlip(0.0)(sample) is sample


def test_resize_to_range_sizes() -> None:
    assert resize_to_range_size(1024, 2048, max_size=(1025, 2049)) == (1024, 2048)
    assert resize_to_range_size(2000, 1000, max_size=(1025, 2049)) == (1025, 512)
    assert resize_to_range_size(2000, 1000, max_size=(1025, 2049), factor=4) == (1025, 513)
    assert resize_to_range_size(100, 200, min_size=200) == (200, 400)
    assert resize_to_range_size(100, 200, min_size=200, max_size=300) == (150, 300)


def test_eval_resize_and_pad() -> None:
    info = get_dataset_info("cityscapes")
    out = deeplab2_eval_transform((33, 49), info)(make_sample())
    assert out["image"].shape == (3, 33, 49) and out["image"].dtype == torch.float32
    assert torch.all(out["image"][:, 32, :] == 127.5) and torch.all(out["image"][:, :, 48] == 127.5)
    assert torch.all(out["panoptic"][32, :] == VOID)
    shrunk = Resize(max_size=(16, 48))(make_sample())
    assert shrunk["image"].shape == (3, 16, 24)
    with pytest.raises(ValueError):
        Pad((16, 16))(make_sample())
    with pytest.raises(ValueError, match="depth"):
        Resize(max_size=(16, 48))(make_sample(depth=True))


def test_train_transform_is_deterministic() -> None:
    info = get_dataset_info("cityscapes_dvps")
    t = deeplab2_train_transform((24, 40), info, min_scale=0.5, max_scale=2.0, scale_step=0.1,
                                 autoaugment_policy="simple_classification_policy")
    assert [type(s).__name__ for s in t.transforms] == [
        "RandomScale", "AutoAugmentColor", "RandomCrop", "RandomHorizontalFlip"]
    sample = make_sample(channels=6, depth=True)
    results = [t(sample, torch.Generator().manual_seed(3)) for _ in range(2)]
    for key in ("image", "panoptic", "next_panoptic", "crowd", "depth"):
        assert torch.equal(results[0][key], results[1][key])
    assert results[0]["image"].shape == (6, 24, 40)
    # DVPS pads labels with its own ignore label 32.
    padded = RandomCrop.for_dataset((40, 64), info)(sample, torch.Generator().manual_seed(0))
    assert int(padded["panoptic"].max()) == 32000
    others = {tuple(t(sample, torch.Generator().manual_seed(s))["panoptic"].shape)
              for s in range(5)}
    assert others == {(24, 40)}


def test_compose_accepts_plain_callables() -> None:
    seen = []
    t = Compose([lambda s: seen.append(1) or s, RandomHorizontalFlip(0.0)])
    sample = make_sample()
    assert t(sample) is sample and seen == [1]


def test_autoaugment_color_leaves_labels() -> None:
    sample = make_sample(channels=6)
    aug = AutoAugmentColor("simple_classification_policy")
    out = aug(sample, torch.Generator().manual_seed(1))
    assert out["image"].dtype == torch.uint8 and out["image"].shape == (6, 32, 48)
    assert out["panoptic"] is sample["panoptic"]
    floaty = dict(sample, image=sample["image"].float() + 0.7)
    out = aug(floaty, torch.Generator().manual_seed(1))
    assert out["image"].dtype == torch.float32
