"""What every dataset yields: one dict per image (or per frame pair for video datasets).

Keys (all tensors CPU, channel-first):

- ``image``: uint8 ``[3, H, W]`` RGB (video pairs: ``[6, H, W]`` = current, other frame).
  Readers give uint8; transforms that interpolate or pad with DeepLab2's 127.5 mean
  pixel return float32 on the same 0..255 scale (see ``data/transforms.py``).
- ``panoptic``: int32 ``[H, W]``, ``semantic * label_divisor + instance``; void pixels
  are ``ignore_label * label_divisor``; stuff has instance 0.
- ``crowd``: bool ``[H, W]``, True on crowd regions: every ``iscrowd`` segment of the
  JSON datasets (void in ``panoptic`` under DeepLab2's default treat-crowd-as-ignore)
  and thing pixels with instance 0 (DeepLab2's crowd region); False elsewhere.
- ``depth`` (depth datasets only): float32 ``[H, W]`` metres, 0 where unknown.
- ``prev_panoptic`` / ``next_panoptic`` (video datasets): int32 ``[H, W]`` of the other frame
  (STEP with ``two_frames=True``: previous frame; DVPS: next frame).
- ``name``: str, a stable id (file stem) used in error messages and predictions.
- ``sequence`` (video datasets): str sequence id; ``frame``: int frame index.

Unlabelled splits (``test``) carry only ``image``, ``name`` (and the video keys).

Transforms (``data/transforms.py``) map a sample to a sample; target generation
(``data/targets.py``) adds the training targets of a meta-architecture.
"""
from __future__ import annotations

from typing import TypedDict

import torch


class Sample(TypedDict, total=False):
    image: torch.Tensor
    panoptic: torch.Tensor
    crowd: torch.Tensor
    depth: torch.Tensor
    prev_panoptic: torch.Tensor
    next_panoptic: torch.Tensor
    name: str
    sequence: str
    frame: int
