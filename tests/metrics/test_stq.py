"""SegmentationTrackingQuality: DeepLab2's segmentation_and_tracking_quality_test.py (TF) and
numpy/segmentation_and_tracking_quality_test.py cases, plus a per-pixel reference for the
weighted variant and merge checks."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from metrics_testdata import GT_INSTANCE, GT_SEMANTIC, PRED_INSTANCE, PRED_SEMANTIC

from deeplab_zoo.metrics import SegmentationTrackingQuality
from deeplab_zoo.metrics._counting import histogram, merge_counts

# (divisor, offset) of DeepLab2's TF test (max_instances_per_category 1000, offset 256*256) and
# of its numpy test (label bit shift 16, offset 2**24).
ENCODINGS = [pytest.param(1000, 256 * 256, id="tf"), pytest.param(1 << 16, 2**24, id="numpy")]


def _check(result, stq, aq, iou, length=1):
    np.testing.assert_almost_equal(result["stq"], stq)
    np.testing.assert_almost_equal(result["aq"], aq)
    np.testing.assert_almost_equal(result["iou"], iou)
    np.testing.assert_almost_equal(result["stq_per_seq"], [stq])
    np.testing.assert_almost_equal(result["aq_per_seq"], [aq])
    np.testing.assert_almost_equal(result["iou_per_seq"], [iou])
    assert result["id_per_seq"] == [1]
    assert result["length_per_seq"] == [length]


def test_deeplab2_update_dict_stats():
    # DeepLab2's _update_dict_stats cases, on our weighted histogram + merge.
    hist = histogram(np.array([1, 1, 1, 2]))
    assert dict(zip(hist.ids.tolist(), hist.counts.tolist())) == {1: 3, 2: 1}
    weights = np.array([1, 0.5, 0.5, 0.5])
    hist = histogram(np.array([1, 1, 1, 2]), weights)
    assert dict(zip(hist.ids.tolist(), hist.counts.tolist())) == {1: 2, 2: 0.5}
    ids, counts = merge_counts(hist.ids, hist.counts, hist.ids, hist.counts)
    assert dict(zip(ids.tolist(), counts.tolist())) == {1: 4, 2: 1}


@pytest.mark.parametrize(("divisor", "offset"), ENCODINGS)
def test_deeplab2_complex_example(divisor, offset):
    gt = GT_SEMANTIC * divisor + GT_INSTANCE
    pred = PRED_SEMANTIC * divisor + PRED_INSTANCE
    metric = SegmentationTrackingQuality(3, [2], 255, divisor, offset)
    for i in range(3):
        metric.update(gt[i].astype(np.int32), pred[i].astype(np.int32), 1)
    _check(metric.compute(), 0.66841773352, 0.55366581415, 0.8069529580309542, length=3)


BASIC_EXAMPLES = [
    # (ground-truth (semantic, instance) rows, predicted rows, expected [STQ, AQ, IoU])
    ("gt_cars", [[1, 1, 1, 1, 1]], [[0, 0, 0, 0, 0]], [1.0, 1.0, 1.0]),
    ("gt_cars", [[1, 1, 2, 2, 2]], [[0, 0, 0, 0, 0]], [0.72111026, 0.52, 1.0]),
    ("gt_cars", [[1, 2, 2, 2, 2]], [[0, 0, 0, 0, 0]], [0.82462113, 0.68, 1.0]),
    ("gt_cars", [[1, 2, 3, 4, 5]], [[0, 0, 0, 0, 0]], [0.447213596, 0.2, 1.0]),
    ("gt_cars", [[1, 2, 1, 2, 2]], [[0, 0, 0, 0, 0]], [0.72111026, 0.52, 1.0]),
    ("gt_cars", [[0, 1, 1, 1, 1]], [[1, 0, 0, 0, 0]], [0.50596443, 0.64, 0.4]),
    ("gt_crowd", [[1, 1, 1, 1, 1, 1]], [[0, 0, 0, 0, 0, 0]], [1.0, 1.0, 1.0]),
    ("gt_crowd", [[2, 2, 2, 2, 1, 1]], [[0, 0, 0, 0, 0, 0]], [0.72111026, 0.52, 1.0]),
    ("gt_crowd", [[2, 2, 0, 1, 1, 1]], [[0, 0, 1, 0, 0, 0]], [0.40824829, 0.4, 5.0 / 12.0]),
    ("gt_sky", [[1, 1, 1, 1, 1]], [[0, 0, 0, 0, 0]], [0.56568542, 0.8, 0.4]),
    ("gt_sky", [[2, 2, 2, 1, 1]], [[0, 0, 0, 0, 0]], [0.42426407, 0.45, 0.4]),
    ("gt_sky", [[2, 2, 0, 1, 1]], [[0, 0, 1, 0, 0]], [0.3, 0.3, 0.3]),
]


def _basic_ground_truth(kind: str, divisor: int) -> np.ndarray:
    # classes: cars (thing, 0), sky (1).
    if kind == "gt_cars":
        return np.array([[1, 1, 1, 1, 1]])
    if kind == "gt_crowd":  # first pixel is a crowd car
        return np.array([[0, 1, 1, 1, 1, 1]])
    return np.array([[0, 1, 1, 1, 1]]) + np.array([[1, 0, 0, 0, 0]]) * divisor  # first is sky


@pytest.mark.parametrize(("divisor", "offset"), ENCODINGS)
@pytest.mark.parametrize("example", range(len(BASIC_EXAMPLES)))
def test_deeplab2_basic_examples(divisor, offset, example):
    kind, instances, semantics, expected = BASIC_EXAMPLES[example]
    metric = SegmentationTrackingQuality(2, [0], 255, divisor, offset)
    pred = np.array(instances) + np.array(semantics) * divisor
    metric.update(_basic_ground_truth(kind, divisor), pred, 1)
    _check(metric.compute(), *expected)
    metric.reset()
    assert metric.compute()["id_per_seq"] == []


# --------------------------------------------------------------------------------------------
# Weighted counts (DeepLab2's basic_examples_numpy_compatibility cases with weights): checked
# against a per-pixel reference written from the STQ definition.


def reference_stq(frames, num_classes, things, ignore, divisor):
    """frames: list of (gt, pred, sequence, weights). Plain Python, per pixel."""
    size = num_classes + 1 if ignore >= num_classes else num_classes
    seqs: dict = {}
    for gt, pred, seq, weights in frames:
        s = seqs.setdefault(seq, {"cm": np.zeros((size, size)), "gt": {}, "pred": {},
                                  "inter": {}, "len": 0})
        s["len"] += 1
        w = np.ones(gt.size) if weights is None else np.asarray(weights, float).reshape(-1)
        for g, p, wt in zip(gt.reshape(-1).tolist(), pred.reshape(-1).tolist(), w.tolist()):
            gs, ps = g // divisor, p // divisor
            gs = num_classes if gs == ignore and ignore >= num_classes else gs
            ps = num_classes if ps == ignore and ignore >= num_classes else ps
            s["cm"][gs, ps] += wt
            g_thing = (g // divisor) in things
            crowd = g_thing and g % divisor == 0
            if g_thing and not crowd:
                s["gt"][g] = s["gt"].get(g, 0) + wt
            if (p // divisor) in things and not crowd:
                s["pred"][p] = s["pred"].get(p, 0) + wt
                if g_thing and not crowd:
                    s["inter"][(g, p)] = s["inter"].get((g, p), 0) + wt
    include = [c for c in range(num_classes) if c != ignore]

    def miou(cm):
        cm = cm.copy()
        keep = np.zeros(size, bool)
        keep[include] = True
        cm[~keep, :] = 0
        inter = np.diag(cm)
        union = cm.sum(0) + cm.sum(1) - inter
        return (inter / np.maximum(union, 1e-15)).sum() / np.count_nonzero(union), cm

    aq_sum = tubes = 0.0
    total_cm = np.zeros((size, size))
    for s in seqs.values():
        for g, gsize in s["gt"].items():
            for p, psize in s["pred"].items():
                t = s["inter"].get((g, p), 0)
                if t:
                    aq_sum += t * t / (psize + gsize - t) / gsize
        tubes += len(s["gt"])
        total_cm += miou(s["cm"])[1]
    aq = aq_sum / max(tubes, 1e-15)
    iou = miou(total_cm)[0]
    return math.sqrt(aq * iou), aq, iou


@pytest.mark.parametrize("weights", [None, [1.0, 0.5, 1.0, 1.0, 0.5]])
@pytest.mark.parametrize("example", range(len(BASIC_EXAMPLES)))
def test_weighted_basic_examples_match_reference(weights, example):
    divisor = 1 << 16
    kind, instances, semantics, _ = BASIC_EXAMPLES[example]
    gt = _basic_ground_truth(kind, divisor)
    pred = np.array(instances) + np.array(semantics) * divisor
    w = None if weights is None else np.array(weights + [1.0] * (gt.size - 5))
    metric = SegmentationTrackingQuality(2, [0], 255, divisor, 2**24)
    iterations = 2 if example == len(BASIC_EXAMPLES) - 1 else 1  # DeepLab2's "Iter 2" case
    for _ in range(iterations):
        metric.update(gt, pred, 1, w)
    expected = reference_stq([(gt, pred, 1, w)] * iterations, 2, {0}, 255, divisor)
    result = metric.compute()
    np.testing.assert_allclose([result["stq"], result["aq"], result["iou"]], expected,
                               rtol=1e-12)


def test_random_sequences_match_reference():
    rng = np.random.default_rng(5)
    divisor, frames = 100, []
    for seq in ("a", "b", "c"):
        for _ in range(3):
            sem = rng.integers(0, 4, size=(6, 7))
            sem[rng.random(sem.shape) < 0.1] = 255
            gt = sem * divisor + np.where(sem == 2, rng.integers(0, 3, size=sem.shape), 0)
            psem = np.where(rng.random(sem.shape) < 0.7, np.where(sem == 255, 0, sem),
                            rng.integers(0, 4, size=sem.shape))
            pred = psem * divisor + np.where(psem == 2, rng.integers(1, 4, size=sem.shape), 0)
            weights = rng.choice([0.5, 1.0, 2.0], size=sem.shape)
            frames.append((gt, pred, seq, weights))
    metric = SegmentationTrackingQuality(4, [2], 255, divisor, 2**16)
    for gt, pred, seq, weights in frames:
        metric.update(gt, pred, seq, weights)
    result = metric.compute()
    np.testing.assert_allclose([result["stq"], result["aq"], result["iou"]],
                               reference_stq(frames, 4, {2}, 255, divisor), rtol=1e-12)
    assert result["id_per_seq"] == ["a", "b", "c"] and result["length_per_seq"] == [3, 3, 3]


# --------------------------------------------------------------------------------------------
# merge (DeepLab2's test_merge_state_np / _tf) and our extension to shared sequences.


def _merge_inputs(divisor):
    gt1 = np.array([[0, 1, 1, 1, 1, 1]])
    gt2 = np.array([[0, 1, 1, 1, 1]]) + np.array([[1, 0, 0, 0, 0]]) * divisor
    pred1 = np.array([[2, 2, 2, 2, 1, 1]])
    pred2 = np.array([[2, 2, 0, 1, 1]]) + np.array([[0, 0, 1, 0, 0]]) * divisor
    return gt1, gt2, pred1, pred2


@pytest.mark.parametrize(("divisor", "offset"), ENCODINGS)
def test_deeplab2_merge_state(divisor, offset):
    gt1, gt2, pred1, pred2 = _merge_inputs(divisor)
    first = SegmentationTrackingQuality(2, [0], 255, divisor, offset)
    second = SegmentationTrackingQuality(2, [0], 255, divisor, offset)
    merged = SegmentationTrackingQuality(2, [0], 255, divisor, offset)
    first.update(gt1, pred1, 1)
    second.update(gt2, pred2, 2)
    merged.merge(first).merge(pickle.loads(pickle.dumps(second)))
    single = SegmentationTrackingQuality(2, [0], 255, divisor, offset)
    single.update(gt1, pred1, 1)
    single.update(gt2, pred2, 2)
    assert merged.compute() == single.compute()


def test_merge_of_a_shared_sequence_sums_its_frames():
    frames = [(GT_SEMANTIC[i] * 1000 + GT_INSTANCE[i], PRED_SEMANTIC[i] * 1000 + PRED_INSTANCE[i])
              for i in range(3)]
    single = SegmentationTrackingQuality(3, [2], 255, 1000, 2**16)
    first = SegmentationTrackingQuality(3, [2], 255, 1000, 2**16)
    second = SegmentationTrackingQuality(3, [2], 255, 1000, 2**16)
    for i, (gt, pred) in enumerate(frames):
        single.update(gt, pred, "seq")
        (first if i < 2 else second).update(gt, pred, "seq")
    result = first.merge(second).compute()
    expected = single.compute()
    for key in ("stq", "aq", "iou"):
        assert result[key] == pytest.approx(expected[key], abs=1e-12)
    assert result["length_per_seq"] == [3]


def test_validation():
    with pytest.raises(ValueError, match="offset"):
        SegmentationTrackingQuality(3, [2], 255, 1000, 2000)
    metric = SegmentationTrackingQuality(3, [2], 255, 1000, 2**16)
    with pytest.raises(ValueError, match="same shape"):
        metric.update(np.zeros((2, 2), np.int64), np.zeros((2, 3), np.int64))
    with pytest.raises(ValueError, match="integer labels"):
        metric.update(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="non-negative"):
        metric.update(np.full((2, 2), -1), np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="semantic class"):
        metric.update(np.full((2, 2), 5000), np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="weights"):
        metric.update(np.zeros((2, 2), np.int64), np.zeros((2, 2), np.int64),
                      weights=np.ones(3))
    assert metric.compute()["id_per_seq"] == []
