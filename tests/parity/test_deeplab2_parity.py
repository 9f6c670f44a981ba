"""DeepLab2 parity: seeded weights -> our model -> DeepLab2's stored outputs (issue 2 models)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import parity_root
from parity_utils import (
    DISCRETE_AGREEMENT,
    FLOAT_TOL,
    build_seeded_model,
    relative_error,
    to_input,
    to_nhwc,
)

RAW = ("semantic_logits", "center_heatmap", "offset_map")
DISCRETE = ("semantic_pred", "panoptic_pred", "instance_pred")
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


def _check_raw(outputs: dict[str, torch.Tensor], ref, name: str, ours: np.ndarray | None = None,
               sample=None) -> float:
    ours = to_nhwc(outputs[name]) if ours is None else ours
    if sample is not None:
        ours = ours[sample[:, 0], sample[:, 1]].reshape(len(sample), -1)
        reference = ref[f"{name}@sample"]
    else:
        reference = ref[name]
    ours = ours.reshape(reference.shape)
    error = relative_error(ours, reference)
    assert error <= FLOAT_TOL, f"{name}: relative error {error:.3g} > {FLOAT_TOL}"
    return error


def _check_discrete(maps: dict[str, torch.Tensor], ref, name: str) -> float:
    ours = maps[name][0].cpu().numpy()
    agreement = float((ours == ref[name]).mean())
    assert agreement >= DISCRETE_AGREEMENT, f"{name}: only {agreement:.4%} of pixels agree"
    return agreement


@pytest.mark.parametrize("case", CONV_CASES)
def test_case_65x65(parity_dir, case):
    ref = np.load(parity_dir / "cases" / f"{case}.npz")
    image = ref["input"]
    model = build_seeded_model(parity_dir, parity_dir / "cases", case,
                               _model_name(parity_dir, case), crop_size=image.shape[:2])
    with torch.no_grad():
        outputs = model(to_input(image))
        maps = model.postprocess(outputs)
    for name in RAW:
        if name in ref.files:
            _check_raw(outputs, ref, name)
    for name in DISCRETE:
        if name in ref.files:
            _check_discrete(maps, ref, name)


@pytest.mark.parametrize("case", LARGE_CASES)
def test_large_case(parity_dir, case):
    large = parity_dir / "large"
    if not (large / "cases" / f"{case}.npz").is_file():
        pytest.skip(f"no large case {case}")
    meta = json.loads((large / "cases" / f"{case}.json").read_text())
    ref = np.load(large / "cases" / f"{case}.npz")
    inputs = np.load(large / "inputs.npz")
    image = ref["input"] if "input" in ref.files else inputs["image_513"]
    model_case = case.removesuffix("_even")
    model = build_seeded_model(parity_dir, large / "cases", case,
                               _model_name(parity_dir, model_case), crop_size=image.shape[:2])
    with torch.no_grad():
        outputs = model(to_input(image))
        maps = model.postprocess(outputs)
    sample = ref["sample_yx"] if meta.get("storage") == "sampled" else None
    for name in RAW:
        if name in ref.files or f"{name}@sample" in ref.files:
            _check_raw(outputs, ref, name, sample=sample)
    if "semantic_logits_native" in ref.files:
        native = model.decoder(model.encoder(to_input(image)))["semantic_logits"]
        error = relative_error(to_nhwc(native), ref["semantic_logits_native"])
        assert error <= FLOAT_TOL
    for name in DISCRETE:
        if name in ref.files:
            _check_discrete(maps, ref, name)


def test_fixture_list_is_complete():
    """Every case of cases.json assigned to issue 2 is exercised above."""
    root = parity_root()
    if not (root / "cases.json").is_file():
        pytest.skip(f"parity fixtures not found at {root}")
    cases = json.loads((root / "cases.json").read_text())
    ours = {c for c, v in cases.items() if v.get("issue") == 2}
    assert ours <= set(CONV_CASES) | set(LARGE_CASES)
