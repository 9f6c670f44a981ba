"""MaX-DeepLab / kMaX-DeepLab losses (DeepLab2 ``model/loss/max_deeplab_loss.py``).

Terms (per sample, ``[B]``), all computed at the model's mask-output resolution with the
ground truth strided-downsampled to it:

* **PQ-style loss** (Wang et al., CVPR 2021, Eq. 10): ground-truth masks (thing
  instances + one mask per stuff class present) are Hungarian-matched to mask slots by
  ``dice(mask) * p(class)``. The *class term* is a softmax cross-entropy on the slot
  classes (positives weighted by the matched dice, alpha 0.75; negatives, labelled void,
  weighted by 0.25 times the slot's overlap with void pixels), averaged over non-zero
  terms. The *mask dice term* is ``1 - dice`` of each matched slot's mask (softmax over
  slots), weighted by its matched class probability and by ``alpha / num_slots``.
* **mask-ID cross-entropy**: per-pixel cross-entropy of the slot softmax against the
  matched ground-truth mask (top-k).
* **instance discrimination**: per-pixel cross-entropy of the similarity between the
  pixel embedding and each ground-truth mask's mean embedding (temperature 0.3) on thing
  pixels; with ``instance_discrimination_sample_k > 0`` (kMaX) the pixel-contrastive
  form on ``k`` pixels sampled by Gumbel-top-k with probability ~ area**-temperature.
* **semantic loss**: the auxiliary semantic head's top-k cross-entropy (optionally on
  ``semantic_sample_k`` sampled pixels).

Auxiliary outputs (kMaX: one per transformer layer) reuse the main output's matching
and add ``aux_<i>``-prefixed terms. Weights 0 disable a term. DeepLab2 quirks kept on
purpose: a ground-truth row matched to a padding column points at slot 0 (``argmax`` of
zeros), and a slot receiving two classes is not a positive. Targets come from
:func:`deeplab_zoo.data.targets.panoptic_deeplab_targets` with ``max_thing_id`` set
(``thing_id_mask``, ``thing_id_class``), plus ``semantic`` / ``semantic_weights``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.datasets import stuff_class_ids
from ..layers.resize import resize_align_corners
from .base import average_top_k_loss, strided_downsample, top_k_cross_entropy
from .matching import hungarian_permutation

__all__ = ["MaXDeepLabLoss", "MaXDeepLabLossConfig", "mask_similarity", "stuff_class_ids"]

_MATCHING_NEGATIVE = -999.0
_MATCHING_POSITIVE = 999.0
_SOFTMAX_MASK = -99999.0


@dataclass
class MaXDeepLabLossConfig:
    """DeepLab2's MaX / kMaX loss options (COCO configs: 1.0 / 3.0 / 0.3 / 1.0)."""

    semantic_weight: float = 1.0
    semantic_top_k: float = 1.0
    pq_style_weight: float = 3.0
    mask_id_cross_entropy_weight: float = 0.3
    mask_id_cross_entropy_top_k: float = 1.0
    instance_discrimination_weight: float = 1.0
    instance_discrimination_top_k: float = 1.0
    focal_loss_alpha: float = 0.75
    instance_discrimination_temperature: float = 0.3
    instance_discrimination_sample_k: int = 0
    instance_discrimination_sample_temperature: float = 0.6
    semantic_sample_k: int = 0
    semantic_sample_temperature: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


def mask_similarity(gt: torch.Tensor, pred: torch.Tensor, metric: str = "dice") -> torch.Tensor:
    """``[B, P, M]`` gt masks x ``[B, P, K]`` soft masks -> ``[B, M, K]`` similarities."""
    intersection = torch.einsum("bpi,bpj->bij", gt, pred)
    gt_area = gt.sum(dim=1)[:, :, None]
    pred_area = pred.sum(dim=1)[:, None, :]
    if metric == "dice":
        denominator = (gt_area + pred_area) / 2
    elif metric == "iou":
        denominator = gt_area + pred_area - intersection
    elif metric == "intersection_over_ground_truth":
        denominator = gt_area.expand_as(intersection)
    elif metric == "intersection_over_prediction":
        denominator = pred_area.expand_as(intersection)
    else:
        raise ValueError(f"unknown mask similarity metric {metric!r}")
    return intersection / (denominator + 1e-5)


def _soft_cross_entropy(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``-sum(target * log_softmax(logits))`` over the last axis."""
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1)


def _gumbel_top_k(logits: torch.Tensor, k: int, generator: torch.Generator | None
                  ) -> torch.Tensor:
    uniform = torch.rand(logits.shape, generator=generator, device="cpu").to(logits.device)
    gumbel = -torch.log(-torch.log(uniform))
    return torch.topk(logits + gumbel, k, dim=-1).indices


def _gather_rows(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values[b, index[b, k]]`` for ``[B, P, ...]`` values and ``[B, k]`` indices."""
    expanded = index.reshape(*index.shape, *([1] * (values.ndim - 2)))
    return torch.gather(values, 1, expanded.expand(*index.shape, *values.shape[2:]))


class MaXDeepLabLoss(nn.Module):
    """``forward(outputs, targets) -> {name: [B]}`` with ``total_loss``.

    Args:
        num_classes: dataset classes (the semantic head's channels).
        ignore_label: void class.
        thing_class_ids: thing classes (the class logits list things first, then stuff).
        config: weights and options.
        generator: RNG of the Gumbel-top-k sampling (kMaX's pixel-contrastive form).
    """

    def __init__(self, num_classes: int, ignore_label: int, thing_class_ids: Sequence[int],
                 config: MaXDeepLabLossConfig | None = None, *,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.thing_class_ids = [int(c) for c in thing_class_ids]
        self.config = config or MaXDeepLabLossConfig()
        self.generator = generator

    # ----------------------------------------------------------------- ground truth
    def _ground_truth(self, targets: dict[str, torch.Tensor], size: tuple[int, int],
                      num_thing_stuff: int) -> dict[str, Any]:
        stuff_ids = stuff_class_ids(num_thing_stuff, self.thing_class_ids, self.ignore_label)
        thing_stuff_ids = self.thing_class_ids + stuff_ids
        semantic = strided_downsample(targets["semantic"], size)
        batch = semantic.shape[0]
        semantic = semantic.reshape(batch, -1).long()
        device = semantic.device
        non_void = (semantic != self.ignore_label).float()
        stuff = torch.as_tensor(stuff_ids, device=device, dtype=torch.long)
        stuff_one_hot = (semantic[..., None] == stuff).float()
        thing_id = strided_downsample(targets["thing_id_mask"], size).reshape(batch, -1).long()
        thing_class = targets["thing_id_class"].long().reshape(batch, -1)
        max_thing_id = thing_class.shape[1]
        thing_mask = (thing_id != -1).float()
        thing_one_hot = (thing_id[..., None]
                         == torch.arange(max_thing_id, device=device)).float()
        one_hot = torch.cat([thing_one_hot, stuff_one_hot], dim=-1)  # [B, P, M]
        area = one_hot.sum(dim=1)  # [B, M]
        pixel_area = torch.einsum("bpm,bm->bp", one_hot, area)
        inverse_area = semantic.shape[1] / pixel_area.clamp(min=1.0)
        semantic_map = torch.cat([thing_class, stuff.expand(batch, -1)], dim=-1)
        semantic_map = (semantic_map + 1) * (area > 0.5).long() - 1
        classes = torch.as_tensor(thing_stuff_ids, device=device, dtype=torch.long)
        semantic_one_hot = (semantic_map[..., None] == classes).float()  # [B, M, C]
        return {"thing_mask": thing_mask, "non_void": non_void, "one_hot": one_hot,
                "semantic_map": semantic_map, "mask_non_void": (semantic_map > -1).float(),
                "semantic_one_hot": semantic_one_hot, "area": area,
                "inverse_area": inverse_area, "thing_stuff_ids": thing_stuff_ids}

    # ------------------------------------------------------------------------ terms
    def _instance_discrimination(self, feature: torch.Tensor, gt: dict[str, Any]
                                 ) -> torch.Tensor:
        cfg = self.config
        if cfg.instance_discrimination_sample_k > 0:
            logits = (torch.log(gt["inverse_area"]) * cfg.instance_discrimination_sample_temperature
                      + (1 - gt["non_void"]) * _SOFTMAX_MASK)
            index = _gumbel_top_k(logits, cfg.instance_discrimination_sample_k, self.generator)
            gt_feature = _gather_rows(gt["one_hot"], index)
            gt_similarity = torch.einsum("bki,bji->bkj", gt_feature, gt_feature)
            gt_similarity = gt_similarity / gt_similarity.sum(-1, keepdim=True).clamp(min=1.0)
            pred_feature = _gather_rows(feature, index)
            pred_similarity = torch.einsum("bki,bji->bkj", pred_feature, pred_feature)
            pred_similarity = pred_similarity / cfg.instance_discrimination_temperature
            pixel = _soft_cross_entropy(gt_similarity, pred_similarity)
            return average_top_k_loss(pixel, cfg.instance_discrimination_top_k)
        mean = torch.einsum("bpd,bpi->bid", feature, gt["one_hot"])
        mean = mean / gt["area"][..., None].clamp(min=1.0)
        mean = mean / mean.square().sum(-1, keepdim=True).clamp(min=1e-12).sqrt()
        similarity = torch.einsum("bpd,bid->bpi", feature, mean)
        similarity = similarity / cfg.instance_discrimination_temperature
        valid = gt["mask_non_void"][:, None, :]
        similarity = similarity * valid + (1.0 - valid) * _SOFTMAX_MASK
        pixel = _soft_cross_entropy(gt["one_hot"], similarity) * gt["thing_mask"]
        return average_top_k_loss(pixel, cfg.instance_discrimination_top_k)

    def _semantic(self, logits: torch.Tensor, targets: dict[str, torch.Tensor],
                  gt: dict[str, Any]) -> torch.Tensor:
        cfg = self.config
        if cfg.semantic_sample_k == 0:
            return top_k_cross_entropy(logits, targets["semantic"], targets["semantic_weights"],
                                       ignore_label=self.ignore_label,
                                       top_k_percent=cfg.semantic_top_k)
        size = logits.shape[-2:]
        labels = strided_downsample(targets["semantic"], size).flatten(1)
        weights = strided_downsample(targets["semantic_weights"], size).flatten(1)
        if labels.shape[1] != gt["inverse_area"].shape[1]:
            raise ValueError("semantic sampling needs the semantic logits at the mask "
                             "output resolution")
        sample = (torch.log(gt["inverse_area"]) * cfg.semantic_sample_temperature
                  + (1 - gt["non_void"]) * _SOFTMAX_MASK)
        index = _gumbel_top_k(sample, cfg.semantic_sample_k, self.generator)
        flat = logits.flatten(2).transpose(1, 2)  # [B, P, C]
        picked = _gather_rows(flat, index).transpose(1, 2)[..., None]  # [B, C, k, 1]
        return top_k_cross_entropy(picked, torch.gather(labels, 1, index)[..., None],
                                   torch.gather(weights, 1, index)[..., None],
                                   ignore_label=self.ignore_label,
                                   top_k_percent=cfg.semantic_top_k)

    # ---------------------------------------------------------------------- forward
    def forward(self, outputs: dict[str, Any], targets: dict[str, torch.Tensor]
                ) -> dict[str, torch.Tensor]:
        cfg = self.config
        heads = [outputs] + list(outputs.get("auxiliary_outputs", ()))
        mask_logits = outputs["pixel_space_mask_logits"].float()
        batch, slots, height, width = mask_logits.shape
        class_logits = outputs["transformer_class_logits"].float()
        gt = self._ground_truth(targets, (height, width), class_logits.shape[-1] - 1)
        num_gt = gt["one_hot"].shape[-1]

        def flat(head: dict[str, torch.Tensor], key: str) -> torch.Tensor:
            # Auxiliary outputs are resized to the main mask resolution first, as
            # DeepLab2's kMaX ``_prepare_auxiliary_results`` does (bilinear, align corners).
            value = resize_align_corners(head[key].float(), (height, width))
            return value.flatten(2).transpose(1, 2)

        def flat_masks(head: dict[str, torch.Tensor]) -> torch.Tensor:
            return flat(head, "pixel_space_mask_logits")

        def flat_features(head: dict[str, torch.Tensor]) -> torch.Tensor:
            return flat(head, "pixel_space_normalized_feature")

        # Matching on the main output.
        logits = flat_masks(outputs)  # [B, P, K]
        probs = torch.softmax(logits, dim=-1)
        non_void = gt["non_void"][..., None]
        dice = mask_similarity(gt["one_hot"], probs * non_void, "dice")  # [B, M, K]
        class_probs = torch.softmax(class_logits, dim=-1)[..., :-1]
        class_similarity = torch.einsum("bij,bkj->bik", gt["semantic_one_hot"], class_probs)
        row_valid = gt["mask_non_void"][..., None]
        filler = _MATCHING_NEGATIVE if slots >= num_gt else _MATCHING_POSITIVE
        weights = -dice * class_similarity * row_valid + (1 - row_valid) * filler
        full = max(slots, num_gt)
        padded = F.pad(weights.detach(), (0, full - slots, 0, full - num_gt),
                       value=_MATCHING_NEGATIVE)
        permutation = hungarian_permutation(padded)  # [B, full, full]
        nonsquare = permutation[:, :num_gt, :slots]
        matched = nonsquare * row_valid
        matched_dice = (dice * matched).amax(dim=1).detach()  # [B, K]
        matched_class = (class_similarity * matched).amax(dim=2).detach()  # [B, M]
        matched_slot = nonsquare.argmax(dim=-1)  # [B, M] (0 where unmatched, as DeepLab2)

        pad_slots = full - slots
        pad_gt = full - num_gt
        full_one_hot = F.pad(gt["one_hot"], (0, pad_gt))
        dice_weight = (F.pad(gt["mask_non_void"], (0, pad_gt))
                       * F.pad(matched_class, (0, pad_gt)).clamp(min=1e-5))

        # Slot classes: one-hot of the matched ground-truth class (void for the others),
        # built over dataset ids shifted by one (void rows land in bucket 0) and then
        # gathered in thing-then-stuff order, as DeepLab2.
        device = logits.device
        ids = torch.as_tensor(gt["thing_stuff_ids"], device=device, dtype=torch.long)
        buckets = torch.zeros(batch, slots, int(ids.max()) + 2, device=device)
        buckets.index_put_((torch.arange(batch, device=device)[:, None].expand(-1, num_gt),
                            matched_slot, gt["semantic_map"] + 1),
                           torch.ones(batch, num_gt, device=device), accumulate=True)
        slot_one_hot = buckets[..., ids + 1]  # [B, K, C]
        positive = (slot_one_hot.amax(dim=-1) == 1.0).float()
        negative = 1.0 - positive
        void_ratio = mask_similarity(1.0 - non_void, probs,
                                     "intersection_over_prediction")[:, 0].detach()
        class_weight = (positive * matched_dice.clamp(min=1e-5)
                        + negative * void_ratio.clamp(min=1e-5))
        class_target = torch.cat([slot_one_hot, negative[..., None]], dim=-1)
        alpha = cfg.focal_loss_alpha
        alpha_weight = alpha * (1.0 - class_target[..., -1]) + (1 - alpha) * class_target[..., -1]

        losses: dict[str, torch.Tensor] = {}
        for index, head in enumerate(heads):
            prefix = "" if index == 0 else f"aux_{index - 1}"  # DeepLab2's key names
            if cfg.pq_style_weight:
                head_class = head["transformer_class_logits"].float()
                term = _soft_cross_entropy(class_target, head_class) * alpha_weight * class_weight
                losses[prefix + "pq_style_loss_class_term"] = (
                    cfg.pq_style_weight * average_top_k_loss(term))
            head_logits = flat_masks(head) if index else logits
            permuted = None
            if cfg.pq_style_weight or cfg.mask_id_cross_entropy_weight:
                full_logits = F.pad(head_logits, (0, pad_slots), value=_SOFTMAX_MASK)
                permuted = torch.einsum("bpi,bji->bpj", full_logits, permutation)
            if cfg.pq_style_weight:
                pred = torch.softmax(permuted, dim=-1)
                valid = full_one_hot.sum(dim=-1, keepdim=True)
                pred = pred * valid
                intersection = 2 * (pred * full_one_hot).sum(dim=1) + 1.0
                denominator = pred.sum(dim=1) + full_one_hot.sum(dim=1) + 1.0
                dice_loss = 1.0 - intersection / denominator  # [B, full]
                modifier = alpha / slots
                losses[prefix + "pq_style_loss_mask_dice_term"] = (
                    cfg.pq_style_weight * modifier * (dice_loss * dice_weight).sum(dim=-1))
            if cfg.mask_id_cross_entropy_weight:
                pixel = _soft_cross_entropy(full_one_hot, permuted) * gt["non_void"]
                losses[prefix + "mask_id_cross_entropy_loss"] = (
                    cfg.mask_id_cross_entropy_weight
                    * average_top_k_loss(pixel, cfg.mask_id_cross_entropy_top_k))
            if cfg.instance_discrimination_weight:
                losses[prefix + "instance_discrimination_loss"] = (
                    cfg.instance_discrimination_weight
                    * self._instance_discrimination(flat_features(head), gt))
        if cfg.semantic_weight and "semantic_logits" in outputs:
            losses["semantic_loss"] = cfg.semantic_weight * self._semantic(
                outputs["semantic_logits"].float(), targets, gt)
        losses["total_loss"] = torch.stack(list(losses.values())).sum(dim=0)
        return losses
