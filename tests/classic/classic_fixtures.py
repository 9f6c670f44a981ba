"""Helpers of the research/deeplab (classic) tests: fixtures, seeded models, staged outputs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from deeplab_zoo.factory import create_model
from deeplab_zoo.layers.resize import resize_align_corners, scale_dimension
from deeplab_zoo.parity import seeded_variables, to_hwc
from deeplab_zoo.weights import load_tf_variables

#: The 65x65 cases of ``classic/cases`` (all of them).
CASES = [
    "deeplabv3plus_xception65_voc", "deeplabv3plus_xception65_os8_voc",
    "deeplabv3plus_xception41_cityscapes", "deeplabv3plus_xception71_cityscapes",
    "deeplabv3plus_xception71_dpc_cityscapes", "deeplabv3_mobilenet_v2_voc",
    "deeplabv3_resnet_v1_50_beta_voc", "deeplabv3plus_resnet_v1_101_beta_voc",
    "autodeeplab_hnasnet_cityscapes",
]
FLOAT_OUTPUTS = ("backbone_features", "aspp_features", "semantic_logits_native",
                 "semantic_logits")


def case_spec(root: Path, case: str) -> dict:
    """``classic/cases.json`` entry: registry name (+ tag) and builder kwargs."""
    return json.loads((root / "classic" / "cases.json").read_text())[case]


def seeded_model(root: Path, keys_file: Path, spec: dict,
                 crop_size: tuple[int, int]) -> torch.nn.Module:
    """The case's model with the fixtures' seeded TF-Slim variables loaded strictly."""
    model = create_model(spec["model"], crop_size=crop_size, **spec.get("kwargs", {}))
    load_tf_variables(model, seeded_variables(root, keys_file), strict=True)
    return model.eval()


def normalise(image: np.ndarray) -> torch.Tensor:
    """research/deeplab's ``(2/255) * x - 1`` in float32, as NCHW."""
    x = image.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)
    return torch.from_numpy(x).permute(2, 0, 1)[None]


@torch.no_grad()
def staged_outputs(model: torch.nn.Module, image: np.ndarray) -> dict[str, np.ndarray]:
    """Every fixture output from one backbone pass (HWC numpy, batch dropped)."""
    x = normalise(image)
    endpoints = model.encoder(x)
    head = model.decoder
    # research/deeplab resizes the logits to scale_dimension(crop, 1 / logits stride).
    size = [scale_dimension(s, 1.0 / model.logits_output_stride) for s in x.shape[-2:]]
    native = resize_align_corners(head(endpoints)["semantic_logits"], size)
    logits = resize_align_corners(native, x.shape[-2:])
    pred = model.postprocess({"semantic_logits": logits})["semantic_pred"]
    return {"backbone_features": to_hwc(endpoints[head.feature_key]),
            "aspp_features": to_hwc(head.aspp_features(endpoints)),
            "semantic_logits_native": to_hwc(native), "semantic_logits": to_hwc(logits),
            "semantic_pred": pred[0].numpy()}
