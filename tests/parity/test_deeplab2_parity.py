"""DeepLab2 parity: seeded weights -> our model -> DeepLab2's stored outputs (issue 2 models)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deeplab_zoo.parity import (
    DISCRETE_AGREEMENT,
    DISCRETE_OUTPUTS,
    FLOAT_TOL,
    build_seeded_model,
    compare_case,
    relative_error,
    to_hwc,
    to_input,
)

CONV_CASES = [
    "deeplabv3_resnet50", "deeplabv3plus_resnet50", "deeplabv3_mobilenet_v3_large",
    "panoptic_deeplab_mobilenet_v3_small_os32", "panoptic_deeplab_mobilenet_v3_large_os32",
    "panoptic_deeplab_resnet50_os32", "panoptic_deeplab_resnet50_os32_coco",
    "panoptic_deeplab_resnet50_beta_os32", "panoptic_deeplab_wide_resnet41_os16",
    "panoptic_deeplab_swidernet_sac_1_1_1_os16",
]
LARGE_CASES = [
    "deeplabv3_resnet50", "panoptic_deeplab_resnet50_os32", "panoptic_deeplab_wide_resnet41_os16",
    "panoptic_deeplab_mobilenet_v3_large_os32", "panoptic_deeplab_resnet50_os32_even",
]


def _model_name(root, case: str) -> str:
    return json.loads((root / "cases.json").read_text())[case]["model"]


def _assert_within_tolerance(errors: dict[str, float], ref) -> None:
    assert any(name in errors for name in ("semantic_logits",)), "no raw output compared"
    for name, value in errors.items():
        if name in DISCRETE_OUTPUTS:
            assert value >= DISCRETE_AGREEMENT, f"{name}: only {value:.4%} of pixels agree"
        else:
            assert value <= FLOAT_TOL, f"{name}: relative error {value:.3g} > {FLOAT_TOL}"
    assert {n for n in DISCRETE_OUTPUTS if n in ref.files} <= set(errors)


@pytest.mark.parametrize("case", CONV_CASES)
def test_case_65x65(parity_dir, case):
    ref = np.load(parity_dir / "cases" / f"{case}.npz")
    image = ref["input"]
    model = build_seeded_model(parity_dir, parity_dir / "cases" / f"{case}.keys.json.gz",
                               _model_name(parity_dir, case), crop_size=image.shape[:2])
    _assert_within_tolerance(compare_case(model, ref, image), ref)


@pytest.mark.parametrize("case", LARGE_CASES)
def test_large_case(parity_dir, case):
    cases = parity_dir / "large" / "cases"
    meta = json.loads((cases / f"{case}.json").read_text())
    ref = np.load(cases / f"{case}.npz")
    image = ref["input"] if "input" in ref.files else np.load(
        parity_dir / "large" / "inputs.npz")["image_513"]
    model = build_seeded_model(parity_dir, cases / f"{case}.keys.json.gz",
                               _model_name(parity_dir, case.removesuffix("_even")),
                               crop_size=image.shape[:2])
    sample = ref["sample_yx"] if meta.get("storage") == "sampled" else None
    _assert_within_tolerance(compare_case(model, ref, image, sample), ref)
    if "semantic_logits_native" in ref.files:  # logits before the final upsampling
        with torch.no_grad():
            native = model.decoder(model.encoder(to_input(image)))["semantic_logits"]
        assert relative_error(to_hwc(native), ref["semantic_logits_native"]) <= FLOAT_TOL


def test_every_issue2_case_is_exercised(parity_dir):
    cases = json.loads((parity_dir / "cases.json").read_text())
    ours = {c for c, v in cases.items() if v.get("issue") == 2}
    assert ours <= set(CONV_CASES) | set(LARGE_CASES)
