"""CocoMaskAP / CocoInstanceAP: DeepLab2's coco_instance_ap_test.py cases and a comparison
with calling pycocotools directly."""
from __future__ import annotations

import contextlib
import io
import pickle

import numpy as np
import pytest
from metrics_testdata import (
    TEAM_GT_CLASSES,
    combine,
    read_class_map,
    read_image,
    read_instances_and_classes,
)

pytest.importorskip("pycocotools", reason="pycocotools is not installed (pip install "
                    "pycocotools, or the 'test' / 'eval' extras)")
from pycocotools import mask as mask_api  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

from deeplab_zoo.metrics import COCO_STAT_NAMES, CocoInstanceAP, CocoMaskAP  # noqa: E402

# --------------------------------------------------------------------------------------------
# DeepLab2 evaluation/coco_instance_ap_test.py (expected numbers are DeepLab2's assertions).


def test_deeplab2_empty_evaluation():
    result = CocoMaskAP().compute()
    np.testing.assert_array_almost_equal(result["stats"], np.zeros(12))


def test_deeplab2_evaluates_single_image():
    metric = CocoMaskAP()
    metric.update(
        gt_masks=np.array([[[0, 0, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 0, 0, 0]]],
                          np.uint8),
        gt_classes=np.array([8]), gt_is_crowd=np.array([False]),
        det_masks=np.array([[[0, 0, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 1, 1, 0],
                             [0, 0, 0, 0, 0]]], np.uint8),
        det_scores=np.array([0.8], np.float32), det_classes=np.array([8]))
    # IoU 0.8: a true positive for 7 of the 10 IoU thresholds.
    expected = [0.7, 1, 1, 0.7, -1, -1, 0.7, 0.7, 0.7, 0.7, -1, -1]
    np.testing.assert_array_almost_equal(metric.compute()["stats"], expected)


def test_deeplab2_panoptic_evaluates_single_image():
    num_classes, divisor = 3, 256
    gt_instances, gt_classes = read_instances_and_classes("team_gt_instance.png",
                                                          TEAM_GT_CLASSES)
    pred_classes = read_class_map("team_pred_class.png")
    pred_instances = read_image("team_pred_instance.png", "L")
    pred = combine(pred_classes, pred_instances, divisor)
    metric = CocoInstanceAP(num_classes, [1, 2], divisor, 0)
    metric.update(combine(gt_classes, gt_instances, divisor), pred,
                  np.ones((num_classes, *pred.shape), np.float32),
                  np.ones(pred.shape, np.float32))
    expected = [0.2549, 0.9356, 0.1215, -1.0, 0.2399, 0.501, 0.0812, 0.2688, 0.2688, -1.0,
                0.2583, 0.5]
    np.testing.assert_almost_equal(metric.compute()["stats"], expected, decimal=4)


_GT_CLASSES_4x4 = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [0, 0, 2, 2], [0, 0, 2, 2]])
_PRED_CLASSES_4x4 = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 2, 2], [0, 0, 2, 2]])
_INSTANCES_4x4 = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [0, 0, 3, 3], [0, 0, 3, 3]])


def test_deeplab2_evaluates_with_scores():
    divisor = 256
    gt = combine(_GT_CLASSES_4x4, _INSTANCES_4x4, divisor)
    pred = combine(_PRED_CLASSES_4x4, _INSTANCES_4x4, divisor)
    # [num_classes, H, W] (DeepLab2's test builds the [H, W, C] transpose of this).
    probs = np.array([
        [[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]],
        [[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]],
        [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]],
    ], np.float32)
    metric = CocoInstanceAP(3, [0, 1, 2], divisor, 0)
    bad_scores = np.array([[0.4, 0.4, 0.9, 0.9], [0.4, 0.4, 0.9, 0.9], [0.0, 0.0, 0.8, 0.8],
                           [0.0, 0.0, 0.8, 0.8]], np.float32)
    metric.update(gt, pred, probs, bad_scores)
    np.testing.assert_almost_equal(
        metric.compute()["stats"],
        [0.5025, 0.5025, 0.5025, 0.5025, -1., -1., 0.25, 0.75, 0.75, 0.75, -1., -1.], decimal=4)
    good_scores = np.array([[0.9, 0.9, 0.4, 0.4], [0.9, 0.9, 0.4, 0.4], [0.0, 0.0, 0.8, 0.8],
                            [0.0, 0.0, 0.8, 0.8]], np.float32)
    metric.reset()
    metric.update(gt, pred, probs, good_scores)
    np.testing.assert_almost_equal(
        metric.compute()["stats"],
        [0.75248, 0.75248, 0.75248, 0.75248, -1, -1, 0.75, 0.75, 0.75, 0.75, -1, -1], decimal=4)


def test_deeplab2_ignores_crowds():
    divisor = 256
    gt = combine(_GT_CLASSES_4x4, _INSTANCES_4x4, divisor)
    pred = combine(_PRED_CLASSES_4x4, _INSTANCES_4x4, divisor)
    metric = CocoInstanceAP(3, [0, 1, 2], divisor, 0)
    metric.update(gt, pred, np.ones((3, 4, 4), np.float32), np.ones((4, 4), np.float32),
                  is_crowd_map=_INSTANCES_4x4 == 2)
    np.testing.assert_almost_equal(metric.compute()["stats"],
                                   [1., 1., 1., 1., -1., -1., 1., 1., 1., 1., -1., -1.],
                                   decimal=4)


def test_deeplab2_ignores_stuff():
    divisor = 256
    gt_classes = np.array([[3, 3, 2, 2], [3, 3, 2, 2], [0, 0, 2, 2], [0, 0, 2, 2]])
    pred_classes = np.array([[3, 3, 1, 1], [3, 3, 1, 1], [0, 0, 2, 2], [0, 0, 2, 2]])
    gt = combine(gt_classes, _INSTANCES_4x4, divisor)
    pred = combine(pred_classes, _INSTANCES_4x4, divisor)
    metric = CocoInstanceAP(4, [3], divisor, 0)
    metric.update(gt, pred, np.ones((4, 4, 4), np.float32), np.ones((4, 4), np.float32))
    np.testing.assert_almost_equal(metric.compute()["stats"],
                                   [1., 1., 1., 1., -1., -1., 1., 1., 1., 1., -1., -1.],
                                   decimal=4)


# --------------------------------------------------------------------------------------------
# Against pycocotools called directly on hand-made masks.


def _box(mask, y0, x0, y1, x1):
    mask[y0:y1, x0:x1] = 1
    return mask


def _hand_made_images():
    """Two images: (gt masks, gt classes, gt crowd, det masks, det scores, det classes)."""
    images = []
    shape = (60, 80)
    gt = [_box(np.zeros(shape, np.uint8), 5, 5, 25, 30), _box(np.zeros(shape, np.uint8),
                                                               30, 40, 55, 75),
          _box(np.zeros(shape, np.uint8), 0, 50, 12, 70), _box(np.zeros(shape, np.uint8),
                                                                40, 0, 58, 20)]
    det = [_box(np.zeros(shape, np.uint8), 6, 5, 25, 31), _box(np.zeros(shape, np.uint8),
                                                                32, 42, 55, 70),
           _box(np.zeros(shape, np.uint8), 0, 0, 10, 10), _box(np.zeros(shape, np.uint8),
                                                                41, 1, 58, 22),
           _box(np.zeros(shape, np.uint8), 1, 52, 12, 70)]
    images.append((np.stack(gt), np.array([1, 1, 2, 3]), np.array([0, 0, 0, 1]),
                   np.stack(det), np.array([0.9, 0.75, 0.6, 0.3, 0.5]), np.array([1, 1, 1, 3, 2])))
    shape = (40, 40)
    gt = [_box(np.zeros(shape, np.uint8), 0, 0, 20, 20), _box(np.zeros(shape, np.uint8),
                                                               20, 20, 40, 40)]
    det = [_box(np.zeros(shape, np.uint8), 0, 0, 18, 20), _box(np.zeros(shape, np.uint8),
                                                                22, 22, 40, 40),
           _box(np.zeros(shape, np.uint8), 0, 20, 20, 40)]
    images.append((np.stack(gt), np.array([2, 1]), np.array([0, 0]), np.stack(det),
                   np.array([0.8, 0.95, 0.4]), np.array([2, 1, 2])))
    return images


def _direct_pycocotools(images) -> list[float]:
    dataset = {"images": [], "annotations": [], "categories": []}
    detections = []
    categories = set()
    ann_id = 1
    for image_id, (gm, gc, crowd, dm, ds, dc) in enumerate(images, start=1):
        dataset["images"].append({"id": image_id, "height": gm.shape[1], "width": gm.shape[2]})
        for m, c, k in zip(gm, gc, crowd):
            rle = mask_api.encode(np.asfortranarray(m))
            dataset["annotations"].append({
                "id": ann_id, "image_id": image_id, "category_id": int(c), "segmentation": rle,
                "area": float(m.sum()), "bbox": mask_api.toBbox(rle).tolist(),
                "iscrowd": int(k)})
            ann_id += 1
            categories.add(int(c))
        for m, s, c in zip(dm, ds, dc):
            detections.append({"image_id": image_id, "category_id": int(c), "score": float(s),
                               "segmentation": mask_api.encode(np.asfortranarray(m))})
            categories.add(int(c))
    dataset["categories"] = [{"id": c} for c in sorted(categories)]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(detections), iouType="segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return list(evaluator.stats)


def test_mask_ap_matches_direct_pycocotools():
    images = _hand_made_images()
    metric = CocoMaskAP()
    for gm, gc, crowd, dm, ds, dc in images:
        metric.update(gm, gc, dm, ds, dc, gt_is_crowd=crowd)
    result = metric.compute()
    expected = _direct_pycocotools(images)
    np.testing.assert_allclose(result["stats"], expected, rtol=0, atol=1e-12)
    assert [result[name] for name in COCO_STAT_NAMES] == result["stats"]
    assert 0 < result["ap"] < 1


def test_panoptic_ap_matches_direct_pycocotools():
    # Paint the hand-made masks into panoptic maps; detections' scores come from the score map.
    divisor = 100
    for gm, gc, crowd, dm, ds, dc in _hand_made_images():
        shape = gm.shape[1:]
        gt = np.zeros(shape, np.int64)  # class 0 = stuff background
        crowd_map = np.zeros(shape, bool)
        for k, (m, c) in enumerate(zip(gm, gc), start=1):
            gt[m == 1] = c * divisor + k
            crowd_map[m == 1] = bool(crowd[k - 1])
        pred = np.zeros(shape, np.int64)
        score_map = np.zeros(shape, np.float32)
        for k, (m, c, s) in enumerate(zip(dm, dc, ds), start=1):
            pred[m == 1] = c * divisor + k
            score_map[m == 1] = s
        # The panoptic maps are non-overlapping, so re-derive the masks from them.
        gt_ids = [i for i in dict.fromkeys(gt.reshape(-1).tolist()) if i // divisor != 0]
        pred_ids = [i for i in dict.fromkeys(pred.reshape(-1).tolist()) if i // divisor != 0]
        direct = [(np.stack([(gt == i).astype(np.uint8) for i in gt_ids]),
                   np.array([i // divisor for i in gt_ids]),
                   np.array([int(crowd_map[gt == i][0]) for i in gt_ids]),
                   np.stack([(pred == i).astype(np.uint8) for i in pred_ids]),
                   np.array([float(score_map[pred == i][0]) for i in pred_ids]),
                   np.array([i // divisor for i in pred_ids]))]
        metric = CocoInstanceAP(4, [1, 2, 3], divisor, 255)
        metric.update(gt, pred, np.ones((4, *shape), np.float32), score_map,
                      is_crowd_map=crowd_map)
        np.testing.assert_allclose(metric.compute()["stats"], _direct_pycocotools(direct),
                                   atol=1e-7)


def test_merge_of_halves():
    images = _hand_made_images()
    whole, first, second = CocoMaskAP(), CocoMaskAP(), CocoMaskAP()
    for i, (gm, gc, crowd, dm, ds, dc) in enumerate(images):
        whole.update(gm, gc, dm, ds, dc, gt_is_crowd=crowd)
        (first if i == 0 else second).update(gm, gc, dm, ds, dc, gt_is_crowd=crowd)
    merged = first.merge(pickle.loads(pickle.dumps(second)))
    assert merged.compute()["stats"] == whole.compute()["stats"]


def test_input_validation():
    metric = CocoInstanceAP(3, [1, 2], 256, 0)
    gt = np.zeros((4, 4), np.int64)
    ones = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="same shape"):
        metric.update(gt, np.zeros((4, 5), np.int64), np.ones((3, 4, 4)), ones)
    with pytest.raises(ValueError, match="semantic_probability"):
        metric.update(gt, gt, np.ones((4, 4, 3)), ones)
    with pytest.raises(ValueError, match="integer labels"):
        metric.update(gt.astype(float), gt, np.ones((3, 4, 4)), ones)
    with pytest.raises(ValueError, match="non-negative"):
        metric.update(gt - 1, gt, np.ones((3, 4, 4)), ones)
    with pytest.raises(ValueError, match="thing_classes"):
        CocoInstanceAP(3, [5], 256, 0)
    with pytest.raises(ValueError, match="length"):
        CocoMaskAP().update(np.zeros((1, 2, 2), np.uint8), [1, 2], np.zeros((0, 2, 2)), [], [])
    with pytest.raises(ValueError, match="binary"):
        CocoMaskAP().update(np.zeros((1, 2, 2)), [1], np.zeros((0, 2, 2)), [], [])
    with pytest.raises(ValueError, match="0 and 1"):
        CocoMaskAP().update(np.full((1, 2, 2), 3), [1], np.zeros((0, 2, 2)), [], [])
    assert metric.num_images == 0


def test_run_based_rles_equal_mask_encode():
    from deeplab_zoo.metrics.coco_instance_ap import _column_major_rles

    rng = np.random.default_rng(0)
    label_map = rng.integers(0, 6, size=(7, 9)) * 10
    label_map[:, -1] = 50  # an id whose mask ends the column-major scan
    ids = np.unique(label_map)
    rles = _column_major_rles(mask_api, label_map, ids)
    for i, rle in zip(ids.tolist(), rles):
        expected = mask_api.encode(np.asfortranarray((label_map == i).astype(np.uint8)))
        assert rle == expected
