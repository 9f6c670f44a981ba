"""DeepLab2 parity of Axial-DeepLab (Panoptic-DeepLab on Axial-SWideRNet-(1, 1, 1), os16).

Tolerance note. With the fixtures' seeded weights this model is numerically
ill-conditioned: the seeded batch-norm statistics do not normalise queries and
keys, so attention logits reach |x| ~ 200 (std up to ~90) and every axial layer
amplifies the relative error of its input 3-6x (measured float32 vs float64, per
layer). Over the 10 attention layers float32 rounding (~6e-8) grows to ~1e-4 at
65x65 and ~1e-3 at 513x513 - for DeepLab2's TensorFlow run as much as for ours:

* 65x65:   ours f32 vs ours f64 5.6e-5; DeepLab2 (f32) vs ours f64 3.1e-4;
           ours f32 vs DeepLab2 3.5e-4 (semantic_logits), 6.3e-4 (offset_map);
* 513x513: ours f32 vs ours f64 1.1e-3; DeepLab2 vs ours f64 8.5e-4;
           ours f32 vs DeepLab2 1.7e-3.

Injecting 6e-8 relative noise after every layer of our float64 model moves its
outputs by 0.7-1.6e-4 (65) / 3-8e-4 (513), as far from DeepLab2 as our own runs
are; any structural deviation is orders of magnitude larger (flipping the relative
positions: 0.4; attention BN eps 1e-5 instead of 1e-3: 2.5e-2). So the raw outputs
are held to the float32 noise envelope of this model, not to the 1e-4 of the
convolutional cases; the discrete maps still meet the usual >= 99.9%.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deeplab_zoo.parity import (
    DISCRETE_AGREEMENT,
    DISCRETE_OUTPUTS,
    build_seeded_model,
    compare_case,
    relative_error,
    to_hwc,
    to_input,
)

CASE = "panoptic_deeplab_axial_swidernet_1_1_1_os16"
# Raw-output tolerance per input size (see the module docstring): ~2.5x the measured.
FLOAT_TOL_65 = 1e-3
FLOAT_TOL_513 = 4e-3


def _model_name(root) -> str:
    return json.loads((root / "cases.json").read_text())[CASE]["model"]


def _check(errors: dict[str, float], ref, float_tol: float) -> None:
    assert "semantic_logits" in errors and "offset_map" in errors
    for name, value in errors.items():
        if name in DISCRETE_OUTPUTS:
            assert value >= DISCRETE_AGREEMENT, f"{name}: only {value:.4%} of pixels agree"
        else:
            assert value <= float_tol, f"{name}: relative error {value:.3g} > {float_tol}"
    assert {n for n in DISCRETE_OUTPUTS if n in ref.files} <= set(errors)


@pytest.fixture(scope="module")
def case_65(parity_dir):
    ref = np.load(parity_dir / "cases" / f"{CASE}.npz")
    model = build_seeded_model(parity_dir, parity_dir / "cases" / f"{CASE}.keys.json.gz",
                               _model_name(parity_dir), crop_size=ref["input"].shape[:2])
    return model, ref


def test_case_65x65(case_65):
    model, ref = case_65
    _check(compare_case(model, ref, ref["input"]), ref, FLOAT_TOL_65)


def test_case_65x65_within_float32_noise(case_65):
    """DeepLab2's outputs are as close to our exact (float64) result as float32
    rounding allows: within a small multiple of our own float32 error."""
    model, ref = case_65
    x = to_input(ref["input"])
    with torch.no_grad():
        ours32 = model(x)["semantic_logits"]
        try:  # float32 -> float64 -> float32 is exact, so the shared model is restored
            ours64 = model.double()(x.double())["semantic_logits"]
        finally:
            model.float()
    own_noise = relative_error(to_hwc(ours32), to_hwc(ours64))
    deeplab2 = relative_error(to_hwc(ours64), ref["semantic_logits"])
    assert own_noise > 1e-5  # the model really is this sensitive (well-conditioned: ~1e-7)
    assert deeplab2 <= 20 * own_noise, (deeplab2, own_noise)


@pytest.mark.slow
def test_large_case_513(parity_dir):
    """Global axial attention over 33x33 (relative offsets up to +-32)."""
    cases = parity_dir / "large" / "cases"
    ref = np.load(cases / f"{CASE}.npz")
    image = np.load(parity_dir / "large" / "inputs.npz")["image_513"]
    model = build_seeded_model(parity_dir, cases / f"{CASE}.keys.json.gz",
                               _model_name(parity_dir), crop_size=image.shape[:2])
    _check(compare_case(model, ref, image, ref["sample_yx"]), ref, FLOAT_TOL_513)


def test_every_issue3_axial_case_is_exercised(parity_dir):
    cases = json.loads((parity_dir / "cases.json").read_text())
    axial = {c for c in cases if "axial_swidernet" in c}
    assert axial == {CASE}
