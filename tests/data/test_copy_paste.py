"""Panoptic copy-paste: which segments are pasted, their new ids, image and crowd."""
from __future__ import annotations

import pytest
import torch

from deeplab_zoo.data.copy_paste import PanopticCopyPaste
from deeplab_zoo.data.datasets import DatasetInfo
from deeplab_zoo.data.transforms import deeplab2_train_transform

# Classes 0, 1 stuff; 2, 3 things; ignore label 255; divisor 1000.
INFO = DatasetInfo("toy", 4, 255, 1000, (2, 3))
VOID, PAD = 255_000, 255_001
STUFF, THING_A, THING_B, CROWD = 1_000, 2_003, 3_001, 2_000


def identity(sample, generator=None):
    return sample


def canvas() -> dict:
    panoptic = torch.full((4, 6), 0, dtype=torch.int32)  # stuff class 0 everywhere
    panoptic[0, 0] = 2_001  # a canvas thing
    return {"image": torch.zeros(3, 4, 6, dtype=torch.uint8), "panoptic": panoptic,
            "crowd": torch.zeros(4, 6, dtype=torch.bool), "name": "canvas"}


def source() -> dict:
    panoptic = torch.tensor([[STUFF, STUFF, THING_A, THING_A, VOID, PAD],
                             [STUFF, STUFF, THING_A, THING_B, VOID, PAD],
                             [CROWD, CROWD, THING_B, THING_B, VOID, PAD],
                             [STUFF, STUFF, STUFF, STUFF, VOID, PAD]], dtype=torch.int32)
    crowd = panoptic == CROWD
    image = torch.full((3, 4, 6), 200, dtype=torch.uint8)
    return {"image": image, "panoptic": panoptic, "crowd": crowd, "name": "source"}


def test_things_all_stuff_and_void_none() -> None:
    paste = PanopticCopyPaste(INFO, identity, thing_option="all", stuff_option="none",
                              void_option="none")
    out = paste(canvas(), source(), torch.Generator().manual_seed(0))
    src = source()["panoptic"]
    things = (src // 1000 == 2) | (src // 1000 == 3)
    # Thing instances i > 0 become 999 - i; the crowd id (instance 0) keeps its id.
    expected = torch.where(things, src, canvas()["panoptic"])
    expected[src == THING_A] = 2_000 + 999 - 3
    expected[src == THING_B] = 3_000 + 999 - 1
    assert torch.equal(out["panoptic"], expected)
    assert out["panoptic"].dtype == torch.int32
    assert torch.equal(out["image"][0], torch.where(things, 200, 0).to(torch.uint8))
    assert torch.equal(out["crowd"], src == CROWD)
    assert out["name"] == "canvas"


def test_none_everywhere_pastes_nothing_and_padding_never_pasted() -> None:
    nothing = PanopticCopyPaste(INFO, identity, thing_option="none", stuff_option="none")
    out = nothing(canvas(), source(), torch.Generator().manual_seed(1))
    assert torch.equal(out["panoptic"], canvas()["panoptic"])
    everything = PanopticCopyPaste(INFO, identity, thing_option="all", stuff_option="all",
                                   void_option="all")
    out = everything(canvas(), source(), torch.Generator().manual_seed(1))
    assert torch.equal(out["panoptic"][:, 5], canvas()["panoptic"][:, 5])  # padding column
    assert (out["panoptic"][:, 4] == VOID).all() and (out["panoptic"][3, :4] == STUFF).all()


def test_random_keeps_a_uniform_number_of_segments() -> None:
    """DeepLab2 keeps k ~ U{0..n} of the n distinct source ids (here n = 5, no padding)."""
    paste = PanopticCopyPaste(INFO, identity, thing_option="random", stuff_option="random",
                              void_option="random")
    src = source()
    src["panoptic"] = src["panoptic"][:, :5]
    src["image"], src["crowd"] = src["image"][..., :5], src["crowd"][:, :5]
    base = canvas()
    base = {k: (v[..., :5] if isinstance(v, torch.Tensor) else v) for k, v in base.items()}
    counts = torch.zeros(6)
    trials = 1200
    for seed in range(trials):
        out = paste(base, src, torch.Generator().manual_seed(seed))
        kept = {int(v) for v in src["panoptic"][out["image"][0] == 200]}
        counts[len(kept)] += 1
    assert ((counts / trials - 1 / 6).abs() < 0.05).all(), counts


def test_errors() -> None:
    with pytest.raises(ValueError, match="thing_option"):
        PanopticCopyPaste(INFO, identity, thing_option="some")
    paste = PanopticCopyPaste(INFO, identity)
    big = canvas()
    big["panoptic"][1, 1] = 2_500  # instance 500 = label_divisor // 2
    with pytest.raises(ValueError, match="below label_divisor // 2"):
        paste(big, source())
    video = canvas()
    video["prev_panoptic"] = video["panoptic"]
    with pytest.raises(ValueError, match="prev_panoptic"):
        paste(video, source())
    small = source()
    small["panoptic"] = small["panoptic"][:2]
    with pytest.raises(ValueError, match="differs from the canvas crop"):
        paste(canvas(), small)


def test_source_crop_pads_with_the_padding_label() -> None:
    """The source goes through DeepLab2's training preprocessing with label_pad = void + 1:
    a smaller source is padded with ids that are never pasted."""
    transform = deeplab2_train_transform((8, 10), INFO, label_pad=PAD)
    paste = PanopticCopyPaste(INFO, transform, thing_option="all", stuff_option="all",
                              void_option="all")
    base = {"image": torch.zeros(3, 8, 10, dtype=torch.uint8),
            "panoptic": torch.zeros(8, 10, dtype=torch.int32)}
    out = paste(base, source(), torch.Generator().manual_seed(3))
    pasted = out["panoptic"] != 0
    assert int(pasted.sum()) == 4 * 5  # the 4x5 non-padding part of the source, nothing else
    assert PAD not in out["panoptic"]
