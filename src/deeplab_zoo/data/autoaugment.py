"""DeepLab2's AutoAugment colour policies (``data/preprocessing/autoaugment_{policy,utils}.py``).

The ops act on one ``uint8 [3, H, W]`` RGB image and mirror DeepLab2's TF versions,
including their integer truncations (and the TF ``contrast`` op's quirk of blending
towards ``num_pixels / 256`` rather than the mean grey level). Labels are never touched.

A policy is a list of sub-policies; each sub-policy is two ``(op, probability,
magnitude)`` steps. One sub-policy is drawn uniformly per image and each of its steps
runs with its probability.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

MAX_LEVEL = 10.0

# Operation names, in the order the encoded policies index them.
REDUCED_OPERATIONS = ("AutoContrast", "Equalize", "Invert", "Posterize", "Solarize", "Color",
                      "Contrast", "Brightness", "Sharpness")
PROBABILITIES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)

# (operation index, probability index, magnitude) x 2 per sub-policy.
SIMPLE_CLASSIFICATION_POLICY = (
    (8, 2, 7, 7, 1, 10),
    (1, 0, 9, 6, 1, 10),
    (8, 1, 9, 5, 1, 9),
    (4, 1, 7, 1, 3, 9),
    (8, 1, 1, 1, 1, 7),
)

Policy = list[list[tuple[str, float, float]]]


def decode_policy(encoded: tuple[tuple[int, ...], ...], magnitude_scale: float = 1.0) -> Policy:
    """Turns the integer encoding into ``[[(op name, probability, magnitude), ...], ...]``."""
    policy = []
    for row in encoded:
        if len(row) != 6:
            raise ValueError(f"a sub-policy has 6 numbers, got {row}")
        steps = []
        for op, prob, magnitude in (row[:3], row[3:]):
            steps.append((REDUCED_OPERATIONS[op], PROBABILITIES[prob], magnitude * magnitude_scale))
        policy.append(steps)
    return policy


def get_policy(name: str, magnitude_scale: float | None = None) -> Policy:
    """A named DeepLab2 policy: ``simple_classification_policy`` or
    ``simple_classification_policy_magnitude_scale_{s}``; ``magnitude_scale`` overrides."""
    base = "simple_classification_policy"
    scale = 1.0
    if name.startswith(base + "_magnitude_scale_"):
        try:
            scale = float(name[len(base + "_magnitude_scale_"):])
        except ValueError:
            scale = -1.0
    elif name != base:
        scale = -1.0
    if scale < 0:
        raise ValueError(f"unknown AutoAugment policy {name!r}; known: {base!r}, "
                         f"'{base}_magnitude_scale_0.2' (any scale)")
    if magnitude_scale is not None:
        scale = magnitude_scale
    return decode_policy(SIMPLE_CLASSIFICATION_POLICY, scale)


# -- ops on uint8 [3, H, W] ------------------------------------------------------------------
def blend(image1: torch.Tensor, image2: torch.Tensor, factor: float) -> torch.Tensor:
    """``image1 + factor * (image2 - image1)``; clipped only when extrapolating (as TF)."""
    if factor == 0.0:
        return image1
    if factor == 1.0:
        return image2
    a = image1.float()
    out = a + factor * (image2.float() - a)
    if not 0.0 < factor < 1.0:
        out = out.clamp(0.0, 255.0)
    return out.to(torch.uint8)


def grayscale(image: torch.Tensor) -> torch.Tensor:
    """TF ``rgb_to_grayscale`` of a uint8 image: ``[1, H, W]`` uint8."""
    weights = torch.tensor([0.2989, 0.5870, 0.1140], dtype=torch.float32)
    flt = image.float() * (1.0 / 255.0)
    gray = torch.einsum("chw,c->hw", flt, weights)
    return (gray * 255.5).to(torch.uint8)[None]


def autocontrast(image: torch.Tensor) -> torch.Tensor:
    channels = []
    for channel in image:
        lo, hi = float(channel.min()), float(channel.max())
        if hi > lo:
            scale = 255.0 / (hi - lo)
            channel = (channel.float() * scale + (-lo * scale)).clamp(0.0, 255.0).to(torch.uint8)
        channels.append(channel)
    return torch.stack(channels)


def equalize(image: torch.Tensor) -> torch.Tensor:
    channels = []
    for channel in image:
        flat = channel.reshape(-1).long()
        histo = torch.bincount(flat, minlength=256)
        nonzero = histo[histo != 0]
        step = int((nonzero.sum() - nonzero[-1]) // 255)
        if step == 0:
            channels.append(channel)
            continue
        lut = (torch.cumsum(histo, 0) + step // 2) // step
        lut = torch.cat([lut.new_zeros(1), lut[:-1]]).clamp(0, 255)
        channels.append(lut[flat].reshape(channel.shape).to(torch.uint8))
    return torch.stack(channels)


def invert(image: torch.Tensor) -> torch.Tensor:
    return 255 - image


def posterize(image: torch.Tensor, bits: int) -> torch.Tensor:
    shift = 8 - bits
    if shift >= 8:
        return torch.zeros_like(image)
    return (image >> shift) << shift


def solarize(image: torch.Tensor, threshold: int = 128) -> torch.Tensor:
    return torch.where(image < threshold, image, 255 - image)


def color(image: torch.Tensor, factor: float) -> torch.Tensor:
    return blend(grayscale(image).expand_as(image), image, factor)


def contrast(image: torch.Tensor, factor: float) -> torch.Tensor:
    # TF's op: the histogram's sum (the pixel count) / 256 stands in for the mean.
    gray = grayscale(image)
    mean = float(gray.numel()) / 256.0
    degenerate = torch.full_like(image, int(min(max(mean, 0.0), 255.0)))
    return blend(degenerate, image, factor)


def brightness(image: torch.Tensor, factor: float) -> torch.Tensor:
    return blend(torch.zeros_like(image), image, factor)


def sharpness(image: torch.Tensor, factor: float) -> torch.Tensor:
    kernel = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = kernel.expand(image.shape[0], 1, 3, 3)
    smooth = F.conv2d(image.float()[None], kernel, groups=image.shape[0])[0]
    smooth = smooth.clamp(0.0, 255.0).to(torch.uint8)
    result = image.clone()
    result[:, 1:-1, 1:-1] = smooth
    return blend(result, image, factor)


def _enhance(level: float) -> tuple[float]:
    return ((level / MAX_LEVEL) * 1.8 + 0.1,)


OPS: dict[str, tuple[Callable[..., torch.Tensor], Callable[[float], tuple]]] = {
    "AutoContrast": (autocontrast, lambda level: ()),
    "Equalize": (equalize, lambda level: ()),
    "Invert": (invert, lambda level: ()),
    "Posterize": (posterize, lambda level: (int((level / MAX_LEVEL) * 4),)),
    "Solarize": (solarize, lambda level: (int((level / MAX_LEVEL) * 256),)),
    "Color": (color, _enhance),
    "Contrast": (contrast, _enhance),
    "Brightness": (brightness, _enhance),
    "Sharpness": (sharpness, _enhance),
}


def apply_policy(image: torch.Tensor, policy: Policy,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Draws one sub-policy and applies its steps (each with its probability) to ``image``."""
    if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a uint8 [3, H, W] image, got {image.dtype} "
                         f"{tuple(image.shape)}")
    choice = int(torch.randint(len(policy), (), generator=generator))
    for name, prob, level in policy[choice]:
        draw = float(torch.rand((), dtype=torch.float32, generator=generator))
        if draw + prob >= 1.0:  # DeepLab2: floor(uniform + prob) as bool
            func, to_args = OPS[name]
            image = func(image, *to_args(level))
    return image
