"""DeepLab2 parity of MaX-DeepLab-S, Panoptic-DeepLab on the MaX-S backbone and kMaX-DeepLab
with the axial ResNet-50 pixel encoder (seeded weights -> our model -> stored outputs).

Measured (float32, CPU, relative error max|ours - ref| / max(1, max|ref|)):

* ``max_deeplab_s_coco`` 65x65: semantic_logits 8.0e-7, pixel_space_normalized_feature
  4.7e-7, transformer_class_logits 1.7e-6, pixel_space_mask_logits 5.0e-6; all maps
  identical (``panoptic_pred`` is all void with seeded weights: no slot reaches the 0.7
  class confidence, see the fixtures' README; the pixel-wise post-processor itself is
  covered by ``postproc/max_pixelwise_coco``).
* ``large/max_deeplab_s_coco`` 513x513: semantic_logits 1.5e-6, normalized feature 5.7e-7,
  transformer_class_logits 1.3e-5, pixel_space_mask_logits 3.0e-5. The last two are
  float32 noise of the memory path: our float32 vs our float64 2.8e-5 / 1.1e-5 and
  DeepLab2 (float32) vs our float64 3.7e-5 / 1.7e-5, i.e. DeepLab2 is as far from the
  exact result as we are. All maps identical.
* ``panoptic_deeplab_max_deeplab_s_backbone_os16`` 65x65: semantic_logits 6.3e-7,
  center_heatmap 7.2e-7, offset_map 2.0e-6; maps identical.
* ``kmax_deeplab_axial_r50_cityscapes`` 65x65: semantic_logits 4.8e-7,
  pixel_space_normalized_feature 4.8e-7 (the whole pixel path), but
  transformer_class_logits 4.2e-4 and pixel_space_mask_logits 2.0e-4 - see
  :data:`KMAX_AXIAL_TRANSFORMER_TOL`. Maps identical; instance_scores 2.3e-4 (absolute).
"""
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

MAX_CASE = "max_deeplab_s_coco"
PDL_CASE = "panoptic_deeplab_max_deeplab_s_backbone_os16"
KMAX_CASE = "kmax_deeplab_axial_r50_cityscapes"
RAW = ("semantic_logits", "pixel_space_normalized_feature", "pixel_space_mask_logits",
       "transformer_class_logits")
DISCRETE = ("panoptic_pred", "semantic_pred", "instance_pred")
SCORES = ("instance_scores", "semantic_scores")
#: Mask-transformer scores are softmax probabilities (absolute error), as in the kMaX tests.
SCORE_TOL = 1e-3

#: kMaX axial-R50's transformer outputs (class / mask logits) are held to the float32 noise
#: envelope of this model instead of :data:`FLOAT_TOL`. With the seeded weights the
#: k-means decoder's memory self-attention is badly conditioned: its batch-normed
#: similarity logits reach |1.35e4| (std 490) in the last layer, so float32 rounding of
#: ~1e-7 becomes ~1e-3 absolute in the logits and a relative 3.6e-3 in the retrieved values
#: (our float32 vs float64, per layer: 2e-6 in layer 3, 3e-4 in layer 5, 3.6e-3 in layer 6).
#: Measured on transformer_class_logits / pixel_space_mask_logits:
#:
#: * ours (float32) vs DeepLab2: 4.2e-4 / 2.0e-4 (2 threads), 1.0e-3 / 4.0e-4 (1 thread);
#: * ours float32 vs ours float64: 8.3e-4 / 3.5e-4; DeepLab2 vs ours float64: 4.2e-4 / 1.7e-4
#:   (DeepLab2 is closer to the exact result than our own float32 run);
#: * a 6e-8 relative perturbation of the INPUT moves our float32 outputs by 9.7e-4 / 4.0e-4
#:   (vs DeepLab2: up to 1.5e-3 / 1.2e-3 over 10 draws), while it moves our float64 outputs
#:   by only 1e-9 / 2e-8 - the spread is rounding noise, not sensitivity to the input.
#:
#: The pixel path (semantic_logits, pixel_space_normalized_feature) meets FLOAT_TOL at
#: ~5e-7 and the discrete maps agree on 100% of the pixels.
KMAX_AXIAL_TRANSFORMER_TOL = 4e-3
KMAX_AXIAL_NOISY = ("transformer_class_logits", "pixel_space_mask_logits")


def _model_name(root, case: str) -> str:
    return json.loads((root / "cases.json").read_text())[case]["model"]


def _map(value: torch.Tensor) -> np.ndarray:
    """Ours [1, ...] -> the fixtures' layout (NHWC without batch; [K, C] class logits)."""
    if value.dim() == 3:  # [1, H, W] maps or [1, K, C] class logits
        return value[0].detach().cpu().numpy()
    return to_hwc(value)


def _run(model, image: np.ndarray) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        outputs = model(to_input(image))
        return {**outputs, **model.postprocess(outputs)}


def _case(parity_dir, case: str):
    ref = np.load(parity_dir / "cases" / f"{case}.npz")
    model = build_seeded_model(parity_dir, parity_dir / "cases" / f"{case}.keys.json.gz",
                               _model_name(parity_dir, case), crop_size=ref["input"].shape[:2])
    return model, ref, _run(model, ref["input"])


def _check_maps(case: str, ours: dict, ref) -> None:
    for name in DISCRETE:
        agreement = float((_map(ours[name]) == ref[name]).mean())
        assert agreement >= DISCRETE_AGREEMENT, f"{case} {name}: {agreement:.4%} agree"
    for name in SCORES:
        error = np.abs(_map(ours[name]) - ref[name]).max()
        assert error <= SCORE_TOL, f"{case} {name}: max error {error:.3g}"


# --- MaX-DeepLab-S ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def max_s_case(parity_dir):
    return _case(parity_dir, MAX_CASE)


def test_max_s_raw_outputs(max_s_case):
    _, ref, ours = max_s_case
    for name in RAW:
        error = relative_error(_map(ours[name]), ref[name])
        assert error <= FLOAT_TOL, f"{name}: relative error {error:.3g}"


def test_max_s_maps(max_s_case):
    _, ref, ours = max_s_case
    _check_maps(MAX_CASE, ours, ref)


def test_max_s_postprocess_of_reference_outputs(max_s_case):
    model, ref, _ = max_s_case
    raw = {"pixel_space_mask_logits": torch.from_numpy(ref["pixel_space_mask_logits"])
           .permute(2, 0, 1)[None],
           "transformer_class_logits": torch.from_numpy(ref["transformer_class_logits"])[None]}
    maps = model.postprocess(raw)
    for name in DISCRETE + SCORES:
        np.testing.assert_array_equal(maps[name][0].numpy(), ref[name], err_msg=name)


def test_max_s_large_513(parity_dir):
    """513x513: memory attention over 33x33 pixels + 128 slots, decoder at 129x129, axial
    attention over 33 positions (offsets up to +-32)."""
    cases = parity_dir / "large" / "cases"
    ref = np.load(cases / f"{MAX_CASE}.npz")
    image = np.load(parity_dir / "large" / "inputs.npz")["image_513"]
    model = build_seeded_model(parity_dir, cases / f"{MAX_CASE}.keys.json.gz",
                               _model_name(parity_dir, MAX_CASE), crop_size=image.shape[:2])
    ours = _run(model, image)
    native = ref["sample_yx_native"]
    for name in ("semantic_logits", "pixel_space_normalized_feature", "pixel_space_mask_logits"):
        sampled = _map(ours[name])[native[:, 0], native[:, 1]]
        error = relative_error(sampled, ref[f"{name}@sample_native"])
        assert error <= FLOAT_TOL, f"{name}: relative error {error:.3g}"
    error = relative_error(_map(ours["transformer_class_logits"]), ref["transformer_class_logits"])
    assert error <= FLOAT_TOL, f"transformer_class_logits: relative error {error:.3g}"
    sample = ref["sample_yx"]
    for name in SCORES:
        sampled = _map(ours[name])[sample[:, 0], sample[:, 1]]
        assert np.abs(sampled - ref[f"{name}@sample"][:, 0]).max() <= SCORE_TOL, name
    for name in DISCRETE:
        agreement = float((_map(ours[name]) == ref[name]).mean())
        assert agreement >= DISCRETE_AGREEMENT, f"{name}: only {agreement:.4%} agree"


# --- Panoptic-DeepLab on the MaX-DeepLab-S backbone ---------------------------------------

def test_panoptic_deeplab_max_s_backbone(parity_dir):
    ref = np.load(parity_dir / "cases" / f"{PDL_CASE}.npz")
    model = build_seeded_model(parity_dir, parity_dir / "cases" / f"{PDL_CASE}.keys.json.gz",
                               _model_name(parity_dir, PDL_CASE), crop_size=ref["input"].shape[:2])
    errors = compare_case(model, ref, ref["input"])
    assert {"semantic_logits", "center_heatmap", "offset_map"} <= set(errors)
    for name, value in errors.items():
        if name in DISCRETE_OUTPUTS:
            assert value >= DISCRETE_AGREEMENT, f"{name}: only {value:.4%} of pixels agree"
        else:
            assert value <= FLOAT_TOL, f"{name}: relative error {value:.3g}"


# --- kMaX-DeepLab, axial ResNet-50 --------------------------------------------------------

@pytest.fixture(scope="module")
def kmax_axial_case(parity_dir):
    return _case(parity_dir, KMAX_CASE)


def test_kmax_axial_raw_outputs(kmax_axial_case):
    _, ref, ours = kmax_axial_case
    for name in RAW:
        tol = KMAX_AXIAL_TRANSFORMER_TOL if name in KMAX_AXIAL_NOISY else FLOAT_TOL
        error = relative_error(_map(ours[name]), ref[name])
        assert error <= tol, f"{name}: relative error {error:.3g} > {tol}"


def test_kmax_axial_maps(kmax_axial_case):
    _, ref, ours = kmax_axial_case
    _check_maps(KMAX_CASE, ours, ref)


def test_kmax_axial_within_float32_noise(kmax_axial_case):
    """DeepLab2's transformer outputs are as close to our float64 result as float32 noise
    allows: our own float32 runs (plain and on 6e-8-perturbed inputs) spread at least as far."""
    model, ref, _ = kmax_axial_case
    x = to_input(ref["input"])
    gen = torch.Generator().manual_seed(0)
    inputs = [x] + [(x.double() * (1 + 6e-8 * torch.randn(x.shape, generator=gen,
                                                            dtype=torch.float64))).float()
                    for _ in range(2)]
    with torch.no_grad():
        ours32 = [model(inp) for inp in inputs]
        try:  # float32 -> float64 -> float32 is exact, so the shared model is restored
            ours64 = model.double()(x.double())
        finally:
            model.float()
    for name in KMAX_AXIAL_NOISY:
        exact = _map(ours64[name])
        own_noise = max(relative_error(_map(out[name]), exact) for out in ours32)
        deeplab2 = relative_error(exact, ref[name])
        assert own_noise > 5e-5, (name, own_noise)  # well-conditioned models: ~1e-6
        assert deeplab2 <= 3 * own_noise, (name, deeplab2, own_noise)
    for name in ("semantic_logits", "pixel_space_normalized_feature"):
        assert relative_error(_map(ours64[name]), ref[name]) <= 1e-5, name


def test_kmax_axial_postprocess_of_reference_outputs(kmax_axial_case):
    model, ref, _ = kmax_axial_case
    raw = {"pixel_space_mask_logits": torch.from_numpy(ref["pixel_space_mask_logits"])
           .permute(2, 0, 1)[None],
           "transformer_class_logits": torch.from_numpy(ref["transformer_class_logits"])[None]}
    maps = model.postprocess(raw)
    for name in DISCRETE:
        np.testing.assert_array_equal(maps[name][0].numpy(), ref[name], err_msg=name)


def test_every_issue3_max_case_is_exercised(parity_dir):
    cases = json.loads((parity_dir / "cases.json").read_text())
    archs = {v["model"].split(".")[0]: c for c, v in cases.items()}
    ours = {arch: case for arch, case in archs.items()
            if arch.startswith(("max_deeplab", "panoptic_deeplab_max_deeplab"))
            or arch == "kmax_deeplab_axial_r50"}
    assert set(ours.values()) == {MAX_CASE, PDL_CASE, KMAX_CASE}
    large = {p.name.removesuffix(".npz") for p in (parity_dir / "large" / "cases").glob("*.npz")}
    assert MAX_CASE in large
