"""DeepLab2's losses on hand-computed cases."""
from __future__ import annotations

import math

import pytest
import torch

from deeplab_zoo.losses import (
    PanopticDeepLabLoss,
    PanopticDeepLabLossConfig,
    average_top_k_loss,
    depth_loss,
    relative_squared_error,
    silog_error,
    strided_downsample,
    top_k_cross_entropy,
    top_k_l1,
    top_k_mse,
)


def test_average_top_k_divides_by_non_zero_count() -> None:
    loss = torch.tensor([[0.0, 1.0, 2.0, 3.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    assert average_top_k_loss(loss).tolist() == [2.0, 0.0]  # 6 / 3 non-zero; 0 / 0 -> 0
    # k = round(0.4 * 5) = 2 -> {3, 2}
    assert average_top_k_loss(loss, 0.4).tolist() == [2.5, 0.0]
    # k = round(0.5 * 5) = round(2.5) = 2 (half to even, as tf.math.round)
    assert average_top_k_loss(loss, 0.5)[0].item() == 2.5
    # k = round(0.7 * 5) = 4 -> {3, 2, 1, 0}: the zero is selected but not counted
    assert average_top_k_loss(loss, 0.7)[0].item() == 2.0
    assert average_top_k_loss(loss, 0.0).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="top_k_percent"):
        average_top_k_loss(loss, 1.5)


def test_top_k_cross_entropy_hand_computed() -> None:
    logits = torch.zeros(1, 3, 1, 4)
    logits[0, :, 0, 0] = torch.tensor([2.0, 0.0, 0.0])
    logits[0, :, 0, 1] = torch.tensor([0.0, 1.0, 0.0])
    labels = torch.tensor([[[0, 2, 255, 1]]])
    weights = torch.tensor([[[1.0, 3.0, 1.0, 0.0]]])
    lse0 = math.log(math.exp(2) + 2)
    lse1 = math.log(math.e + 2)
    pixel = [lse0 - 2.0, 3.0 * lse1, 0.0, 0.0]  # ignore -> 0, weight 0 -> 0
    expected = (pixel[0] + pixel[1]) / 2
    out = top_k_cross_entropy(logits, labels, weights, ignore_label=255)
    assert out.shape == (1,) and out.item() == pytest.approx(expected, rel=1e-6)
    # top 25 % of 4 pixels = the single largest (weighted) loss.
    top = top_k_cross_entropy(logits, labels, weights, ignore_label=255, top_k_percent=0.25)
    assert top.item() == pytest.approx(pixel[1], rel=1e-6)
    # ignore label inside the class range (COCO's 0) is also skipped.
    ignore0 = top_k_cross_entropy(logits, labels, torch.ones_like(weights), ignore_label=0)
    assert ignore0.item() == pytest.approx((lse1 + math.log(3.0)) / 2, rel=1e-6)


def test_cross_entropy_downsamples_labels_with_stride() -> None:
    labels = torch.arange(25).reshape(1, 5, 5) % 2
    assert strided_downsample(labels, (3, 3)).tolist() == [[[0, 0, 0], [0, 0, 0], [0, 0, 0]]]
    assert strided_downsample(labels, (5, 5)) is labels
    with pytest.raises(ValueError, match="integer stride"):
        strided_downsample(labels, (4, 4))
    logits = torch.zeros(1, 2, 3, 3, requires_grad=True)
    out = top_k_cross_entropy(logits, labels, torch.ones(1, 5, 5), ignore_label=None)
    assert out.item() == pytest.approx(math.log(2))
    out.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_mse_and_l1() -> None:
    target = torch.tensor([[[1.0, 0.0], [0.5, 0.0]]])
    pred = torch.tensor([[[0.0, 0.0], [0.0, 2.0]]])
    weights = torch.tensor([[[1.0, 1.0], [2.0, 0.0]]])
    # squared errors 1, 0, 0.25 (x2 weight), 4 (x0): non-zero = {1, 0.5} -> 0.75
    assert top_k_mse(target, pred, weights).item() == pytest.approx(0.75)
    assert top_k_l1(target, pred, weights).item() == pytest.approx((1.0 + 1.0) / 2)
    # [B, 2, H, W] offsets: mean over the two channels per pixel, then weights.
    offset_t = torch.zeros(1, 2, 1, 2)
    offset_p = torch.tensor([[[[2.0, 0.0]], [[4.0, 1.0]]]])
    out = top_k_l1(offset_t, offset_p, torch.ones(1, 1, 2))
    assert out.item() == pytest.approx((3.0 + 0.5) / 2)
    with pytest.raises(ValueError, match="shapes differ"):
        top_k_l1(offset_t, offset_p[:, :1], torch.ones(1, 1, 2))


def test_depth_losses_hand_computed() -> None:
    gt = torch.tensor([[[1.0, math.e], [0.0, 0.0]]])  # zeros are unknown
    pred = torch.tensor([[[1.0, 1.0], [5.0, 7.0]]])
    # d = log gt - log pred = [0, 1]: mean(d^2) - mean(d)^2 = 0.5 - 0.25
    assert silog_error(gt, pred).item() == pytest.approx(0.25)
    rel = math.sqrt(((math.e - 1) / math.e) ** 2 / 2)
    assert relative_squared_error(gt, pred).item() == pytest.approx(rel, rel=1e-6)
    assert depth_loss(gt, pred[:, None]).item() == pytest.approx(0.25 + rel, rel=1e-6)
    empty = depth_loss(torch.zeros(1, 2, 2), torch.ones(1, 2, 2))
    assert empty.item() == 0.0
    exact = torch.full((1, 2, 2), 3.0, requires_grad=True)
    depth_loss(torch.full((1, 2, 2), 3.0), exact).backward()
    assert torch.isfinite(exact.grad).all()


def _outputs_and_targets() -> tuple[dict, dict]:
    generator = torch.Generator().manual_seed(0)
    b, c, h, w = 2, 4, 5, 6
    outputs = {"semantic_logits": torch.randn(b, c, h, w, generator=generator),
               "center_heatmap": torch.rand(b, 1, h, w, generator=generator),
               "offset_map": torch.randn(b, 2, h, w, generator=generator),
               "frame_offset_map": torch.randn(b, 2, h, w, generator=generator),
               "depth_pred": torch.rand(b, 1, h, w, generator=generator) + 0.5}
    targets = {"semantic": torch.randint(0, c, (b, h, w), generator=generator),
               "semantic_weights": torch.ones(b, h, w),
               "center": torch.rand(b, h, w, generator=generator),
               "center_weights": torch.ones(b, h, w),
               "offset": torch.randn(b, 2, h, w, generator=generator),
               "offset_weights": (torch.rand(b, h, w, generator=generator) > 0.5).float(),
               "frame_offset": torch.randn(b, 2, h, w, generator=generator),
               "frame_offset_weights": torch.ones(b, h, w),
               "depth": torch.rand(b, h, w, generator=generator) + 1.0}
    return outputs, targets


def test_panoptic_deeplab_loss_combines_weighted_terms() -> None:
    outputs, targets = _outputs_and_targets()
    config = PanopticDeepLabLossConfig(motion_weight=0.5, depth_weight=0.1)
    loss = PanopticDeepLabLoss(4, 255, config)
    out = loss(outputs, targets)
    assert list(out) == loss.loss_names == ["semantic_loss", "center_loss", "regression_loss",
                                             "motion_loss", "depth_loss", "total_loss"]
    ce = top_k_cross_entropy(outputs["semantic_logits"], targets["semantic"],
                             targets["semantic_weights"], ignore_label=255, top_k_percent=0.2)
    torch.testing.assert_close(out["semantic_loss"], ce)
    torch.testing.assert_close(out["center_loss"], 200 * top_k_mse(
        targets["center"], outputs["center_heatmap"][:, 0], targets["center_weights"]))
    torch.testing.assert_close(out["regression_loss"], 0.01 * top_k_l1(
        targets["offset"], outputs["offset_map"], targets["offset_weights"]))
    torch.testing.assert_close(out["motion_loss"], 0.5 * top_k_l1(
        targets["frame_offset"], outputs["frame_offset_map"], targets["frame_offset_weights"]))
    torch.testing.assert_close(out["depth_loss"], 0.1 * depth_loss(
        targets["depth"], outputs["depth_pred"]))
    total = sum(v for k, v in out.items() if k != "total_loss")
    torch.testing.assert_close(out["total_loss"], total)
    assert out["total_loss"].shape == (2,)

    semantic = PanopticDeepLabLoss(4, 255, semantic_only=True)(outputs, targets)
    assert list(semantic) == ["semantic_loss", "total_loss"]
