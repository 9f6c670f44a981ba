"""Panoptic-DeepLab training targets against hand-computed cases and a naive reference."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deeplab_zoo.data.datasets import DatasetInfo
from deeplab_zoo.data.targets import (
    PanopticTargetGenerator,
    gaussian_kernel,
    panoptic_deeplab_targets,
)

DIV, IGNORE, THINGS = 1000, 255, (2, 3)
VOID = IGNORE * DIV


def targets(label: np.ndarray, **kwargs) -> dict[str, torch.Tensor]:
    return panoptic_deeplab_targets(torch.from_numpy(np.asarray(label, np.int32)),
                                    thing_class_ids=THINGS, label_divisor=DIV,
                                    ignore_label=IGNORE, **kwargs)


def naive_reference(label: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """DeepLab2's algorithm written out literally: padded canvas, per-instance loops."""
    height, width = label.shape
    size = int(6 * sigma + 3)
    x0 = 3 * sigma + 1
    gauss = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            gauss[i, j] = math.exp(-((j - x0) ** 2 + (i - x0) ** 2) / (2 * sigma**2))
    begin, end = int(round(3 * sigma + 1)), int(round(3 * sigma + 2))
    canvas = np.zeros((height + begin + end, width + begin + end))
    offset = np.zeros((2, height, width))
    for pid in np.unique(label):
        if pid // DIV == IGNORE or pid % DIV == 0:
            continue
        ys, xs = np.nonzero(label == pid)
        cy, cx = int(np.round(ys.mean())), int(np.round(xs.mean()))
        for i in range(size):
            for j in range(size):
                canvas[cy + i, cx + j] = max(canvas[cy + i, cx + j], gauss[i, j])
        for y, x in zip(ys, xs):
            offset[:, y, x] = (cy - y, cx - x)
    return canvas[begin:begin + height, begin:begin + width], offset


def test_gaussian_kernel() -> None:
    kernel, size = gaussian_kernel(8)
    assert size == 51 and kernel.shape == (51, 51)
    assert kernel[25, 25] == 1.0 and kernel.argmax() == 25 * 51 + 25
    assert kernel[25, 33] == pytest.approx(math.exp(-0.5), rel=1e-6)  # one sigma away
    assert kernel[0, 0] == pytest.approx(math.exp(-2 * 25**2 / 128), rel=1e-5)


def test_single_instance_hand_computed() -> None:
    label = np.zeros((40, 50), np.int64)  # stuff class 0
    label[10:15, 20:24] = 2 * DIV + 7  # rows 10..14 (mean 12), cols 20..23 (mean 21.5 -> 22)
    out = targets(label, sigma=2)
    center = out["center"].numpy()
    assert center.argmax() == 12 * 50 + 22 and center[12, 22] == 1.0
    assert center[12, 24] == pytest.approx(math.exp(-4 / 8), rel=1e-6)
    # The window is int(6*2+3) = 15 pixels: rows 12-7 .. 12+7; nothing outside it.
    assert center[12, 22 + 7] > 0 and center[12, 22 + 8] == 0 and center[12 - 8, 22] == 0
    offset = out["offset"].numpy()
    assert offset[:, 10, 20].tolist() == [2, 2] and offset[:, 14, 23].tolist() == [-2, -1]
    assert np.all(offset[:, label == 0] == 0)
    assert out["offset_weights"].sum() == 20 and out["center_weights"].sum() == 40 * 50
    assert out["semantic"][12, 22] == 2 and out["semantic"][0, 0] == 0
    assert out["semantic_weights"].unique().tolist() == [1.0]


def test_centre_rounds_half_to_even() -> None:
    label = np.zeros((20, 20), np.int64)
    label[5, 1:5] = 3 * DIV + 1  # x mean 2.5 -> 2 (tf.round), y 5
    label[9, 6:10] = 3 * DIV + 2  # x mean 7.5 -> 8
    peaks = out_peaks(targets(label, sigma=1)["center"].numpy())
    assert (5, 2) in peaks and (9, 8) in peaks


def out_peaks(center: np.ndarray) -> set[tuple[int, int]]:
    return {tuple(int(v) for v in p) for p in np.argwhere(center == 1.0)}


def test_crowd_void_and_small_instances() -> None:
    label = np.zeros((30, 30), np.int64)
    label[0:10, 0:10] = 2 * DIV  # crowd: thing class with instance 0
    label[20:30, 20:30] = VOID
    label[12:14, 12:14] = 3 * DIV + 1  # small instance (4 px)
    label[15:25, 0:10] = 3 * DIV + 2  # 100 px
    crowd = np.zeros((30, 30), bool)
    crowd[15:17, 0:10] = True  # flagged crowd on top of an instance
    out = targets(label, small_instance_area=50, small_instance_weight=3.0,
                  crowd=torch.from_numpy(crowd))
    assert out["semantic"][5, 5] == 2 and out["semantic"][25, 25] == IGNORE
    assert out["panoptic"][5, 5] == VOID and out["panoptic"][15, 0] == VOID
    assert out["crowd"][5, 5] and out["crowd"][16, 3] and not out["crowd"][20, 3]
    assert out["center_weights"][5, 5] == 0 and out["center_weights"][25, 25] == 0
    assert out["center_weights"][29, 0] == 1
    assert out["offset_weights"][5, 5] == 0 and out["offset_weights"][20, 5] == 1
    assert out["offset_weights"][12, 12] == 1 and out["offset_weights"][0, 29] == 0
    weights = out["semantic_weights"]
    assert weights[12, 12] == 3.0 and weights[20, 5] == 1.0 and weights[0, 0] == 1.0
    # The crowd part is not part of instance 3002: its centre is over rows 17..24.
    assert out["offset"][0, 17, 0] == 3  # mean row 20.5 -> 20


@pytest.mark.parametrize("sigma", [8.0, 2.0, 2.5])
def test_matches_naive_reference(sigma: float) -> None:
    rng = np.random.default_rng(0)
    label = np.zeros((37, 45), np.int64)
    for k in range(1, 9):  # overlapping random boxes, some at the borders
        y, x = rng.integers(-3, 37), rng.integers(-3, 45)
        h, w = rng.integers(1, 12, size=2)
        label[max(y, 0):y + h, max(x, 0):x + w] = THINGS[k % 2] * DIV + k
    label[0:3, 40:45] = VOID
    out = targets(label, sigma=sigma)
    center, offset = naive_reference(label, sigma)
    np.testing.assert_allclose(out["center"].numpy(), center, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(out["offset"].numpy(), offset)


def test_previous_and_next_frame_targets() -> None:
    current = np.zeros((40, 40), np.int64)
    current[10:20, 10:20] = 2 * DIV + 1  # centre (14.5, 14.5) -> (14, 14)
    current[30:34, 30:34] = 2 * DIV + 2  # new in this frame
    prev = np.zeros_like(current)
    prev[12:22, 8:18] = 2 * DIV + 1
    nxt = np.zeros_like(current)
    nxt[5:9, 5:9] = 2 * DIV + 1
    generator = torch.Generator().manual_seed(0)
    out = targets(current, prev_panoptic=torch.from_numpy(prev),
                  next_panoptic=torch.from_numpy(nxt), generator=generator)
    again = targets(current, prev_panoptic=torch.from_numpy(prev),
                    next_panoptic=torch.from_numpy(nxt),
                    generator=torch.Generator().manual_seed(0))
    for key in ("prev_center", "frame_offset", "next_offset"):
        assert torch.equal(out[key], again[key])
    # Previous centre ~ (16.5, 12.5) jittered by <= a few % of the 9-pixel box.
    peaks = out_peaks(out["prev_center"].numpy())
    assert peaks and all(abs(y - 16.5) <= 3 and abs(x - 12.5) <= 3 for y, x in peaks)
    py, px = 10 + out["frame_offset"][0, 10, 10].item(), 10 + out["frame_offset"][1, 10, 10].item()
    assert (int(py), int(px)) in peaks
    frame_weights = out["frame_offset_weights"]
    assert frame_weights[31, 31] == 0  # not in the previous frame
    assert frame_weights[10:20, 10:20].sum() >= 99  # (the pixel at the centre may be 0)
    assert out["next_offset"][:, 5, 5].tolist() == [9, 9]  # this frame's centre - pixel
    assert out["next_offset_weights"].sum() == 16


def test_thing_id_mask_and_generator_class() -> None:
    label = np.zeros((10, 10), np.int64)
    label[0, 5:] = 3 * DIV + 4  # first appearance
    label[5:, 0:2] = 2 * DIV + 1
    out = targets(label, max_thing_id=4)
    assert out["thing_id_mask"][0, 6] == 0 and out["thing_id_mask"][6, 0] == 1
    assert out["thing_id_mask"][9, 9] == -1
    assert out["thing_id_class"].tolist() == [3, 2, -1, -1]
    with pytest.raises(ValueError, match="max_thing_id"):
        targets(label, max_thing_id=1)

    info = DatasetInfo("toy", 4, IGNORE, DIV, THINGS)
    sample = {"panoptic": torch.from_numpy(label.astype(np.int32)),
              "depth": torch.ones(10, 10, dtype=torch.float64)}
    generated = PanopticTargetGenerator(info, sigma=1)(sample)
    assert generated["depth"].dtype == torch.float32
    assert torch.equal(generated["offset"], targets(label, sigma=1)["offset"])


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        targets(np.zeros((2, 3, 4), np.int64))
    with pytest.raises(ValueError, match="ignore_label"):
        panoptic_deeplab_targets(torch.zeros(4, 4, dtype=torch.int32), thing_class_ids=(1,),
                                 label_divisor=256, ignore_label=256)
