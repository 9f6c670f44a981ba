"""research/deeplab parity: seeded TF-Slim weights -> our model -> research/deeplab's outputs.

Every 65x65 case of ``classic/cases`` is compared on all stored stages (backbone
features, ASPP/DPC output, native logits, upsampled logits, predicted labels); the
large cases (``large/cases/deeplabv3plus_xception65_voc*``) on their stored samples.
Besides the fixtures' tolerance (1e-4 relative) a tighter 1e-5 guards against
convention bugs (a correct port measures ~1e-6; see the fixtures' README).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from classic_fixtures import (
    CASES,
    FLOAT_OUTPUTS,
    case_spec,
    normalise,
    seeded_model,
    staged_outputs,
)

from deeplab_zoo.parity import DISCRETE_AGREEMENT, FLOAT_TOL, compare_case, relative_error

#: Well below the fixtures' tolerance; what a faithful float32 port reaches (~1e-6).
CONVENTION_TOL = 1e-5


def _check(errors: dict[str, float], agreement: float) -> None:
    for name, error in errors.items():
        assert error <= FLOAT_TOL, f"{name}: relative error {error:.3g} > {FLOAT_TOL}"
        assert error <= CONVENTION_TOL, f"{name}: relative error {error:.3g} (bug?)"
    assert agreement >= DISCRETE_AGREEMENT, f"semantic_pred: only {agreement:.4%} agree"


@pytest.mark.parametrize("case", CASES)
def test_case_65x65(parity_dir, case, record_property):
    cases = parity_dir / "classic" / "cases"
    ref = np.load(cases / f"{case}.npz")
    image = ref["input"]
    model = seeded_model(parity_dir, cases / f"{case}.keys.json.gz",
                         case_spec(parity_dir, case), image.shape[:2])
    ours = staged_outputs(model, image)
    errors = {name: relative_error(ours[name], ref[name]) for name in FLOAT_OUTPUTS}
    record_property("max_relative_error", max(errors.values()))
    _check(errors, float((ours["semantic_pred"] == ref["semantic_pred"]).mean()))


def test_forward_and_postprocess_match_the_stages(parity_dir):
    """``model(x)`` / ``postprocess`` (what users call) give the staged outputs."""
    case = "deeplabv3_mobilenet_v2_voc"
    cases = parity_dir / "classic" / "cases"
    ref = np.load(cases / f"{case}.npz")
    model = seeded_model(parity_dir, cases / f"{case}.keys.json.gz",
                         case_spec(parity_dir, case), ref["input"].shape[:2])
    staged = staged_outputs(model, ref["input"])
    with torch.no_grad():
        outputs = model(normalise(ref["input"]))
        native = model.native_logits(normalise(ref["input"]))
        features = model.features(normalise(ref["input"]))
    assert torch.equal(outputs["semantic_logits"][0].permute(1, 2, 0),
                       torch.from_numpy(staged["semantic_logits"]))
    assert torch.equal(native[0].permute(1, 2, 0),
                       torch.from_numpy(staged["semantic_logits_native"]))
    assert np.array_equal(features["aspp_features"][0].permute(1, 2, 0).numpy(),
                          staged["aspp_features"])
    # The package's parity helper (x / 127.5 - 1 normalisation) agrees as well.
    result = compare_case(model, ref, ref["input"])
    assert result["semantic_logits"] <= CONVENTION_TOL and result["semantic_pred"] == 1.0


def _large(parity_dir, case: str):
    folder = parity_dir / "large" / "cases"
    if not (folder / f"{case}.npz").is_file():
        pytest.skip(f"large fixture {case} not found")
    meta = json.loads((folder / f"{case}.json").read_text())
    ref = np.load(folder / f"{case}.npz")
    image = ref["input"] if "input" in ref.files else np.load(
        parity_dir / "large" / "inputs.npz")["image_513"]
    spec = case_spec(parity_dir, case.removesuffix("_even"))
    model = seeded_model(parity_dir, folder / f"{case}.keys.json.gz", spec, image.shape[:2])
    return meta, ref, image, model


def test_large_even_64x96(parity_dir, record_property):
    """Even sizes: explicit (fixed) padding of strided convs, align_corners resizes."""
    _, ref, image, model = _large(parity_dir, "deeplabv3plus_xception65_voc_even")
    ours = staged_outputs(model, image)
    errors = {name: relative_error(ours[name], ref[name]) for name in FLOAT_OUTPUTS}
    record_property("max_relative_error", max(errors.values()))
    _check(errors, float((ours["semantic_pred"] == ref["semantic_pred"]).mean()))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["deeplabv3plus_xception65_voc",
                                  "deeplabv3plus_xception65_os8_voc"])
def test_large_513(parity_dir, case, record_property):
    """513x513: ASPP rates 6/12/18 (OS 16) and 12/24/36 (OS 8) all real, decoder at 129."""
    meta, ref, image, model = _large(parity_dir, case)
    assert meta["storage"] == "sampled"
    ours = staged_outputs(model, image)
    sample = ref["sample_yx"]
    errors = {
        "semantic_logits_native": relative_error(ours["semantic_logits_native"],
                                                 ref["semantic_logits_native"]),
        "semantic_logits@sample": relative_error(
            ours["semantic_logits"][sample[:, 0], sample[:, 1]], ref["semantic_logits@sample"]),
    }
    record_property("max_relative_error", max(errors.values()))
    _check(errors, float((ours["semantic_pred"] == ref["semantic_pred"]).mean()))


def test_every_classic_case_is_exercised(parity_dir):
    listed = set(json.loads((parity_dir / "classic" / "cases.json").read_text()))
    assert listed == set(CASES) | {"deeplabv3plus_xception65_voc_even"}
