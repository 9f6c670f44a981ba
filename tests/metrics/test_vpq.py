"""VideoPanopticQuality (DeepLab2 has no unit test for it): window concatenation semantics,
consistency with PanopticQuality, the multi-window protocol, merge and validation."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from deeplab_zoo.metrics import (
    PanopticQuality,
    VideoPanopticQuality,
    WindowedVideoPanopticQuality,
)

DIV = 1000


def _sequence(rng, frames=4, shape=(12, 16)):
    gt, pred = [], []
    for _ in range(frames):
        g = np.full(shape, 2 * DIV, np.int64)  # stuff class 2
        g[2:8, 2:7] = 1 * DIV + 1  # track 1
        g[6:11, 9:15] = 1 * DIV + 2  # track 2
        g[0, :] = 255 * DIV
        p = g.copy()
        p[rng.random(shape) < 0.1] = 2 * DIV
        gt.append(g)
        pred.append(p)
    return gt, pred


def test_single_frame_window_equals_image_pq():
    rng = np.random.default_rng(0)
    gt, pred = _sequence(rng)
    vpq = VideoPanopticQuality(3, 255, DIV, thing_classes=[1])
    pq = PanopticQuality(3, 255, DIV, thing_classes=[1])
    for g, p in zip(gt, pred):
        vpq.update([g], [p])
        pq.update(g, p)
    assert vpq.compute() == pq.compute()


def test_window_is_horizontal_concatenation():
    rng = np.random.default_rng(1)
    gt, pred = _sequence(rng, frames=2)
    pred[1] = np.where(pred[1] == DIV + 1, DIV + 7, pred[1])  # identity switch in frame 2
    vpq = VideoPanopticQuality(3, 255, DIV)
    vpq.update(gt, np.stack(pred))
    pq = PanopticQuality(3, 255, DIV)
    pq.update(np.concatenate(gt, axis=1), np.concatenate(pred, axis=1))
    assert vpq.compute() == pq.compute()
    # The switched track is no longer matched across the window: worse than per-frame PQ.
    per_frame = PanopticQuality(3, 255, DIV)
    for g, p in zip(gt, pred):
        per_frame.update(g, p)
    assert vpq.compute()["pq"] < per_frame.compute()["pq"]


def test_windowed_vpq_averages_window_sizes():
    rng = np.random.default_rng(2)
    gt, pred = _sequence(rng, frames=4)
    metric = WindowedVideoPanopticQuality(3, 255, DIV, window_sizes=(1, 2, 5),
                                          thing_classes=[1])
    metric.update(gt, torch.from_numpy(np.stack(pred)))
    result = metric.compute()
    manual = {}
    for k in (1, 2):
        ref = VideoPanopticQuality(3, 255, DIV, thing_classes=[1])
        for start in range(len(gt) - k + 1):
            ref.update(gt[start:start + k], pred[start:start + k])
        manual[k] = ref.compute()["pq"]
        assert result[f"vpq@{k}"] == manual[k]
    assert math.isnan(result["vpq@5"])  # sequence shorter than the window
    assert math.isnan(result["vpq"])
    metric2 = WindowedVideoPanopticQuality(3, 255, DIV, window_sizes=(1, 2))
    metric2.update(gt, pred)
    assert metric2.compute()["vpq"] == pytest.approx((manual[1] + manual[2]) / 2)


def test_merge_and_validation():
    rng = np.random.default_rng(3)
    sequences = [_sequence(rng, frames=3) for _ in range(2)]
    whole = WindowedVideoPanopticQuality(3, 255, DIV, window_sizes=(1, 2))
    parts = [WindowedVideoPanopticQuality(3, 255, DIV, window_sizes=(1, 2)) for _ in range(2)]
    for part, (gt, pred) in zip(parts, sequences):
        whole.update(gt, pred)
        part.update(gt, pred)
    merged = parts[0].merge(pickle.loads(pickle.dumps(parts[1]))).compute()
    expected = whole.compute()
    assert merged["vpq"] == pytest.approx(expected["vpq"], abs=1e-12)
    vpq = VideoPanopticQuality(3, 255, DIV)
    gt, pred = sequences[0]
    with pytest.raises(ValueError, match="frames"):
        vpq.update(gt, pred[:2])
    with pytest.raises(ValueError, match="height"):
        vpq.update([gt[0], gt[1][:5]], [pred[0], pred[1][:5]])
    with pytest.raises(ValueError, match="same shape"):
        vpq.update([gt[0]], [pred[0][:, :5]])
    with pytest.raises(ValueError, match="integer labels"):
        vpq.update([gt[0].astype(float)], [pred[0]])
    with pytest.raises(ValueError, match="window sizes differ"):
        whole.merge(WindowedVideoPanopticQuality(3, 255, DIV, window_sizes=(1,)))
    with pytest.raises(ValueError, match="window_sizes"):
        WindowedVideoPanopticQuality(3, 255, DIV, window_sizes=())
