"""DepthAwareSTQ: DeepLab2's depth_aware_segmentation_and_tracking_quality_test.py cases."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from metrics_testdata import GT_INSTANCE, GT_SEMANTIC, PRED_INSTANCE, PRED_SEMANTIC

from deeplab_zoo.metrics import DepthAwareSTQ

GT_DEPTH = np.array(
    [[56.1, 50.9, 54.0, 63.6, 68.6, 50.9, 50.9, 58.1],
     [62.6, 52.1, 00.0, 60.9, 62.4, 52.6, 56.3, 63.4],
     [57.1, 61.2, 63.8, 63.1, 52.3, 54.3, 52.1, 51.4],
     [65.8, 50.5, 58.9, 54.3, 00.0, 65.4, 63.8, 56.8],
     [50.6, 56.5, 53.0, 66.9, 51.8, 58.6, 65.9, 66.4],
     [53.5, 56.2, 53.6, 50.6, 64.6, 51.1, 68.7, 50.3],
     [69.0, 65.3, 66.4, 51.9, 68.3, 50.5, 00.0, 67.4],
     [59.7, 51.3, 50.1, 67.2, 68.8, 62.8, 64.9, 59.5]])
PRED_DEPTH = np.array(
    [[67.5, 36.9, 65.7, 77.9, 75.0, 45.1, 68.2, 63.3],
     [43.8, 63.0, 79.4, 78.1, 82.2, 36.9, 59.2, 83.2],
     [70.6, 73.2, 77.8, 71.3, 41.3, 47.5, 58.8, 64.8],
     [60.5, 51.7, 72.2, 49.8, 56.1, 60.7, 72.2, 73.0],
     [34.5, 55.7, 46.7, 47.4, 69.6, 43.5, 82.3, 84.8],
     [46.9, 39.5, 35.4, 61.3, 79.4, 42.2, 48.9, 56.3],
     [57.0, 75.0, 84.2, 46.3, 67.4, 55.5, 46.9, 70.0],
     [62.3, 58.3, 59.4, 74.5, 70.6, 54.6, 78.6, 48.1]])
DIVISOR = 1000


def _run(gt_depth: np.ndarray) -> dict:
    metric = DepthAwareSTQ(3, [2], 255, DIVISOR, 256 * 256, (1.25, 1.1))
    gt = GT_SEMANTIC * DIVISOR + GT_INSTANCE
    pred = PRED_SEMANTIC * DIVISOR + PRED_INSTANCE
    for i in range(3):
        metric.update(gt[i].astype(np.int32), pred[i].astype(np.int32),
                      gt_depth.astype(np.float32), PRED_DEPTH.astype(np.float32), 1)
    return metric.compute()


def _check_stq_unchanged(result):
    np.testing.assert_almost_equal(result["stq"], 0.66841773352)
    np.testing.assert_almost_equal(result["aq"], 0.55366581415)
    np.testing.assert_almost_equal(result["iou"], 0.8069529580309542)
    np.testing.assert_almost_equal(result["stq_per_seq"], [0.66841773352])
    np.testing.assert_almost_equal(result["aq_per_seq"], [0.55366581415])
    np.testing.assert_almost_equal(result["iou_per_seq"], [0.8069529580309542])
    assert result["id_per_seq"] == [1] and result["length_per_seq"] == [3]


def test_deeplab2_no_valid_depth_labels():
    result = _run(GT_DEPTH * 0)
    _check_stq_unchanged(result)
    for key in ("dstq", "dstq@1.1", "dstq@1.25", "dq", "dq@1.1", "dq@1.25"):
        np.testing.assert_almost_equal(result[key], 0.0)
    for key in ("dstq_per_seq@1.1", "dstq_per_seq@1.25", "dq_per_seq@1.1", "dq_per_seq@1.25"):
        np.testing.assert_almost_equal(result[key], [0.0])


def test_deeplab2_default_depth_thresholds():
    result = _run(GT_DEPTH)
    _check_stq_unchanged(result)
    valid = GT_DEPTH > 0
    error = np.maximum(PRED_DEPTH[valid] / GT_DEPTH[valid], GT_DEPTH[valid] / PRED_DEPTH[valid])
    dq_1_1 = np.sum(error <= 1.1) / valid.sum()
    dq_1_25 = np.sum(error <= 1.25) / valid.sum()
    np.testing.assert_almost_equal(result["dstq"] ** 3, result["stq"] ** 2 * result["dq"])
    np.testing.assert_almost_equal(result["dstq@1.1"] ** 3, result["stq"] ** 2 * result["dq@1.1"])
    np.testing.assert_almost_equal(result["dstq@1.25"] ** 3,
                                   result["stq"] ** 2 * result["dq@1.25"])
    np.testing.assert_almost_equal(result["dstq_per_seq@1.1"], [result["dstq@1.1"]])
    np.testing.assert_almost_equal(result["dstq_per_seq@1.25"], [result["dstq@1.25"]])
    np.testing.assert_almost_equal(result["dq"] ** 2, result["dq@1.1"] * result["dq@1.25"])
    np.testing.assert_almost_equal(result["dq@1.1"], dq_1_1)
    np.testing.assert_almost_equal(result["dq@1.25"], dq_1_25)
    np.testing.assert_almost_equal(result["dq_per_seq@1.1"], [result["dq@1.1"]])
    np.testing.assert_almost_equal(result["dq_per_seq@1.25"], [result["dq@1.25"]])
    # DeepLab2's literal numbers.
    np.testing.assert_almost_equal(result["dstq"], 0.5552059833215103)
    np.testing.assert_almost_equal(result["dstq@1.1"], 0.45663565048742255)
    np.testing.assert_almost_equal(result["dstq@1.25"], 0.6750539157136957)
    np.testing.assert_almost_equal(result["dstq_per_seq@1.1"], [0.45663565048742255])
    np.testing.assert_almost_equal(result["dstq_per_seq@1.25"], [0.6750539157136957])
    np.testing.assert_almost_equal(result["dq"], 0.3830597195261614)
    np.testing.assert_almost_equal(result["dq@1.1"], 0.21311475409836064)
    np.testing.assert_almost_equal(result["dq@1.25"], 0.6885245901639344)
    np.testing.assert_almost_equal(result["dq_per_seq@1.1"], [0.21311475409836064])
    np.testing.assert_almost_equal(result["dq_per_seq@1.25"], [0.6885245901639344])


def test_merge_and_validation():
    gt = GT_SEMANTIC * DIVISOR + GT_INSTANCE
    pred = PRED_SEMANTIC * DIVISOR + PRED_INSTANCE
    single = DepthAwareSTQ(3, [2], 255, DIVISOR, 2**16)
    parts = [DepthAwareSTQ(3, [2], 255, DIVISOR, 2**16) for _ in range(2)]
    for i in range(3):
        single.update(gt[i], pred[i], GT_DEPTH, PRED_DEPTH, sequence_id=i % 2)
        parts[i % 2].update(gt[i], pred[i], GT_DEPTH, PRED_DEPTH, sequence_id=i % 2)
    merged = parts[0].merge(pickle.loads(pickle.dumps(parts[1]))).compute()
    assert merged == single.compute()
    with pytest.raises(ValueError, match="non-empty"):
        DepthAwareSTQ(3, [2], 255, DIVISOR, 2**16, ())
    with pytest.raises(ValueError, match="list or tuple"):
        DepthAwareSTQ(3, [2], 255, DIVISOR, 2**16, 1.25)
    with pytest.raises(ValueError, match="same shape"):
        single.update(gt[0], pred[0], GT_DEPTH, PRED_DEPTH[:4])
    with pytest.raises(ValueError, match="real-valued"):
        single.update(gt[0], pred[0], GT_DEPTH.astype(complex), PRED_DEPTH)
