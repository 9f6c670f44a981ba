"""DepthMetrics: DeepLab2's depth_metrics_test.py cases."""
from __future__ import annotations

import numpy as np
import pytest

from deeplab_zoo.metrics import DepthMetrics

GT_1 = np.array([[5.44108091, 53.30197697, 61.06181767, 14.36723114],
                 [0, 39.68081126, 58.77974067, 0],
                 [40.57883826, 22.15134852, 31.46813478, 13.52603324]])
PRED_1 = np.array([[4.87694111, 50.09085582, 55.74533641, 10.13579195],
                   [13.76178147, 41.62431592, 56.97362032, 81.48369608],
                   [43.12005689, 15.54622258, 24.1993478, 12.14451783]])


def _values(result):
    return [result[k] for k in ("silog", "sq_error_rel", "abs_error_rel", "depth_inlier")]


def test_deeplab2_depth_metrics_on_single_image():
    metric = DepthMetrics()
    metric.update(GT_1, PRED_1)
    np.testing.assert_allclose(_values(metric.compute()),
                               [14.154233, 0.0268667, 0.13191505, 0.7], atol=1e-4)


def test_deeplab2_depth_metrics_on_multiple_images():
    metric = DepthMetrics()
    metric.update(GT_1, PRED_1)
    metric.update(
        np.array([[79.56192404, 25.68145225, 0, 39.88486608, 68.91602466],
                  [79.53460057, 2.55741031, 36.05057241, 68.04747416, 3.7783227],
                  [0, 0, 72.47336778, 59.02611644, 66.07499008],
                  [25.88578395, 58.2202574, 27.39066477, 29.83094038, 37.99239669]]),
        np.array([[83.80952145, 27.23367361, 72.52687468, 35.28400183, 72.41126444],
                  [77.62373864, 0.87004049, 32.1619225, 66.91361903, 2.60688436],
                  [15.30294603, 9.76419241, 68.61650198, 57.14559324, 66.88452603],
                  [24.54818109, 61.60855251, 31.50312052, 26.02325866, 36.4019569]]))
    metric.update(np.array([[50.80100791, 0.41130084, 58.85031668],
                            [29.44932853, 23.48806627, 30.17890056]]),
                  np.array([[49.66563966, 0.62070026, 58.84231026],
                            [32.26735775, 28.07405648, 33.7131882]]))
    np.testing.assert_allclose(_values(metric.compute()),
                               [18.442057, 0.0388692, 0.13392223, 0.8052287], atol=1e-4)


def test_merge_and_validation():
    a, b, whole = DepthMetrics(), DepthMetrics(), DepthMetrics()
    a.update(GT_1, PRED_1)
    b.update(GT_1 * 2, PRED_1)
    whole.update(GT_1, PRED_1)
    whole.update(GT_1 * 2, PRED_1)
    assert a.merge(b).compute() == whole.compute()
    with pytest.raises(ValueError, match="same shape"):
        DepthMetrics().update(GT_1, PRED_1[:2])
    assert np.isnan(DepthMetrics().compute()["silog"])
