"""DeepLab2's evaluation/test_utils_test.py cases, on our readers of the copied test images."""
from __future__ import annotations

import numpy as np
from metrics_testdata import TEAM_GT_CLASSES, TESTDATA, read_class_map, read_image
from metrics_testdata import read_instances_and_classes as read_instances


def test_deeplab2_read_test_image():
    assert read_image("team_pred_class.png").shape == (231, 345, 4)


def test_deeplab2_reads_segmentation_with_color_map():
    labels = read_class_map("team_pred_class.png", {(0, 0, 0): 0, (0, 0, 255): 1,
                                                    (255, 0, 0): 23})
    image = read_image("team_pred_class.png")
    np.testing.assert_array_equal(labels == 0, (image[:, :, 0] == 0) & (image[:, :, 2] == 0))
    np.testing.assert_array_equal(labels == 1, image[:, :, 2] == 255)
    np.testing.assert_array_equal(labels == 23, image[:, :, 0] == 255)


def test_deeplab2_reads_gt_segmentation():
    table = {**TEAM_GT_CLASSES, 198: 23}
    instances, classes = read_instances("team_gt_instance.png", table)
    assert instances.shape == classes.shape == (231, 345)
    np.testing.assert_array_equal(instances == 0, classes == 0)
    np.testing.assert_array_equal(instances == 198, classes == 23)
    np.testing.assert_array_equal((instances != 0) & (instances != 198), classes == 1)


def test_testdata_files_are_small():
    files = sorted(TESTDATA.glob("*.png"))
    assert len(files) == 9
    assert all(f.stat().st_size < 100_000 for f in files)
