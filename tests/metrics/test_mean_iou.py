"""MeanIoU against a direct confusion-matrix computation (Keras MeanIoU semantics)."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from deeplab_zoo.metrics import MeanIoU


def direct_miou(pairs, num_classes, ignore):
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for gt, pred in pairs:
        for g, p in zip(gt.reshape(-1).tolist(), pred.reshape(-1).tolist()):
            if g != ignore:
                cm[g, p] += 1
    ious = []
    for c in range(num_classes):
        union = cm[c, :].sum() + cm[:, c].sum() - cm[c, c]
        if union:
            ious.append(cm[c, c] / union)
    return cm, (sum(ious) / len(ious) if ious else 0.0), np.trace(cm) / cm.sum()


def random_pairs(rng, n, num_classes, ignore, shape=(20, 30)):
    pairs = []
    for _ in range(n):
        gt = rng.integers(0, num_classes, size=shape)
        gt[rng.random(shape) < 0.1] = ignore
        pred = np.where(rng.random(shape) < 0.6, np.where(gt == ignore, 0, gt),
                        rng.integers(0, num_classes, size=shape))
        pairs.append((gt, pred))
    return pairs


@pytest.mark.parametrize("ignore", [255, 0, 4])
def test_matches_direct_confusion_matrix(ignore):
    rng = np.random.default_rng(ignore)
    num_classes = 6
    pairs = random_pairs(rng, 5, num_classes, ignore)
    metric = MeanIoU(num_classes, ignore)
    for gt, pred in pairs:
        metric.update(gt, pred)
    cm, miou, acc = direct_miou(pairs, num_classes, ignore)
    result = metric.compute()
    assert np.array_equal(np.array(result["confusion_matrix"]), cm)
    assert result["miou"] == pytest.approx(miou, abs=1e-12)
    assert result["pixel_accuracy"] == pytest.approx(acc, abs=1e-12)


def test_absent_classes_are_excluded_and_predicted_only_classes_count():
    metric = MeanIoU(4, 255)
    gt = np.array([[0, 0, 1, 255]])
    pred = np.array([[0, 0, 2, 3]])  # class 3 predicted on an ignored pixel only: not counted
    metric.update(gt, pred)
    result = metric.compute()
    # class 0: IoU 1; class 1: 0/1; class 2: 0/1 (only predicted); class 3 absent.
    assert result["num_valid_classes"] == 3
    assert result["miou"] == pytest.approx(1 / 3)
    assert np.isnan(result["per_class_iou"][3])
    assert MeanIoU(3, 255).compute()["miou"] == 0.0  # Keras: divide_no_nan


def test_panoptic_inputs_with_label_divisor_and_torch():
    metric = MeanIoU(3, 255, label_divisor=1000)
    gt = torch.tensor([[1001, 2000, 255000]])
    pred = torch.tensor([[1007, 1000, 2000]])
    metric.update(gt, pred)
    assert metric.compute()["per_class_iou"][1] == pytest.approx(0.5)


def test_merge_of_halves():
    rng = np.random.default_rng(1)
    pairs = random_pairs(rng, 6, 5, 255)
    whole, a, b = MeanIoU(5, 255), MeanIoU(5, 255), MeanIoU(5, 255)
    for i, (gt, pred) in enumerate(pairs):
        whole.update(gt, pred)
        (a if i % 2 else b).update(gt, pred)
    assert a.merge(pickle.loads(pickle.dumps(b))).compute() == whole.compute()


@pytest.mark.parametrize(
    ("gt", "pred", "message"),
    [
        (np.zeros((2, 2), np.int64), np.zeros((2, 3), np.int64), "same shape"),
        (np.zeros((2, 2), np.float64), np.zeros((2, 2), np.int64), "integer labels"),
        (np.zeros((2, 2), np.int64), np.full((2, 2), -3), "non-negative"),
        (np.zeros((2, 2), np.int64), np.full((2, 2), 5), "outside"),
        (np.full((2, 2), 7), np.zeros((2, 2), np.int64), "outside"),
    ],
)
def test_input_validation(gt, pred, message):
    with pytest.raises(ValueError, match=message):
        MeanIoU(5, 255).update(gt, pred)
