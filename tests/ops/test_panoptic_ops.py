"""Native Panoptic-DeepLab post-processing ops == the pure-PyTorch reference, bit for bit.

The extension is built once per session (into <repo>/build/ops, cached between runs);
without a C++ compiler / ninja the native tests skip and only the fallback is tested.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from deeplab_zoo import ops
from deeplab_zoo.ops import _extension
from deeplab_zoo.postprocess import panoptic_deeplab as reference

MAPS = ("panoptic_pred", "semantic_pred", "instance_pred", "instance_center_pred",
        "instance_scores")
CITYSCAPES = dict(thing_class_ids=list(range(11, 19)), label_divisor=1000, stuff_area_limit=2048,
                  center_threshold=0.1, nms_kernel=13, keep_k_centers=400, void_label=255)
POSTPROC_FIXTURES = ("pdl_basic", "pdl_no_center", "pdl_all_stuff", "pdl_tiny_thing",
                     "pdl_keep_k3")


# --- fixtures / helpers --------------------------------------------------------------------

def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Identical dtype, shape and bits (floats: same bits, or both NaN)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    a, b = a.cpu(), b.cpu()
    if not a.is_floating_point():
        return torch.equal(a, b)
    same = a.view(torch.int32) == b.view(torch.int32)
    return bool((same | (torch.isnan(a) & torch.isnan(b))).all())


def _assert_same_outputs(ours: dict, ref: dict) -> None:
    assert ours.keys() == ref.keys()
    if not ref:  # both raised the same error (see _run_both)
        return
    for name in MAPS:
        assert _bits_equal(ours[name], ref[name]), f"{name} differs"
    assert len(ours["center_points"]) == len(ref["center_points"])
    for a, b in zip(ours["center_points"], ref["center_points"]):
        assert torch.equal(a.cpu(), b.cpu())
    for a, b in zip(ours["center_scores"], ref["center_scores"]):
        assert _bits_equal(a, b)


def _run_both(logits, heat, offsets, device: str = "cpu", **kwargs) -> tuple[dict, dict]:
    """(native, reference) outputs; if the reference raises, native must raise the same."""
    args = [t.to(device) for t in (logits, heat, offsets)]
    try:
        ref = reference.panoptic_deeplab_postprocess(*args, **kwargs)
    except ValueError as error:
        with pytest.raises(ValueError, match=re.escape(str(error))):
            ops.panoptic_deeplab_postprocess(*args, backend="native", **kwargs)
        return {}, {}
    ours = ops.panoptic_deeplab_postprocess(*args, backend="native", **kwargs)
    return ours, ref


def _scene(batch: int, height: int, width: int, *, seed: int, classes: int = 19,
           peaks: int = 6, integer_offsets: bool = False):
    """Random logits, a heatmap with Gaussian peaks on noise, offsets pointing at peaks."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, height, width, generator=gen) * 2
    heat = torch.rand(batch, 1, height, width, generator=gen) * 0.2
    ys = torch.arange(height).float()[:, None]
    xs = torch.arange(width).float()[None, :]
    for b in range(batch):
        for _ in range(peaks):
            cy = float(torch.randint(0, height, (1,), generator=gen))
            cx = float(torch.randint(0, width, (1,), generator=gen))
            peak = torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / 8.0)
            heat[b, 0] = torch.maximum(heat[b, 0], peak * float(torch.rand((), generator=gen)))
    if integer_offsets:  # exact distance ties everywhere
        offsets = torch.randint(-5, 6, (batch, 2, height, width), generator=gen).float()
    else:
        offsets = torch.randn(batch, 2, height, width, generator=gen) * 4
    return logits, heat, offsets


# --- the full post-processor ----------------------------------------------------------------

@pytest.mark.parametrize("trial", range(24))
def test_random_inputs_identical(native, devices, trial):
    gen = torch.Generator().manual_seed(100 + trial)
    batch = 1 + trial % 3
    height = int(torch.randint(1, 48, (1,), generator=gen))
    width = int(torch.randint(1, 64, (1,), generator=gen))
    classes = int(torch.randint(1, 20, (1,), generator=gen))
    things = sorted(set(torch.randint(0, max(classes, 1), (3,), generator=gen).tolist()))
    kwargs = dict(thing_class_ids=things + [classes + 5], label_divisor=[1000, 256, 37][trial % 3],
                  stuff_area_limit=int(torch.randint(0, 60, (1,), generator=gen)),
                  center_threshold=[0.1, 0.3, -0.5, 0.0][trial % 4],
                  nms_kernel=int(torch.randint(1, 10, (1,), generator=gen)),
                  keep_k_centers=[400, 3, 0, 1, 2, 7][trial % 6],
                  void_label=[255, 0, 32][trial % 3])
    inputs = _scene(batch, height, width, seed=trial, classes=classes,
                    integer_offsets=trial % 2 == 0)
    for device in devices:
        ours, ref = _run_both(*inputs, device=device, **kwargs)
        _assert_same_outputs(ours, ref)


@pytest.mark.parametrize("name", POSTPROC_FIXTURES)
def test_deeplab2_postproc_fixtures(native, devices, parity_dir, name):
    stored = np.load(parity_dir / "postproc" / f"{name}.npz")
    params = json.loads((parity_dir / "postproc" / f"{name}.json").read_text())["parameters"]
    kwargs = dict(thing_class_ids=params["thing_class_ids"],
                  label_divisor=params["panoptic_label_divisor"],
                  stuff_area_limit=params["stuff_area_limit"],
                  center_threshold=params["center_score_threshold"],
                  nms_kernel=params["nms_kernel"], keep_k_centers=params["keep_k_centers"],
                  void_label=params["ignore_label"])
    logits = torch.from_numpy(stored["semantic_logits"]).permute(2, 0, 1)[None]
    heat = torch.from_numpy(stored["center_heatmap"])[None, None]
    offsets = torch.from_numpy(stored["offset_map"]).permute(2, 0, 1)[None]
    for device in devices:
        ours, ref = _run_both(logits, heat, offsets, device=device, **kwargs)
        _assert_same_outputs(ours, ref)
        for key in MAPS:  # and equal to what DeepLab2 itself returned
            np.testing.assert_array_equal(ours[key][0].cpu().numpy(), stored[key], err_msg=key)
        np.testing.assert_array_equal(ours["center_points"][0].cpu().numpy(),
                                      stored["center_points_yx"])


def test_no_centres(native):
    logits, heat, offsets = _scene(2, 24, 32, seed=1)
    ours, ref = _run_both(logits, heat * 0.05, offsets, **CITYSCAPES)
    _assert_same_outputs(ours, ref)
    assert all(c.shape == (0, 2) for c in ours["center_points"])
    assert not ours["instance_pred"].any()


def test_one_pixel_image(native):
    logits = torch.zeros(1, 19, 1, 1)
    logits[0, 13] = 1.0
    heat = torch.full((1, 1, 1, 1), 0.9)
    offsets = torch.zeros(1, 2, 1, 1)
    ours, ref = _run_both(logits, heat, offsets, **CITYSCAPES)
    _assert_same_outputs(ours, ref)
    assert ours["panoptic_pred"].tolist() == [[[13001]]]
    logits[0, 13], logits[0, 2] = 0.0, 1.0  # stuff, area 1 < 2048 -> void
    ours, ref = _run_both(logits, heat, offsets, **CITYSCAPES)
    _assert_same_outputs(ours, ref)
    assert ours["panoptic_pred"].tolist() == [[[255000]]]


def test_all_void(native):
    logits, heat, offsets = _scene(1, 16, 16, seed=3)
    logits[:, 11:] -= 100.0  # no thing pixels, stuff regions below the area limit
    ours, ref = _run_both(logits, heat, offsets, **CITYSCAPES)
    _assert_same_outputs(ours, ref)
    assert (ours["panoptic_pred"] == 255000).all()


def test_all_stuff(native):
    logits, heat, offsets = _scene(2, 30, 40, seed=4)
    logits[:, 11:] -= 100.0
    logits[:, 3] += 50.0  # one stuff class everywhere, above the area limit
    kwargs = dict(CITYSCAPES, stuff_area_limit=100)
    ours, ref = _run_both(logits, heat, offsets, **kwargs)
    _assert_same_outputs(ours, ref)
    assert (ours["panoptic_pred"] == 3000).all()
    assert not ours["instance_pred"].any()
    assert all(c.shape[0] > 0 for c in ours["center_points"])  # centres exist, unused


def test_batch_of_three_equals_single_images(native):
    logits, heat, offsets = _scene(3, 40, 56, seed=7, peaks=9)
    kwargs = dict(CITYSCAPES, stuff_area_limit=50, keep_k_centers=5, nms_kernel=5)
    ours, ref = _run_both(logits, heat, offsets, **kwargs)
    _assert_same_outputs(ours, ref)
    for i in range(3):
        single = ops.panoptic_deeplab_postprocess(logits[i:i + 1], heat[i:i + 1],
                                                  offsets[i:i + 1], backend="native", **kwargs)
        for name in MAPS:
            assert _bits_equal(single[name][0], ours[name][i]), name


def test_distance_ties_go_to_the_first_centre(native):
    # Integer offsets and centres make many pixels exactly equidistant from two centres.
    logits, heat, offsets = _scene(1, 33, 47, seed=5, peaks=12, integer_offsets=True)
    logits[:, 12] += 10.0  # every pixel a thing
    kwargs = dict(CITYSCAPES, nms_kernel=3, stuff_area_limit=0)
    ours, ref = _run_both(logits, heat, offsets, **kwargs)
    _assert_same_outputs(ours, ref)
    centers = ours["center_points"][0]
    assert centers.shape[0] >= 2
    ys, xs = torch.meshgrid(torch.arange(33), torch.arange(47), indexing="ij")
    target = torch.stack([ys + offsets[0, 0], xs + offsets[0, 1]], -1).reshape(-1, 1, 2)
    dist = (centers.float()[None] - target).pow(2).sum(-1).sqrt()
    ties = (dist == dist.min(1, keepdim=True).values).sum(1) > 1
    assert ties.sum() > 10, "the scene should contain exact ties"


def test_label_divisor_overflow_raises(native):
    logits, heat, offsets = _scene(1, 40, 40, seed=9, peaks=12)
    logits[:, 12] += 10.0
    kwargs = dict(CITYSCAPES, nms_kernel=3, label_divisor=2, void_label=0)
    with pytest.raises(ValueError, match="label_divisor=2 is too small"):
        reference.panoptic_deeplab_postprocess(logits, heat, offsets, **kwargs)
    with pytest.raises(ValueError, match="label_divisor=2 is too small"):
        ops.panoptic_deeplab_postprocess(logits, heat, offsets, backend="native", **kwargs)
    kwargs = dict(kwargs, label_divisor=2 * 10**8)
    with pytest.raises(ValueError, match="overflows int32"):
        ops.panoptic_deeplab_postprocess(logits, heat, offsets, backend="native", **kwargs)


def test_validation_errors_match_reference(native):
    logits, heat, offsets = _scene(2, 8, 8, seed=0)
    bad = [((logits[0], heat, offsets), {}, "semantic_logits"),
           ((logits, heat[:, 0], offsets), {}, "center_heatmap"),
           ((logits, heat, offsets[:, :1]), {}, "offset_map"),
           ((logits, heat, offsets), {"nms_kernel": 0}, "nms_kernel"),
           ((logits, heat, offsets), {"label_divisor": 0}, "label_divisor"),
           ((logits, heat, offsets), {"center_threshold": float("nan")}, "NaN")]
    for args, change, message in bad:
        with pytest.raises(ValueError, match=message):
            ops.panoptic_deeplab_postprocess(*args, backend="native", **dict(CITYSCAPES, **change))


def test_float16_channels_last_and_empty_batch(native):
    logits, heat, offsets = _scene(1, 20, 24, seed=2)
    ours, ref = _run_both(logits.half(), heat.half(), offsets.half(), **CITYSCAPES)
    _assert_same_outputs(ours, ref)
    channels_last = logits.contiguous(memory_format=torch.channels_last)
    ours, ref = _run_both(channels_last, heat, offsets.transpose(2, 3).transpose(2, 3),
                          **CITYSCAPES)
    _assert_same_outputs(ours, ref)
    ours, ref = _run_both(logits[:0], heat[:0], offsets[:0], **CITYSCAPES)
    _assert_same_outputs(ours, ref)
    assert ours["panoptic_pred"].shape == (0, 20, 24)


# --- single ops against the reference functions -------------------------------------------

def test_semantic_argmax_softmax_ties_and_nan(native, devices):
    rows = [[0.3, 0.30000004172325134], [0.1, 0.10000000894069672], [1.0, 1.0000001192092896],
            [0.0, 2.0**-25], [-(2.0**-25), 0.0], [5.0, 5.0], [2.0, 1.0], [float("nan"), 1.0],
            [1.0, float("nan")], [float("-inf"), float("-inf")], [float("inf"), 1.0]]
    logits = torch.tensor([r + [-3.0] for r in rows]).T.reshape(1, 3, 1, len(rows))
    expected = reference.semantic_argmax(logits, dim=1)
    for device in devices:
        got = ops.semantic_argmax(logits.to(device), backend="native")
        assert _bits_equal(got, expected)
    big = torch.randn(2, 19, 37, 1100) * 1e-7  # near-ties, several pixel blocks per row
    for device in devices:
        assert _bits_equal(ops.semantic_argmax(big.to(device), backend="native"),
                           reference.semantic_argmax(big, dim=1))


@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 13, 40])
def test_center_heatmap_nms(native, devices, kernel):
    gen = torch.Generator().manual_seed(kernel)
    heat = torch.rand(2, 23, 31, generator=gen) - 0.3
    heat[0, 3, 4] = float("nan")
    heat[1, 5, 6] = float("inf")
    heat[0, 7] = heat[0, 8]  # plateaus: equal neighbours are both kept
    for threshold in (0.1, -0.2, 0.0):
        expected = torch.stack([reference.center_heatmap_nms(h, center_threshold=threshold,
                                                             nms_kernel=kernel) for h in heat])
        for device in devices:
            got = ops.center_heatmap_nms(heat.to(device), center_threshold=threshold,
                                         nms_kernel=kernel, backend="native")
            assert _bits_equal(got, expected), (threshold, device)


def _reference_group(centers, scores, offsets, thing_mask):
    return ops.center_group(centers, offsets, thing_mask, center_scores=scores,
                            backend="reference")


def test_center_group_duplicates_nan_inf_and_negative_scores(native, devices):
    gen = torch.Generator().manual_seed(0)
    height, width, count = 17, 23, 30
    centers = torch.stack([torch.randint(0, height, (count,), generator=gen),
                           torch.randint(0, width, (count,), generator=gen)], 1)
    centers[5] = centers[2]  # duplicate centre: the first wins
    offsets = torch.randint(-6, 7, (3, 2, height, width), generator=gen).float()
    offsets[0, 0, 1, 1] = float("nan")
    offsets[0, 1, 2, 2] = float("inf")
    offsets[1, :, 3, 3] = float("-inf")
    offsets[1, 0, 4, 4] = 3e19  # squares overflow to inf: all distances tie
    thing = torch.rand(3, height, width, generator=gen) > 0.4
    scores = torch.rand(count, generator=gen) + 0.1
    cases = [
        [centers, centers[:7], centers[:0]],
        [centers[:1], centers, centers[:3]],
    ]
    score_cases = [
        [scores, scores[:7], scores[:0]],
        [scores[:1] * -1.0, torch.where(torch.arange(count) == 4, float("inf"), scores),
         torch.tensor([float("nan"), -0.0, 0.5])],  # non-thing pixels then need a centre
    ]
    for center_list, score_list in zip(cases, score_cases):
        expected = _reference_group(center_list, score_list, offsets, thing)
        for device in devices:
            got = ops.center_group([c.to(device) for c in center_list], offsets.to(device),
                                   thing.to(device), center_scores=score_list,
                                   backend="native")
            assert _bits_equal(got[0], expected[0]) and _bits_equal(got[1], expected[1])


def _merge_reference(semantic, instance, **kwargs):
    return ops.merge_semantic_instance(semantic, instance, backend="reference", **kwargs)


def test_merge_random_maps_including_arbitrary_ids(native, devices):
    gen = torch.Generator().manual_seed(1234)
    for trial in range(40):
        batch = 1 + trial % 3
        height = int(torch.randint(1, 20, (1,), generator=gen))
        width = int(torch.randint(1, 20, (1,), generator=gen))
        classes = int(torch.randint(1, 7, (1,), generator=gen))
        semantic = torch.randint(0, classes, (batch, height, width), generator=gen)
        instance = torch.randint(0, int(torch.randint(1, 9, (1,), generator=gen)),
                                 (batch, height, width), generator=gen)
        if trial % 4 == 1:
            instance = instance * 7 - 3  # negative ids: compacted with unique
        elif trial % 4 == 2:
            instance = instance * 123457  # huge ids: compacted with unique
        kwargs = dict(thing_class_ids=sorted(set(torch.randint(0, classes, (2,),
                                                               generator=gen).tolist())),
                      label_divisor=1000, stuff_area_limit=int(torch.randint(0, 30, (1,),
                                                                             generator=gen)),
                      void_label=[255, 0, 32][trial % 3])
        expected = _merge_reference(semantic, instance, **kwargs)
        for device in devices:
            got = ops.merge_semantic_instance(semantic.to(device), instance.to(device),
                                              backend="native", **kwargs)
            assert _bits_equal(got, expected), f"trial {trial} on {device}"
        # non-contiguous inputs
        got = ops.merge_semantic_instance(semantic.transpose(1, 2), instance.transpose(1, 2),
                                          backend="native", **kwargs)
        assert _bits_equal(got, _merge_reference(semantic.transpose(1, 2),
                                                 instance.transpose(1, 2), **kwargs))


def test_merge_counters_follow_first_appearance(native):
    semantic = torch.tensor([[[12, 12, 11, 11, 0], [13, 13, 13, 0, 0]]])
    instance = torch.tensor([[[2, 2, 2, 2, 0], [1, 1, 1, 0, 0]]])
    got = ops.merge_semantic_instance(semantic, instance, thing_class_ids=[11, 12, 13],
                                      label_divisor=1000, stuff_area_limit=3, void_label=255,
                                      backend="native")
    assert got.tolist() == [[[11001] * 4 + [0], [13001] * 3 + [0, 0]]]


def test_merge_overflow_guards_match_reference(native, devices):
    semantic = torch.full((1, 4, 4), 11)
    instance = torch.arange(16).reshape(1, 4, 4) + 1
    checks = [
        (dict(label_divisor=10, void_label=255), instance, [11], "label_divisor=10 is too small"),
        (dict(label_divisor=10**8, void_label=255), instance, [11], "void_label"),
        (dict(label_divisor=2 * 10**8, void_label=0), instance, [11], "overflows int32"),
        (dict(label_divisor=2 * 10**8, void_label=0), instance * 0, [], "overflows int32"),
        (dict(label_divisor=2**62, void_label=0), instance, [11], "overflows int32"),
        (dict(label_divisor=1000, void_label=-1), instance, [11], "void_label"),
    ]
    for kwargs, inst, things, message in checks:
        kwargs = dict(kwargs, thing_class_ids=things, stuff_area_limit=0)
        with pytest.raises(ValueError, match=message):
            _merge_reference(semantic, inst, **kwargs)
        for device in devices:
            with pytest.raises(ValueError, match=message):
                ops.merge_semantic_instance(semantic.to(device), inst.to(device),
                                            backend="native", **kwargs)
    for device in devices:
        with pytest.raises(ValueError, match="non-negative"):
            ops.merge_semantic_instance((semantic - 20).to(device), instance.to(device),
                                        thing_class_ids=[11], label_divisor=1000,
                                        stuff_area_limit=0, void_label=0, backend="native")


def test_raw_ops_reject_bad_arguments(native):
    lib = torch.ops.deeplab_zoo
    offsets = torch.zeros(1, 2, 4, 4)
    mask = torch.ones(1, 4, 4, dtype=torch.bool)
    centers = torch.zeros(1, 2, 2, dtype=torch.int64)
    scores = torch.ones(1, 2)
    with pytest.raises(ValueError, match="num_centers"):
        lib.center_group(centers, scores, torch.tensor([3]), offsets, mask)
    with pytest.raises(ValueError, match="thing_mask"):
        lib.center_group(centers, scores, torch.tensor([1]), offsets, mask.int())
    with pytest.raises(ValueError, match="centers"):
        lib.center_group(centers.int(), scores, torch.tensor([1]), offsets, mask)
    with pytest.raises(ValueError, match="semantic_logits"):
        lib.semantic_argmax(torch.zeros(1, 3, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="nms_kernel"):
        lib.center_heatmap_nms(torch.zeros(1, 4, 4), 0.1, 0)
    with pytest.raises(ValueError, match="int32"):
        lib.merge_semantic_instance(torch.zeros(1, 4, 4, dtype=torch.int64),
                                    torch.zeros(1, 4, 4, dtype=torch.int32), [], 1000, 0, 0)


# --- torch.library / torch.compile / torch.export -----------------------------------------

def _op_samples(device: str = "cpu") -> dict:
    logits, heat, offsets = _scene(2, 12, 15, seed=11)
    logits, heat, offsets = logits.to(device), heat.to(device), offsets.to(device)
    centers = torch.tensor([[[2, 3], [8, 9], [0, 0]], [[5, 5], [0, 0], [0, 0]]], device=device)
    scores = torch.tensor([[0.9, 0.5, 0.0], [0.7, 0.0, 0.0]], device=device)
    counts = torch.tensor([2, 1], device=device)
    semantic = torch.randint(0, 19, (2, 12, 15), dtype=torch.int32, device=device)
    mask = semantic >= 11
    instance = torch.randint(0, 3, (2, 12, 15), dtype=torch.int32, device=device) * mask
    return {
        "semantic_argmax": (logits,),
        "center_heatmap_nms": (heat[:, 0], 0.1, 5),
        "center_group": (centers, scores, counts, offsets, mask),
        "merge_semantic_instance": (semantic, instance.int(), list(range(11, 19)), 1000, 10,
                                    255),
    }


@pytest.mark.parametrize("op", ["semantic_argmax", "center_heatmap_nms", "center_group",
                                "merge_semantic_instance"])
def test_opcheck(native, devices, op):
    for device in devices:
        torch.library.opcheck(getattr(torch.ops.deeplab_zoo, op).default,
                              _op_samples(device)[op])


class _Grouping(torch.nn.Module):
    """Argmax -> thing mask -> grouping -> merge: the traceable part of post-processing."""

    def forward(self, logits, centers, scores, counts, offsets):
        lib = torch.ops.deeplab_zoo
        semantic = lib.semantic_argmax(logits)
        things = semantic >= 11
        instance, instance_scores = lib.center_group(centers, scores, counts, offsets, things)
        panoptic = lib.merge_semantic_instance(semantic, instance, list(range(11, 19)), 1000, 4,
                                               255)
        return panoptic, instance_scores


def test_torch_export_and_compile_trace_through_the_ops(native):
    samples = _op_samples()
    args = (samples["semantic_argmax"][0], *samples["center_group"][:4])
    module = _Grouping()
    eager = module(*args)
    exported = torch.export.export(module, args)
    targets = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    assert {"deeplab_zoo.center_group.default",
            "deeplab_zoo.merge_semantic_instance.default"} <= targets
    for a, b in zip(exported.module()(*args), eager):
        assert _bits_equal(a, b)
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True)
    for a, b in zip(compiled(*args), eager):
        assert _bits_equal(a, b)


# --- backend selection / fallback ---------------------------------------------------------

def test_backend_names(native):
    assert ops.backend() in ("native-cpu", "native-cuda")
    assert ops.native_available("cpu")
    logits, heat, offsets = _scene(1, 8, 8, seed=0)
    with pytest.raises(ValueError, match="backend"):
        ops.panoptic_deeplab_postprocess(logits, heat, offsets, backend="fast", **CITYSCAPES)
    with pytest.raises(RuntimeError, match="CPU and CUDA tensors only"):
        ops.semantic_argmax(logits.to("meta"), backend="native")
    auto = ops.panoptic_deeplab_postprocess(logits, heat, offsets, **CITYSCAPES)
    ref = ops.panoptic_deeplab_postprocess(logits, heat, offsets, backend="reference",
                                           **CITYSCAPES)
    _assert_same_outputs(auto, ref)


def test_fallback_without_extension(monkeypatch):
    missing = _extension.ExtensionStatus(False, None, "native extension not built (test)")
    monkeypatch.setattr(_extension, "_status", missing)
    assert ops.backend() == "reference"
    assert not ops.native_available("cpu")
    logits, heat, offsets = _scene(1, 8, 8, seed=0)
    out = ops.panoptic_deeplab_postprocess(logits, heat, offsets, **CITYSCAPES)
    _assert_same_outputs(out, reference.panoptic_deeplab_postprocess(logits, heat, offsets,
                                                                     **CITYSCAPES))
    with pytest.raises(RuntimeError, match="not available: native extension not built"):
        ops.panoptic_deeplab_postprocess(logits, heat, offsets, backend="native", **CITYSCAPES)


def test_stale_or_disabled_library_is_not_loaded(tmp_path, monkeypatch):
    library = tmp_path / f"{_extension.LIBRARY_NAME}.so"
    library.write_bytes(b"")
    assert "no build stamp" in _extension._check_stamp(library)
    stamp = {"torch": torch.__version__, "sources": "0" * 64}
    (tmp_path / _extension.STAMP_NAME).write_text(json.dumps(stamp))
    assert "out of date" in _extension._check_stamp(library)
    stamp["torch"] = "0.0"
    (tmp_path / _extension.STAMP_NAME).write_text(json.dumps(stamp))
    assert "built for torch 0.0" in _extension._check_stamp(library)
    monkeypatch.setenv("DEEPLAB_ZOO_DISABLE_NATIVE", "1")
    assert not _extension._load_locked(library).loaded
    monkeypatch.delenv("DEEPLAB_ZOO_DISABLE_NATIVE")
    assert "missing" in _extension._load_locked(tmp_path / "nothing.so").reason


def test_package_imports_without_loading_the_extension():
    code = ("import deeplab_zoo.ops; from deeplab_zoo.ops import _extension; "
            "assert _extension._status is None")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# --- CUDA ---------------------------------------------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_native_equals_cpu_native(native):
    if not native.cuda:
        pytest.skip("extension built without CUDA kernels (rebuild on this machine)")
    logits, heat, offsets = _scene(3, 65, 97, seed=11, peaks=10)
    kwargs = dict(CITYSCAPES, stuff_area_limit=100, nms_kernel=7, keep_k_centers=6)
    cpu = ops.panoptic_deeplab_postprocess(logits, heat, offsets, backend="native", **kwargs)
    gpu = ops.panoptic_deeplab_postprocess(logits.cuda(), heat.cuda(), offsets.cuda(),
                                           backend="native", **kwargs)
    _assert_same_outputs(gpu, cpu)


def _cuda_root() -> Path | None:
    from deeplab_zoo.ops import build

    return build._cuda_root()


@pytest.mark.parametrize("source", [p.name for p in
                                    sorted(_extension.CSRC_DIR.glob("panoptic_deeplab*.cu"))])
def test_cuda_sources_compile(source, tmp_path):
    """Compile-only check of the CUDA kernels (no GPU needed), and that their float math
    stays IEEE round-to-nearest (no FMA contraction, no approximate sqrt) even with nvcc's
    default --fmad=true: what makes the GPU results bit-identical to the CPU ones."""
    root = _cuda_root()
    if root is None:
        pytest.skip("nvcc / CUDA toolkit not found")
    common = [str(root / "bin" / "nvcc"), str(_extension.CSRC_DIR / source), "-std=c++17",
              "-O3", "-I", str(_extension.CSRC_DIR)]
    result = subprocess.run(common + ["-c", "-o", str(tmp_path / "kernels.o"), "--fmad=false",
                                      "-gencode=arch=compute_80,code=sm_80", "-Xcompiler",
                                      "-Wall", "-Werror=all-warnings"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    ptx = tmp_path / "kernels.ptx"
    result = subprocess.run(common + ["-ptx", "-o", str(ptx), "--fmad=true", "-arch=sm_80"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = ptx.read_text()
    assert "fma" not in text and "sqrt.approx" not in text
    assert "sqrt.rn.f32" in text


@pytest.mark.parametrize("source", [p.name for p in sorted(_extension.CSRC_DIR.glob("*_cuda.cpp"))])
def test_cuda_wrappers_compile(source):
    """Syntax check of the ATen wrappers of the CUDA kernels against torch's CUDA headers."""
    from torch.utils import cpp_extension

    root = _cuda_root()
    if root is None or torch.version.cuda is None:
        pytest.skip("needs a CUDA build of torch and the CUDA toolkit headers")
    compiler = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    includes = [*cpp_extension.include_paths(), str(root / "include"), str(_extension.CSRC_DIR)]
    command = [compiler, "-fsyntax-only", "-std=c++20", *[f"-I{p}" for p in includes],
               str(_extension.CSRC_DIR / source)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
