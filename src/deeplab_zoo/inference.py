"""``model.predict``: images in, post-processed maps out (normalise, pad, run, crop)."""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class Prediction:
    """Post-processed result for one image (numpy arrays at the image's size).

    ``panoptic`` ids are ``semantic * label_divisor + instance``; ``centers`` is
    ``[K, 2]`` (y, x) with ``scores`` ``[K]``. Fields a model does not produce are None.
    """

    semantic: np.ndarray
    panoptic: np.ndarray | None = None
    instance: np.ndarray | None = None
    depth: np.ndarray | None = None
    centers: np.ndarray | None = None
    scores: np.ndarray | None = None
    label_divisor: int = 1000
    void_label: int | None = None
    colors: Sequence[tuple[int, int, int]] = ()

    def overlay(self, image: Any, alpha: float = 0.5) -> np.ndarray:
        """RGB uint8 image with the panoptic (or semantic) map blended over ``image``."""
        from .viz.overlay import overlay_prediction

        return overlay_prediction(to_uint8_image(image), self, alpha=alpha)


def to_uint8_image(image: Any) -> np.ndarray:
    """HWC uint8 RGB from a PIL image, HWC numpy (uint8 or float in [0, 1]) or CHW tensor."""
    return (to_float_image(image).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


def to_float_image(image: Any) -> torch.Tensor:
    """CHW float32 tensor in [0, 1]; ValueError/TypeError naming what is wrong."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL.Image
        image = np.array(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"image must be HxWx3 (RGB), got array of shape {image.shape}")
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    elif isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image tensor must be 3xHxW (RGB), got shape {tuple(image.shape)}")
        tensor = image.detach().cpu()
    else:
        raise TypeError(f"image must be a numpy array, PIL image or torch tensor, got "
                        f"{type(image).__name__}")
    if tensor.shape[1] == 0 or tensor.shape[2] == 0:
        raise ValueError(f"image is empty: shape {tuple(tensor.shape)}")
    if tensor.dtype == torch.uint8:
        return tensor.float() / 255.0
    if not tensor.is_floating_point():
        raise TypeError(f"image dtype must be uint8 or float in [0, 1], got {tensor.dtype}")
    return tensor.float()


def padded_size(size: int, output_stride: int) -> int:
    """Smallest ``k * output_stride + 1 >= size``: feature maps then align with pixels."""
    return max(1, math.ceil((size - 1) / output_stride)) * output_stride + 1


class PredictMixin:
    """Adds ``predict`` to a meta-architecture with ``forward``/``postprocess``."""

    @torch.no_grad()
    def predict(self, images: Any, *, batch_size: int | None = None,
                scales: Sequence[float] = (1.0,), flip: bool = False) -> list[Prediction]:
        """Runs the model on one image or a list of images of any size.

        Images are normalised with the model's mean/std, padded bottom/right with the
        mean pixel to ``k * output_stride + 1`` (as DeepLab2 pads to its crop),
        post-processed, and cropped back to each image's size. ``scales`` / ``flip``
        evaluate at several scales and left-right flipped, averaged as DeepLab2 does.
        """
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
        scales = tuple(float(s) for s in scales)
        if not scales or min(scales) <= 0:
            raise ValueError(f"scales must be a non-empty sequence of positive numbers, "
                             f"got {scales!r}")
        single = not isinstance(images, (list, tuple))
        tensors = [to_float_image(im) for im in ([images] if single else images)]
        if not tensors:
            raise ValueError("predict() got an empty list of images")
        was_training = self.training
        self.eval()
        try:
            results: list[Prediction | None] = [None] * len(tensors)
            for indices in _batches(tensors, batch_size):
                batch = [tensors[i] for i in indices]
                for index, prediction in zip(indices,
                                             self._predict_batch(batch, scales, bool(flip))):
                    results[index] = prediction
        finally:
            self.train(was_training)
        return results[0] if single else results

    def padded_input_size(self, height: int, width: int) -> tuple[int, int]:
        """Where ``predict`` pads an image of ``height x width`` to."""
        return padded_size(height, self.output_stride), padded_size(width, self.output_stride)

    def prepare_batch(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """Same-size CHW [0, 1] images -> normalised, mean-padded NCHW batch."""
        device = next(self.parameters()).device
        mean = torch.tensor(self.mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, 3, 1, 1)
        height, width = tensors[0].shape[-2:]
        ph, pw = self.padded_input_size(height, width)
        batch = (torch.stack(tensors).to(device) - mean) / std
        # Padding with zeros after normalisation = padding with the mean pixel.
        return torch.nn.functional.pad(batch, (0, pw - width, 0, ph - height))

    def _predict_batch(self, tensors: list[torch.Tensor], scales: tuple[float, ...],
                       flip: bool) -> Iterable[Prediction]:
        height, width = tensors[0].shape[-2:]
        batch = self.prepare_batch(tensors)
        if scales == (1.0,) and not flip:
            outputs = self.forward(batch)
        elif hasattr(self, "forward_tta"):
            outputs = self.forward_tta(batch, scales, flip)
        else:
            raise ValueError(f"{type(self).__name__} does not support multi-scale/flip "
                             "inference")
        maps = self.postprocess(outputs)
        info = self.dataset
        center_points = maps.pop("center_points", None)
        center_scores = maps.pop("center_scores", None)
        maps = {**outputs, **maps}
        for i in range(batch.shape[0]):
            def crop(name: str, index: int = i) -> np.ndarray | None:
                value = maps.get(name)
                if value is None:
                    return None
                return value[index, ..., :height, :width].squeeze(0).cpu().numpy()

            centers = scores = None
            if center_points is not None:
                centers = center_points[i].cpu().numpy()
                scores = center_scores[i].cpu().numpy()
                inside = (centers[:, 0] < height) & (centers[:, 1] < width)  # not in padding
                centers, scores = centers[inside], scores[inside]
            yield Prediction(semantic=crop("semantic_pred"), panoptic=crop("panoptic_pred"),
                             instance=crop("instance_pred"), depth=crop("depth_pred"),
                             centers=centers, scores=scores, label_divisor=info.label_divisor,
                             void_label=info.void_label, colors=info.colors)

    @property
    def mean(self) -> tuple[float, float, float]:
        return tuple(getattr(self, "_mean", (0.5, 0.5, 0.5)))

    @property
    def std(self) -> tuple[float, float, float]:
        return tuple(getattr(self, "_std", (0.5, 0.5, 0.5)))


def _batches(tensors: list[torch.Tensor], batch_size: int | None):
    """Groups image indices by image size, in chunks of ``batch_size``."""
    groups: dict[tuple[int, int], list[int]] = {}
    for index, tensor in enumerate(tensors):
        groups.setdefault((tensor.shape[1], tensor.shape[2]), []).append(index)
    for indices in groups.values():
        step = batch_size or len(indices)
        for start in range(0, len(indices), step):
            yield indices[start:start + step]
