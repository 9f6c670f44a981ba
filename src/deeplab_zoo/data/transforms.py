"""Sample -> Sample augmentation, as DeepLab2's ``input_preprocessing.py`` applies it.

DeepLab2's training order is ``Resize`` (only with min/max resize values) ->
``RandomScale`` -> ``AutoAugmentColor`` -> ``RandomCrop`` (pads first when the image
is smaller than the crop) -> ``RandomHorizontalFlip``; evaluation is ``Resize`` ->
``Pad``. :func:`deeplab2_train_transform` / :func:`deeplab2_eval_transform` build them.

Every transform is called as ``t(sample, generator=None)``; random draws come from
``generator`` (a ``torch.Generator``) or torch's global generator, which DataLoader
seeds per worker. Samples are not modified in place.

Image dtype: readers give ``uint8``. Like DeepLab2 (which works in float and never
rounds), transforms that interpolate (``RandomScale``, ``Resize``) return ``float32``
on the same 0..255 scale, and so do ``RandomCrop``/``Pad`` when the pad value (DeepLab2:
the mean pixel 127.5) is not a uint8 value. The result is the same dtype for every
sample, so batches collate. Normalise with ``x / 127.5 - 1`` afterwards.

Labels (``panoptic``, ``prev_panoptic``, ``next_panoptic``, ``crowd``) are resized with
TF's nearest-neighbour rule (``align_corners=True``) and padded with
``ignore_label * label_divisor`` (``crowd``: False); ``depth`` is resized the same way,
divided by the scale factor (in DeepLab2's 1/256 m steps) and padded with ``ignore_depth``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .autoaugment import apply_policy, get_policy
from .datasets import DatasetInfo
from .sample import Sample

MEAN_PIXEL = 127.5
LABEL_KEYS = ("panoptic", "prev_panoptic", "next_panoptic")
DEPTH_SCALE = 256.0


class Transform:
    """Base class: ``__call__(sample, generator=None) -> sample``."""

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Applies transforms in order, passing the generator to each :class:`Transform`."""

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        for t in self.transforms:
            sample = t(sample, generator) if isinstance(t, Transform) else t(sample)
        return sample


# -- resizing helpers ------------------------------------------------------------------------
def _tf_nearest_index(in_size: int, out_size: int) -> torch.Tensor:
    """Source indices of TF1 ``resize_nearest_neighbor(align_corners=True)``."""
    if out_size > 1:
        scale = np.float32(in_size - 1) / np.float32(out_size - 1)
    else:
        scale = np.float32(in_size) / np.float32(out_size)
    pos = np.arange(out_size, dtype=np.float32) * np.float32(scale)
    index = np.floor(pos)
    index = index + ((pos - index) >= 0.5)  # roundf: halves away from zero
    return torch.from_numpy(np.minimum(index.astype(np.int64), in_size - 1))


def resize_nearest(label: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resizes ``[H, W]`` (any dtype) with TF's align-corners nearest rule."""
    rows = _tf_nearest_index(label.shape[-2], size[0])
    cols = _tf_nearest_index(label.shape[-1], size[1])
    return label[..., rows[:, None], cols[None, :]]


def resize_bilinear(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resizes ``[C, H, W]`` bilinearly with aligned corners; returns float32."""
    image = image.float()
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=True)[0]


def _resize_sample(sample: Sample, size: tuple[int, int], depth_scale: float | None) -> Sample:
    out = dict(sample)
    out["image"] = resize_bilinear(sample["image"], size)
    for key in (*LABEL_KEYS, "crowd"):
        if key in sample:
            out[key] = resize_nearest(sample[key], size)
    if "depth" in sample:
        if depth_scale is None:
            raise ValueError("resizing a depth sample to a fixed size is not supported "
                             "(DeepLab2 forbids min/max resize values with depth)")
        depth = resize_nearest(sample["depth"], size)
        steps = torch.floor(depth * DEPTH_SCALE / np.float32(depth_scale))
        out["depth"] = steps / DEPTH_SCALE
    return out  # type: ignore[return-value]


# -- random scale ------------------------------------------------------------------------------
def get_random_scale(min_scale: float, max_scale: float, step: float,
                     generator: torch.Generator | None = None) -> float:
    """DeepLab2's ``get_random_scale``: fixed, uniform (``step == 0``) or one of the
    ``int((max - min) / step + 1)`` evenly spaced values."""
    if min_scale < 0 or min_scale > max_scale:
        raise ValueError(f"unexpected scale range [{min_scale}, {max_scale}]")
    if min_scale == max_scale:
        return float(np.float32(min_scale))
    if step == 0:
        u = float(torch.rand((), dtype=torch.float32, generator=generator))
        return float(np.float32(min_scale + (max_scale - min_scale) * u))
    num_steps = int((max_scale - min_scale) / step + 1)
    values = np.linspace(min_scale, max_scale, num_steps).astype(np.float32)
    return float(values[int(torch.randint(num_steps, (), generator=generator))])


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """``int(size * scale)`` in float32, as DeepLab2 (at least 1 pixel)."""
    s = np.float32(scale)
    return max(1, int(np.float32(height) * s)), max(1, int(np.float32(width) * s))


class RandomScale(Transform):
    """Rescales by a factor from :func:`get_random_scale` (DeepLab2 configs: 0.5, 2.0, 0.1)."""

    def __init__(self, min_scale: float = 0.5, max_scale: float = 2.0, step: float = 0.1) -> None:
        if min_scale < 0 or min_scale > max_scale:
            raise ValueError(f"unexpected scale range [{min_scale}, {max_scale}]")
        self.min_scale, self.max_scale, self.step = min_scale, max_scale, step

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        scale = get_random_scale(self.min_scale, self.max_scale, self.step, generator)
        if scale == 1.0:
            out = dict(sample)
            out["image"] = sample["image"].float()
            return out  # type: ignore[return-value]
        height, width = sample["image"].shape[-2:]
        return _resize_sample(sample, scaled_size(height, width, scale), scale)


# -- resize to range (evaluation, optional in training) ------------------------------------------
def _pair(value: int | Sequence[int] | None) -> tuple[int, int] | None:
    if not value:
        return None
    if isinstance(value, int):
        value = (value, value)
    value = tuple(int(v) for v in value)
    if len(value) == 1:
        value = (value[0], value[0])
    if len(value) != 2:
        raise ValueError(f"expected (height, width), got {value}")
    if value[0] <= 0 or value[1] <= 0:
        return None
    return value  # type: ignore[return-value]


def resize_to_range_size(height: int, width: int, min_size=None, max_size=None,
                         factor: int | None = None) -> tuple[int, int]:
    """Output size of DeepLab2's ``resize_to_range`` (aspect-preserving, optional
    ``factor * k + 1`` rounding)."""
    out_h, out_w = height, width
    min_size, max_size = _pair(min_size), _pair(max_size)
    if min_size:
        f = np.float32(max(min_size[0] / out_h, min_size[1] / out_w))
        out_h = int(np.floor(np.float32(out_h) * f))
        out_w = int(np.floor(np.float32(out_w) * f))
    if max_size:
        if factor:
            max_size = (max_size[0] - (max_size[0] - 1) % factor,
                        max_size[1] - (max_size[1] - 1) % factor)
        f = min(np.float32(min(max_size[0] / out_h, max_size[1] / out_w)), np.float32(1.0))
        out_h = int(np.floor(np.float32(out_h) * f))
        out_w = int(np.floor(np.float32(out_w) * f))
    if factor:
        out_h += (factor - (out_h - 1) % factor) % factor
        out_w += (factor - (out_w - 1) % factor) % factor
    return out_h, out_w


class Resize(Transform):
    """DeepLab2's ``resize_to_range``: scale so both sides reach ``min_size`` without
    exceeding ``max_size`` (each ``(h, w)`` or int), sides ``factor * k + 1`` if given."""

    def __init__(self, min_size: int | Sequence[int] | None = None,
                 max_size: int | Sequence[int] | None = None,
                 factor: int | None = None) -> None:
        self.min_size, self.max_size, self.factor = min_size, max_size, factor

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        height, width = sample["image"].shape[-2:]
        size = resize_to_range_size(height, width, self.min_size, self.max_size, self.factor)
        if size == (height, width):
            out = dict(sample)
            out["image"] = sample["image"].float()
            return out  # type: ignore[return-value]
        return _resize_sample(sample, size, None)


# -- padding and cropping ---------------------------------------------------------------------
def _image_dtype(image: torch.Tensor, pad_value: float) -> torch.dtype:
    if image.dtype == torch.uint8 and float(pad_value).is_integer() and 0 <= pad_value <= 255:
        return torch.uint8
    return torch.float32 if not image.is_floating_point() else image.dtype


def _pad_sample(sample: Sample, top: int, left: int, height: int, width: int,
                image_pad: float, label_pad: int, depth_pad: float) -> Sample:
    """Pads every spatial entry to ``height x width`` with the image at ``(top, left)``."""
    h, w = sample["image"].shape[-2:]
    bottom, right = height - h - top, width - w - left
    if min(top, left, bottom, right) < 0:
        raise ValueError(f"cannot pad {h}x{w} to {height}x{width} at ({top}, {left})")
    out = dict(sample)
    image = sample["image"].to(_image_dtype(sample["image"], image_pad))
    pads = (left, right, top, bottom)
    if any(pads):
        out["image"] = F.pad(image, pads, value=image_pad)
        for key in LABEL_KEYS:
            if key in sample:
                out[key] = F.pad(sample[key], pads, value=label_pad)
        if "crowd" in sample:
            out["crowd"] = F.pad(sample["crowd"], pads, value=False)
        if "depth" in sample:
            out["depth"] = F.pad(sample["depth"], pads, value=depth_pad)
    else:
        out["image"] = image
    return out  # type: ignore[return-value]


def _crop_sample(sample: Sample, top: int, left: int, height: int, width: int) -> Sample:
    out = dict(sample)
    for key in ("image", *LABEL_KEYS, "crowd", "depth"):
        if key in sample:
            out[key] = sample[key][..., top:top + height, left:left + width]
    return out  # type: ignore[return-value]


def _randint(high: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(max(high, 1), (), generator=generator))


class RandomCrop(Transform):
    """DeepLab2's training crop: pad to at least ``size`` at a random offset (image with
    ``image_pad``, labels with ``ignore_label * label_divisor`` or ``label_pad`` if given,
    depth with ``ignore_depth``), then crop ``size`` at a random offset."""

    def __init__(self, size: int | Sequence[int], *, image_pad: float = MEAN_PIXEL,
                 ignore_label: int = 255, label_divisor: int = 1000,
                 ignore_depth: float = 0.0, label_pad: int | None = None) -> None:
        self.size = _pair(size)
        if self.size is None:
            raise ValueError(f"crop size must be positive, got {size}")
        self.image_pad = image_pad
        self.ignore_label, self.label_divisor = ignore_label, label_divisor
        self.ignore_depth = ignore_depth
        self.label_pad = ignore_label * label_divisor if label_pad is None else label_pad

    @classmethod
    def for_dataset(cls, size: int | Sequence[int], info: DatasetInfo,
                    label_pad: int | None = None) -> RandomCrop:
        return cls(size, ignore_label=info.ignore_label, label_divisor=info.label_divisor,
                   label_pad=label_pad)

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        crop_h, crop_w = self.size
        h, w = sample["image"].shape[-2:]
        pad_h, pad_w = max(h, crop_h), max(w, crop_w)
        # As DeepLab2: the pad offset is uniform in [0, max(margin, 1)).
        top = _randint(crop_h - h, generator)
        left = _randint(crop_w - w, generator)
        sample = _pad_sample(sample, top, left, pad_h, pad_w, self.image_pad, self.label_pad,
                             self.ignore_depth)
        top = _randint(pad_h - crop_h + 1, generator)
        left = _randint(pad_w - crop_w + 1, generator)
        return _crop_sample(sample, top, left, crop_h, crop_w)


class Pad(Transform):
    """DeepLab2's evaluation padding: bottom/right up to ``size`` (an error if larger)."""

    def __init__(self, size: int | Sequence[int], *, image_pad: float = MEAN_PIXEL,
                 ignore_label: int = 255, label_divisor: int = 1000,
                 ignore_depth: float = 0.0) -> None:
        self.size = _pair(size)
        if self.size is None:
            raise ValueError(f"pad size must be positive, got {size}")
        self.image_pad = image_pad
        self.ignore_label, self.label_divisor = ignore_label, label_divisor
        self.ignore_depth = ignore_depth

    @classmethod
    def for_dataset(cls, size: int | Sequence[int], info: DatasetInfo) -> Pad:
        return cls(size, ignore_label=info.ignore_label, label_divisor=info.label_divisor)

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        return _pad_sample(sample, 0, 0, self.size[0], self.size[1], self.image_pad,
                           self.ignore_label * self.label_divisor, self.ignore_depth)


class RandomHorizontalFlip(Transform):
    """Flips image and every label left-right with probability ``prob`` (ids unchanged)."""

    def __init__(self, prob: float = 0.5) -> None:
        self.prob = prob

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        if float(torch.rand((), generator=generator)) >= self.prob:
            return sample
        out = dict(sample)
        for key in ("image", *LABEL_KEYS, "crowd", "depth"):
            if key in sample:
                out[key] = sample[key].flip(-1)
        return out  # type: ignore[return-value]


class AutoAugmentColor(Transform):
    """DeepLab2's AutoAugment colour policy on the image only (each frame of a video
    pair independently, as DeepLab2). Float images are truncated to uint8 for the ops
    and returned as float32, uint8 images stay uint8."""

    def __init__(self, policy: str = "simple_classification_policy",
                 magnitude_scale: float | None = None) -> None:
        self.policy = policy
        self.magnitude_scale = magnitude_scale
        self._policy = get_policy(policy, magnitude_scale)

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        image = sample["image"]
        if image.shape[0] % 3:
            raise ValueError(f"expected 3 channels per frame, got {image.shape[0]}")
        as_uint8 = image if image.dtype == torch.uint8 else image.to(torch.uint8)
        frames = [apply_policy(frame, self._policy, generator)
                  for frame in as_uint8.split(3, dim=0)]
        result = torch.cat(frames, 0)
        out = dict(sample)
        out["image"] = result if image.dtype == torch.uint8 else result.to(image.dtype)
        return out  # type: ignore[return-value]


def deeplab2_train_transform(crop_size: int | Sequence[int], info: DatasetInfo, *,
                             min_scale: float = 1.0, max_scale: float = 1.0,
                             scale_step: float = 0.0, autoaugment_policy: str | None = None,
                             min_resize: int | Sequence[int] | None = None,
                             max_resize: int | Sequence[int] | None = None,
                             resize_factor: int | None = None,
                             label_pad: int | None = None) -> Compose:
    """DeepLab2's training preprocessing for a dataset (config ``augmentations`` fields).
    ``label_pad`` overrides the crop's label padding (panoptic copy-paste marks padding
    apart from void)."""
    steps: list[Transform] = []
    if _pair(min_resize) or _pair(max_resize):
        steps.append(Resize(min_resize, max_resize, resize_factor))
    steps.append(RandomScale(min_scale, max_scale, scale_step))
    if autoaugment_policy:
        steps.append(AutoAugmentColor(autoaugment_policy))
    steps += [RandomCrop.for_dataset(crop_size, info, label_pad), RandomHorizontalFlip(0.5)]
    return Compose(steps)


def deeplab2_eval_transform(crop_size: int | Sequence[int], info: DatasetInfo, *,
                            min_resize: int | Sequence[int] | None = None,
                            max_resize: int | Sequence[int] | None = None,
                            resize_factor: int | None = None) -> Compose:
    """DeepLab2's evaluation preprocessing: resize to range (max defaults to the crop
    size) then pad bottom/right to the crop size."""
    max_resize = _pair(max_resize) or _pair(crop_size)
    return Compose([Resize(min_resize, max_resize, resize_factor),
                    Pad.for_dataset(crop_size, info)])
