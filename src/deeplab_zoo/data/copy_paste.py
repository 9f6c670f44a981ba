"""Panoptic copy-paste (kMaX-DeepLab, ECCV 2022), as DeepLab2's sample generator does it.

A second training image (the *source*) is augmented like the canvas but scaled by an
extra factor (``scale``, 0.5 in DeepLab2's kMaX configs), and its crop is padded with a
label of its own (``ignore_label * label_divisor + 1``) so that padding and void stay
apart. A random subset of the source's segment ids is kept: ``k ~ U{0 .. n}`` of the
``n`` distinct ids, in random order; padding is always dropped; then the per-type
options adjust the subset by the id's class: ``"none"`` drops every id of that type,
``"all"`` keeps every one, ``"random"`` leaves the draw as it is (things, stuff, void =
the id ``ignore_label * label_divisor``). Kept pixels take the source's image and label;
the source's instance ids ``i > 0`` become ``label_divisor - 1 - i`` so they cannot
collide with the canvas' ids (both must stay below ``label_divisor // 2``).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .datasets import DatasetInfo
from .sample import Sample

__all__ = ["COPY_PASTE_OPTIONS", "PanopticCopyPaste", "copy_paste_padding_label"]

COPY_PASTE_OPTIONS = ("random", "none", "all")
# Keys that panoptic copy-paste cannot combine (DeepLab2 raises NotImplementedError too).
_UNSUPPORTED = ("prev_panoptic", "next_panoptic", "depth")


def copy_paste_padding_label(info: DatasetInfo) -> int:
    """The label the source crop is padded with: one above void, so that padding (never
    pasted) and void (pasted per ``void_option``) stay apart."""
    return info.void_label + 1


def _check_option(name: str, value: str) -> str:
    if value not in COPY_PASTE_OPTIONS:
        raise ValueError(f"{name} must be one of {COPY_PASTE_OPTIONS}, got {value!r}")
    return value


class PanopticCopyPaste:
    """Pastes a random subset of a source sample's segments onto a canvas sample.

    Args:
        info: the dataset (label divisor, ignore label, thing classes).
        source_transform: augments the raw source sample to the canvas' crop size,
            ``(sample, generator) -> sample``; it must pad labels with
            :func:`copy_paste_padding_label` (``deeplab2_train_transform(..., label_pad=...)``).
        thing_option / stuff_option / void_option: ``"random"``, ``"none"`` or ``"all"``.
    """

    def __init__(self, info: DatasetInfo,
                 source_transform: Callable[[Sample, torch.Generator], Sample], *,
                 thing_option: str = "random", stuff_option: str = "random",
                 void_option: str = "none") -> None:
        self.info = info
        self.source_transform = source_transform
        self.thing_option = _check_option("thing_option", thing_option)
        self.stuff_option = _check_option("stuff_option", stuff_option)
        self.void_option = _check_option("void_option", void_option)
        self.void_label = info.void_label
        self.padding_label = copy_paste_padding_label(info)
        self.thing_classes = torch.tensor(sorted(info.thing_class_ids), dtype=torch.int64)
        self.stuff_classes = torch.tensor(info.stuff_class_ids, dtype=torch.int64)

    def _kept_ids(self, ids: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Which of the distinct source ids ``ids`` are pasted (bool per id)."""
        n = ids.numel()
        count = int(torch.randint(n + 1, (), generator=generator))
        keep = torch.zeros(n, dtype=torch.bool)
        keep[torch.randperm(n, generator=generator)[:count]] = True
        keep &= ids != self.padding_label
        classes = ids // self.info.label_divisor
        for members, option in ((torch.isin(classes, self.thing_classes), self.thing_option),
                                (torch.isin(classes, self.stuff_classes), self.stuff_option),
                                (ids == self.void_label, self.void_option)):
            if option == "none":
                keep &= ~members
            elif option == "all":
                keep |= members
        return keep

    def __call__(self, canvas: Sample, source: Sample,
                 generator: torch.Generator | None = None) -> Sample:
        """The canvas with the pasted segments (image, ``panoptic`` and ``crowd``)."""
        for key in _UNSUPPORTED:
            if key in canvas or key in source:
                raise ValueError(f"panoptic copy-paste does not support samples with {key!r} "
                                 f"(DeepLab2 neither); turn it off for this dataset")
        source = self.source_transform(source, generator)
        label, pasted = canvas["panoptic"].long(), source["panoptic"].long()
        if pasted.shape != label.shape:
            raise ValueError(f"copy-paste source crop {tuple(pasted.shape)} differs from the "
                             f"canvas crop {tuple(label.shape)}")
        divisor = self.info.label_divisor
        limit = divisor // 2
        for name, sample_label in (("canvas", label), ("source", pasted)):
            instances = sample_label % divisor
            if instances.numel() and int(instances.max()) >= limit:
                raise ValueError(f"panoptic copy-paste needs instance ids below label_divisor "
                                 f"// 2 = {limit}; the {name} sample {canvas.get('name', '')!r}"
                                 f" has {int(instances.max())}")
        ids, inverse = torch.unique(pasted, return_inverse=True)
        keep = self._kept_ids(ids, generator)[inverse]
        instance = pasted % divisor
        pasted = torch.where(instance > 0, pasted - instance + (divisor - 1 - instance), pasted)
        out: dict[str, Any] = dict(canvas)
        out["panoptic"] = torch.where(keep, pasted, label).to(canvas["panoptic"].dtype)
        image, source_image = canvas["image"], source["image"]
        dtype = torch.promote_types(image.dtype, source_image.dtype)
        out["image"] = torch.where(keep, source_image.to(dtype), image.to(dtype))
        if "crowd" in canvas or "crowd" in source:
            no_crowd = torch.zeros_like(keep)
            out["crowd"] = torch.where(keep, source.get("crowd", no_crowd),
                                       canvas.get("crowd", no_crowd))
        return out  # type: ignore[return-value]
