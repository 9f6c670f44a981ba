"""PanopticQuality: DeepLab2's panoptic_quality_test.py cases, an independent segment-based
reference (the panopticapi / COCO definition) on random maps, merge and input checks."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from metrics_testdata import (
    BIRD_GT_CLASSES,
    CAT_GT_CLASSES,
    TEAM_GT_CLASSES,
    combine,
    read_class_map,
    read_image,
    read_instances_and_classes,
)

from deeplab_zoo.metrics import PanopticQuality

# --------------------------------------------------------------------------------------------
# DeepLab2 evaluation/panoptic_quality_test.py (expected numbers are DeepLab2's assertions).
# DeepLab2's result vector is [PQ, SQ, RQ, mean TP, mean FN, mean FP].


def _deeplab2_vector(result: dict) -> list[float]:
    return [result[k] for k in ("pq", "sq", "rq", "tp", "fn", "fp")]


def test_deeplab2_streaming_metric_on_single_image():
    divisor = 1000
    gt_instances, gt_classes = read_instances_and_classes("team_gt_instance.png",
                                                          TEAM_GT_CLASSES)
    pred_classes = read_class_map("team_pred_class.png")
    pred_instances = read_image("team_pred_instance.png", "L")
    metric = PanopticQuality(num_classes=3, ignore_label=0, max_instances_per_category=divisor,
                             offset=256 * 256)
    metric.update(combine(gt_classes, gt_instances, divisor),
                  combine(pred_classes, pred_instances, divisor))
    pq, sq, rq, tp, fn, fp = _deeplab2_vector(metric.compute())
    assert pq == pytest.approx(0.62156284, abs=1e-4)
    assert sq == pytest.approx(0.64664984, abs=1e-4)
    assert rq == pytest.approx(0.9666667, abs=1e-4)
    assert tp == 4.0
    assert fn == pytest.approx(0.5, abs=1e-7)
    assert fp == 0.0


def test_deeplab2_streaming_metric_on_multiple_images():
    divisor = 256
    images = [
        (BIRD_GT_CLASSES, "bird_gt.png", "bird_pred_instance.png", "bird_pred_class.png"),
        (CAT_GT_CLASSES, "cat_gt.png", "cat_pred_instance.png", "cat_pred_class.png"),
        (TEAM_GT_CLASSES, "team_gt_instance.png", "team_pred_instance.png",
         "team_pred_class.png"),
    ]
    metric = PanopticQuality(num_classes=7, ignore_label=0, label_divisor=divisor,
                             offset=256 * 256)
    for class_table, gt_path, pred_instance_path, pred_class_path in images:
        gt_instances, gt_classes = read_instances_and_classes(gt_path, class_table)
        pred_classes = read_class_map(pred_class_path)
        pred_instances = read_image(pred_instance_path, "L")
        metric.update(combine(gt_classes, gt_instances, divisor),
                      combine(pred_classes, pred_instances, divisor))
    pq, sq, rq, tp, fn, fp = _deeplab2_vector(metric.compute())
    assert pq == pytest.approx(0.76855499, abs=1e-4)
    assert sq == pytest.approx(0.7769174, abs=1e-4)
    assert rq == pytest.approx(0.98888892, abs=1e-4)
    assert tp == 2.0
    assert fn == pytest.approx(1.0 / 6, abs=1e-4)
    assert fp == 0.0


def test_deeplab2_predicted_non_contiguous_ignore_label():
    divisor = 256
    metric = PanopticQuality(num_classes=3, ignore_label=9, label_divisor=divisor,
                             offset=256 * 256)
    gt_class = np.array([[0, 9, 9], [1, 2, 2], [1, 9, 9]])
    gt_instance = np.array([[0, 2, 2], [1, 0, 0], [1, 0, 0]])
    pred_class = np.array([[0, 0, 9], [1, 1, 1], [1, 9, 9]])
    pred_instance = np.array([[0, 0, 0], [0, 1, 1], [0, 1, 1]])
    metric.update(combine(gt_class, gt_instance, divisor),
                  combine(pred_class, pred_instance, divisor))
    pq, sq, rq, tp, fn, fp = _deeplab2_vector(metric.compute())
    assert pq == pytest.approx(2.0 / 9, abs=1e-4)
    assert sq == pytest.approx(1.0 / 3, abs=1e-4)
    assert rq == pytest.approx(2.0 / 9, abs=1e-4)
    assert tp == pytest.approx(1.0 / 3, abs=1e-4)
    assert fn == pytest.approx(2.0 / 3, abs=1e-4)
    assert fp == pytest.approx(2.0 / 3, abs=1e-4)


# --------------------------------------------------------------------------------------------
# Independent reference: the segment-based definition of panopticapi's pq_compute
# (https://github.com/cocodataset/panopticapi), written from the definition with per-segment
# Python loops. Ground-truth void is the ignore class (instance 0 only); predicted segments of
# the ignore class are void predictions (not evaluated). No crowd segments.


def reference_pq(pairs: list[tuple[np.ndarray, np.ndarray]], num_classes: int, ignore: int,
                 divisor: int, things: set[int]) -> dict:
    stats = {c: {"iou": 0.0, "tp": 0, "fp": 0, "fn": 0} for c in range(num_classes)}
    void = ignore * divisor
    for gt, pred in pairs:
        gt_area = {int(i): int(n) for i, n in zip(*np.unique(gt, return_counts=True))}
        pred_area = {int(i): int(n) for i, n in zip(*np.unique(pred, return_counts=True))}
        gt_segments = {i: i // divisor for i in gt_area if i // divisor != ignore}
        pred_segments = {i: i // divisor for i in pred_area if i // divisor != ignore}
        overlap: dict[tuple[int, int], int] = {}
        for g, p in zip(gt.reshape(-1).tolist(), pred.reshape(-1).tolist()):
            overlap[(g, p)] = overlap.get((g, p), 0) + 1
        matched_gt, matched_pred = set(), set()
        for (g, p), inter in overlap.items():
            if g not in gt_segments or p not in pred_segments:
                continue
            if gt_segments[g] != pred_segments[p]:
                continue
            union = pred_area[p] + gt_area[g] - inter - overlap.get((void, p), 0)
            iou = inter / union
            if iou > 0.5:
                stats[gt_segments[g]]["tp"] += 1
                stats[gt_segments[g]]["iou"] += iou
                matched_gt.add(g)
                matched_pred.add(p)
        for g, category in gt_segments.items():
            if g not in matched_gt:
                stats[category]["fn"] += 1
        for p, category in pred_segments.items():
            if p in matched_pred:
                continue
            if overlap.get((void, p), 0) / pred_area[p] > 0.5:
                continue
            stats[category]["fp"] += 1

    def average(classes):
        pq = sq = rq = 0.0
        n = 0
        for c in classes:
            s = stats[c]
            tp, fp, fn, iou = s["tp"], s["fp"], s["fn"], s["iou"]
            if tp + fp + fn == 0:
                continue
            n += 1
            pq += iou / (tp + 0.5 * fp + 0.5 * fn)
            sq += iou / tp if tp else 0.0
            rq += tp / (tp + 0.5 * fp + 0.5 * fn)
        return (pq / n, sq / n, rq / n) if n else (math.nan,) * 3

    everything = average(range(num_classes))
    thing = average([c for c in range(num_classes) if c in things])
    stuff = average([c for c in range(num_classes) if c not in things])
    return {"all": everything, "things": thing, "stuff": stuff, "stats": stats}


def random_panoptic_pair(rng: np.random.Generator, shape: tuple[int, int], num_classes: int,
                         ignore: int, divisor: int, things: list[int]
                         ) -> tuple[np.ndarray, np.ndarray]:
    """A ground-truth map of rectangles and a prediction that perturbs it."""
    height, width = shape
    stuff = [c for c in range(num_classes) if c not in things]
    gt = np.full(shape, stuff[0] * divisor, dtype=np.int64)
    for _ in range(int(rng.integers(8, 20))):
        y0, x0 = rng.integers(0, height - 2), rng.integers(0, width - 2)
        y1 = y0 + rng.integers(2, max(3, height // 2))
        x1 = x0 + rng.integers(2, max(3, width // 2))
        kind = rng.random()
        if kind < 0.5:
            label = int(rng.choice(things)) * divisor + int(rng.integers(1, divisor))
        elif kind < 0.85:
            label = int(rng.choice(stuff)) * divisor
        else:
            label = ignore * divisor  # void
        gt[y0:y1, x0:x1] = label
    pred = gt.copy()
    ids = np.unique(gt)
    for segment in ids:  # relabel / shift some segments
        r = rng.random()
        mask = gt == segment
        if r < 0.15:
            cls = int(rng.integers(0, num_classes))
            pred[mask] = cls * divisor + (int(rng.integers(1, divisor)) if cls in things else 0)
        elif r < 0.3:
            pred[np.roll(mask, int(rng.integers(-4, 5)), axis=1)] = segment
    noise = rng.random(shape) < 0.08
    pred[noise] = rng.choice(ids, size=int(noise.sum()))
    spurious = rng.random(shape) < 0.01
    pred[spurious] = ignore * divisor  # predicted void
    return gt, pred


@pytest.mark.parametrize("ignore", [255, 0, 3])
def test_matches_segment_based_reference_on_random_maps(ignore):
    rng = np.random.default_rng(1234 + ignore)
    num_classes, divisor = 8, 100
    things = [1, 2, 5, 6]
    if ignore < num_classes:
        things = [c for c in things if c != ignore]
    metric = PanopticQuality(num_classes, ignore, divisor, thing_classes=things)
    pairs = [random_panoptic_pair(rng, (48, 64), num_classes, ignore, divisor, things)
             for _ in range(12)]
    for gt, pred in pairs:
        metric.update(gt, pred)
    ref = reference_pq(pairs, num_classes, ignore, divisor, set(things))
    result = metric.compute()
    assert result["num_valid_classes"] > 3
    assert sum(result["per_class"]["tp"]) > 10  # the maps do produce matches
    np.testing.assert_allclose([result["pq"], result["sq"], result["rq"]], ref["all"],
                               rtol=0, atol=1e-9)
    np.testing.assert_allclose([result["pq_things"], result["sq_things"], result["rq_things"]],
                               ref["things"], rtol=0, atol=1e-9)
    np.testing.assert_allclose([result["pq_stuff"], result["sq_stuff"], result["rq_stuff"]],
                               ref["stuff"], rtol=0, atol=1e-9)
    for c in range(num_classes):
        s = ref["stats"][c]
        assert result["per_class"]["tp"][c] == s["tp"]
        assert result["per_class"]["fn"][c] == s["fn"]
        assert result["per_class"]["fp"][c] == s["fp"]
        assert result["per_class"]["iou_sum"][c] == pytest.approx(s["iou"], abs=1e-9)


def test_large_maps_match_reference():
    # Large enough for the run-length compressed histogram path.
    rng = np.random.default_rng(11)
    pairs = [random_panoptic_pair(rng, (256, 320), 8, 255, 1000, [1, 2, 5]) for _ in range(2)]
    metric = PanopticQuality(8, 255, 1000, thing_classes=[1, 2, 5])
    for gt, pred in pairs:
        metric.update(gt.astype(np.int32), pred.astype(np.int32))
    ref = reference_pq(pairs, 8, 255, 1000, {1, 2, 5})
    result = metric.compute()
    assert sum(result["per_class"]["tp"]) > 5
    np.testing.assert_allclose([result["pq"], result["sq"], result["rq"]], ref["all"], atol=1e-9)


def test_large_ids_use_the_sorting_path():
    # Ids far above the look-up-table range exercise the np.unique fallback.
    rng = np.random.default_rng(7)
    divisor = 1 << 20
    gt, pred = random_panoptic_pair(rng, (40, 40), 6, 5, divisor, [1, 2])
    metric = PanopticQuality(6, 5, divisor, offset=2**30, thing_classes=[1, 2])
    metric.update(gt, pred)
    ref = reference_pq([(gt, pred)], 6, 5, divisor, {1, 2})
    result = metric.compute()
    np.testing.assert_allclose([result["pq"], result["sq"], result["rq"]], ref["all"], atol=1e-9)


# --------------------------------------------------------------------------------------------
# API behaviour.


def test_merge_of_halves_equals_single_accumulator():
    rng = np.random.default_rng(0)
    pairs = [random_panoptic_pair(rng, (32, 40), 6, 255, 1000, [1, 2, 3]) for _ in range(8)]
    whole = PanopticQuality(6, 255, 1000, thing_classes=[1, 2, 3])
    first = PanopticQuality(6, 255, 1000, thing_classes=[1, 2, 3])
    second = PanopticQuality(6, 255, 1000, thing_classes=[1, 2, 3])
    for i, (gt, pred) in enumerate(pairs):
        whole.update(gt, pred)
        (first if i < 4 else second).update(gt, pred)
    second = pickle.loads(pickle.dumps(second))  # as gathered from another rank
    merged = first.merge(second).compute()
    expected = whole.compute()
    for key in ("pq", "sq", "rq", "tp", "fn", "fp", "pq_things", "pq_stuff"):
        assert merged[key] == pytest.approx(expected[key], abs=1e-12)
    assert merged["per_class"]["tp"] == expected["per_class"]["tp"]


def test_merge_rejects_different_settings():
    with pytest.raises(ValueError, match="cannot merge"):
        PanopticQuality(6, 255, 1000).merge(PanopticQuality(7, 255, 1000))


def test_reset_and_empty_results():
    metric = PanopticQuality(4, 255, 1000)
    result = metric.compute()
    assert math.isnan(result["pq"]) and result["num_valid_classes"] == 0
    gt = np.full((4, 4), 1000)
    metric.update(gt, gt)
    assert metric.compute()["pq"] == 1.0
    assert math.isnan(metric.compute()["pq_things"])  # no thing_classes given
    metric.reset()
    assert metric.compute()["num_valid_classes"] == 0


def test_torch_and_numpy_inputs_agree():
    rng = np.random.default_rng(3)
    gt, pred = random_panoptic_pair(rng, (30, 30), 5, 255, 256, [1, 2])
    a = PanopticQuality(5, 255, 256)
    a.update(gt, pred)
    b = PanopticQuality(5, 255, 256)
    b.update(torch.from_numpy(gt.astype(np.int32)), torch.from_numpy(pred))
    assert a.compute()["per_class"] == b.compute()["per_class"]


def test_things_and_stuff_split():
    divisor = 1000
    gt = np.array([[1001, 1001, 2000, 2000], [1001, 1001, 2000, 2000]])
    pred = np.array([[1005, 1005, 2000, 3000], [1005, 1005, 2000, 3000]])
    metric = PanopticQuality(4, 255, divisor, thing_classes=[1])
    metric.update(gt, pred)
    result = metric.compute()
    assert result["pq_things"] == 1.0
    # stuff: class 2 has IoU 0.5 (not > 0.5) -> FN + FP; class 3 is an FP.
    assert result["pq_stuff"] == 0.0
    assert result["num_valid_things"] == 1 and result["num_valid_stuff"] == 2


@pytest.mark.parametrize(
    ("gt", "pred", "message"),
    [
        (np.zeros((3, 3), np.int64), np.zeros((3, 4), np.int64), "same shape"),
        (np.zeros((3, 3), np.float32), np.zeros((3, 3), np.int64), "integer labels"),
        (np.zeros((3, 3), bool), np.zeros((3, 3), np.int64), "integer labels"),
        (np.full((3, 3), -1), np.zeros((3, 3), np.int64), "non-negative"),
        (np.zeros((2, 3, 3), np.int64), np.zeros((2, 3, 3), np.int64), "2-D"),
        (np.zeros((3, 3), np.int64), np.full((3, 3), 7000), "semantic classes"),
        (np.zeros((3, 3), np.int64), np.full((3, 3), 2**24), "offset"),
        ([[0, 1]], "not an array", "numpy array or torch tensor"),
    ],
)
def test_input_validation(gt, pred, message):
    metric = PanopticQuality(5, 255, 1000)
    with pytest.raises(ValueError, match=message):
        metric.update(gt, pred)
    assert metric.compute()["num_valid_classes"] == 0  # nothing was accumulated


def test_constructor_validation():
    with pytest.raises(ValueError, match="label_divisor"):
        PanopticQuality(5, 255)
    with pytest.raises(ValueError, match="same setting"):
        PanopticQuality(5, 255, 1000, max_instances_per_category=256)
    with pytest.raises(ValueError, match="thing_classes"):
        PanopticQuality(5, 255, 1000, thing_classes=[7])
    with pytest.raises(ValueError, match="num_classes"):
        PanopticQuality(0, 255, 1000)
