"""MaX-DeepLab / kMaX losses and the Hungarian matcher on hand-computed cases."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from deeplab_zoo.losses.matching import hungarian_permutation, linear_sum_assignment
from deeplab_zoo.losses.max_deeplab import (
    MaXDeepLabLoss,
    MaXDeepLabLossConfig,
    mask_similarity,
    stuff_class_ids,
)

LN3, LN2 = math.log(3.0), math.log(2.0)


def test_linear_sum_assignment_is_optimal() -> None:
    rng = np.random.default_rng(0)
    for _ in range(100):
        n, m = (int(v) for v in rng.integers(1, 6, size=2))
        cost = rng.normal(size=(n, m)).round(1)
        rows, cols = linear_sum_assignment(cost)
        assert len(rows) == min(n, m) and len(set(cols.tolist())) == len(cols)
        if n <= m:
            best = min(sum(cost[i, p[i]] for i in range(n))
                       for p in itertools.permutations(range(m), n))
        else:
            best = min(sum(cost[p[j], j] for j in range(m))
                       for p in itertools.permutations(range(n), m))
        assert cost[rows, cols].sum() == pytest.approx(best)
    perm = hungarian_permutation(torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]))
    assert perm.tolist() == [[[0.0, 1.0], [1.0, 0.0]]]
    with pytest.raises(ValueError):
        linear_sum_assignment(np.array([[np.nan]]))


def test_helpers() -> None:
    assert stuff_class_ids(2, [1], 255) == [0]
    assert stuff_class_ids(4, [1, 2], 0) == [3, 4]  # COCO-style void 0
    gt = torch.tensor([[[1.0], [1.0], [0.0]]])
    pred = torch.tensor([[[0.5], [1.0], [0.5]]])
    assert mask_similarity(gt, pred, "dice").item() == pytest.approx(1.5 / 2, rel=1e-4)
    assert mask_similarity(gt, pred, "iou").item() == pytest.approx(1.5 / 2.5, rel=1e-4)
    with pytest.raises(ValueError):
        mask_similarity(gt, pred, "nope")


def _case() -> tuple[dict, dict]:
    """2x2 pixels: thing 0 on the top row, stuff class 0 on the bottom row; 2 slots."""
    mask_logits = torch.zeros(1, 2, 2, 2)
    mask_logits[0, 0, 0, :] = LN3  # slot 0: 0.75 on the top row
    mask_logits[0, 1, 1, :] = LN3  # slot 1: 0.75 on the bottom row
    class_logits = torch.tensor([[[LN2, 0.0, 0.0], [0.0, LN2, 0.0]]])  # [thing1, stuff0, void]
    feature = torch.zeros(1, 2, 2, 2)
    feature[0, 0, 0, :] = 1.0
    feature[0, 1, 1, :] = 1.0
    outputs = {"pixel_space_mask_logits": mask_logits, "transformer_class_logits": class_logits,
               "pixel_space_normalized_feature": feature,
               "semantic_logits": torch.zeros(1, 2, 2, 2)}
    targets = {"semantic": torch.tensor([[[1, 1], [0, 0]]]),
               "semantic_weights": torch.ones(1, 2, 2),
               "thing_id_mask": torch.tensor([[[0, 0], [-1, -1]]]),
               "thing_id_class": torch.tensor([[1, -1]])}
    return outputs, targets


def test_max_deeplab_loss_hand_computed() -> None:
    outputs, targets = _case()
    outputs["auxiliary_outputs"] = ({k: v for k, v in outputs.items()
                                     if k != "semantic_logits"},)
    loss = MaXDeepLabLoss(2, 255, (1,))(outputs, targets)
    dice = 1.5 / (2 + 1e-5)
    # Class term: both slots matched (dice 0.75 each), target prob 0.5, alpha 0.75.
    class_term = 3.0 * 0.75 * dice * LN2
    assert loss["pq_style_loss_class_term"].item() == pytest.approx(class_term, rel=1e-5)
    # Dice term: 1 - (2 * 1.5 + 1) / (2 + 2 + 1) = 0.2 per matched mask, weighted by the
    # matched class probability 0.5, times 3 * alpha / num_slots.
    assert loss["pq_style_loss_mask_dice_term"].item() == pytest.approx(
        3.0 * 0.75 / 2 * (0.2 * 0.5 * 2), rel=1e-5)
    assert loss["mask_id_cross_entropy_loss"].item() == pytest.approx(
        0.3 * math.log(4 / 3), rel=1e-5)
    # Top-row pixels vs mask means (1, 0) / void (masked) / (0, 1), temperature 0.3.
    assert loss["instance_discrimination_loss"].item() == pytest.approx(
        math.log(1 + math.exp(-1 / 0.3)), rel=1e-5)
    assert loss["semantic_loss"].item() == pytest.approx(LN2, rel=1e-6)
    for key in ("pq_style_loss_class_term", "pq_style_loss_mask_dice_term",
                "mask_id_cross_entropy_loss", "instance_discrimination_loss"):
        torch.testing.assert_close(loss["aux_0" + key], loss[key])  # DeepLab2's key names
    total = sum(v for k, v in loss.items() if k != "total_loss")
    torch.testing.assert_close(loss["total_loss"], total)


def test_unmatched_slots_are_void_and_weighted_by_void_overlap() -> None:
    outputs, targets = _case()
    targets["semantic"] = torch.tensor([[[1, 1], [255, 255]]])  # bottom row void
    outputs["transformer_class_logits"] = torch.zeros(1, 2, 3)
    cfg = MaXDeepLabLossConfig(mask_id_cross_entropy_weight=0, instance_discrimination_weight=0,
                               semantic_weight=0)
    loss = MaXDeepLabLoss(2, 255, (1,), cfg)(outputs, targets)
    # Slot 0 matches the thing (dice of the non-void part 1.5 / 1.75); slot 1 is negative,
    # its weight = its mass on void (1.5 of 2) and (1 - alpha). Both CEs are log 3.
    dice = 1.5 / (1.75 + 1e-5)
    void = 1.5 / (2 + 1e-5)
    expected = 3.0 * (0.75 * dice + 0.25 * void) * math.log(3.0) / 2
    assert loss["pq_style_loss_class_term"].item() == pytest.approx(expected, rel=1e-5)
    assert set(loss) == {"pq_style_loss_class_term", "pq_style_loss_mask_dice_term",
                         "total_loss"}


def test_pixel_contrastive_instance_discrimination() -> None:
    outputs, targets = _case()
    cfg = MaXDeepLabLossConfig(instance_discrimination_sample_k=4, pq_style_weight=0,
                               mask_id_cross_entropy_weight=0, semantic_weight=0)
    generator = torch.Generator().manual_seed(0)
    loss = MaXDeepLabLoss(2, 255, (1,), cfg, generator=generator)(outputs, targets)
    # Every pixel: half its target mass on each same-mask pixel (similarity 1 / 0.3).
    expected = math.log(2 + 2 * math.exp(-1 / 0.3))
    assert loss["instance_discrimination_loss"].item() == pytest.approx(expected, rel=1e-5)


def test_gradients_flow_and_shapes() -> None:
    generator = torch.Generator().manual_seed(1)
    b, k, h, w, classes = 2, 5, 9, 9, 4  # things (1, 2), stuff (0, 3)
    outputs = {
        "pixel_space_mask_logits": torch.randn(b, k, h, w, generator=generator,
                                               requires_grad=True),
        "transformer_class_logits": torch.randn(b, k, classes + 1, generator=generator,
                                                requires_grad=True),
        "pixel_space_normalized_feature": torch.nn.functional.normalize(
            torch.randn(b, 8, h, w, generator=generator), dim=1).requires_grad_(),
        "semantic_logits": torch.randn(b, classes, h, w, generator=generator,
                                       requires_grad=True),
    }
    semantic = torch.randint(0, classes, (b, 17, 17), generator=generator)
    thing_id = torch.where((semantic == 1) | (semantic == 2), semantic - 1, -1)
    targets = {"semantic": semantic, "semantic_weights": torch.ones(b, 17, 17),
               "thing_id_mask": thing_id,
               "thing_id_class": torch.tensor([[1, 2, -1], [1, 2, -1]])}
    loss = MaXDeepLabLoss(classes, 255, (1, 2))(outputs, targets)  # 17x17 -> 9x9 strided
    assert all(v.shape == (b,) and torch.isfinite(v).all() for v in loss.values())
    loss["total_loss"].sum().backward()
    for name, tensor in outputs.items():
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0, name
