"""Panoptic-DeepLab post-processing: bit-exact against DeepLab2's stored outputs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import parity_root

from deeplab_zoo.postprocess import panoptic_deeplab as pdl
from deeplab_zoo.postprocess.panoptic_deeplab import (
    center_heatmap_nms,
    find_instance_centers,
    group_pixels,
    merge_semantic_and_instance,
    panoptic_deeplab_postprocess,
    semantic_argmax,
    tf_top_k_unsorted_last_index,
)

OUTPUTS = ("panoptic_pred", "semantic_pred", "instance_pred", "instance_center_pred",
           "instance_scores")
POSTPROC_FIXTURES = ("pdl_basic", "pdl_no_center", "pdl_all_stuff", "pdl_tiny_thing",
                     "pdl_keep_k3")
CITYSCAPES = dict(thing_class_ids=list(range(11, 19)), label_divisor=1000, stuff_area_limit=2048,
                  center_threshold=0.1, nms_kernel=13, keep_k_centers=400, void_label=255)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _model_cases() -> list[str]:
    """Full-model cases whose raw Panoptic-DeepLab outputs are stored in full."""
    root = parity_root()
    names = [p.stem for p in sorted((root / "cases").glob("panoptic_deeplab_*.npz"))]
    names += ["large/" + p.stem for p in sorted((root / "large" / "cases").glob(
        "panoptic_deeplab_*.npz"))]
    return names or ["<no fixtures>"]


def _kwargs(params: dict) -> dict:
    return dict(thing_class_ids=params["thing_class_ids"],
                label_divisor=params["panoptic_label_divisor"],
                stuff_area_limit=params["stuff_area_limit"],
                center_threshold=params["center_score_threshold"],
                nms_kernel=params["nms_kernel"], keep_k_centers=params["keep_k_centers"],
                void_label=params["ignore_label"])


def _run_nhwc(ref, params: dict, device: str = "cpu") -> dict:
    """Feeds stored HWC reference raw outputs as NCHW batch-1 tensors."""
    logits = torch.from_numpy(ref["semantic_logits"]).permute(2, 0, 1)[None].to(device)
    heat = torch.from_numpy(ref["center_heatmap"])[None, None].to(device)
    offsets = torch.from_numpy(ref["offset_map"]).permute(2, 0, 1)[None].to(device)
    return panoptic_deeplab_postprocess(logits, heat, offsets, **_kwargs(params))


def _assert_identical(out: dict, ref, index: int = 0) -> None:
    for name in OUTPUTS:
        ours = out[name][index].cpu().numpy()
        assert ours.dtype == ref[name].dtype, f"{name}: dtype {ours.dtype} != {ref[name].dtype}"
        mismatched = int((ours != ref[name]).sum())
        assert mismatched == 0, f"{name}: {mismatched} pixels differ"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", POSTPROC_FIXTURES)
def test_postproc_fixture_identical(parity_dir, name, device):
    ref = np.load(parity_dir / "postproc" / f"{name}.npz")
    params = json.loads((parity_dir / "postproc" / f"{name}.json").read_text())["parameters"]
    out = _run_nhwc(ref, params, device)
    _assert_identical(out, ref)
    np.testing.assert_array_equal(out["center_points"][0].cpu().numpy(), ref["center_points_yx"])
    # The semantic argmax rule equals argmax over DeepLab2's stored softmax.
    np.testing.assert_array_equal(out["semantic_pred"][0].cpu().numpy(),
                                  ref["semantic_probs"].argmax(-1))
    centers, scores = find_instance_centers(
        torch.from_numpy(ref["center_heatmap"]).to(device),
        center_threshold=params["center_score_threshold"], nms_kernel=params["nms_kernel"],
        keep_k_centers=params["keep_k_centers"])
    np.testing.assert_array_equal(centers.cpu().numpy(), ref["center_points_yx"])
    heat = ref["instance_center_pred"]
    np.testing.assert_array_equal(scores.cpu().numpy(), heat[tuple(ref["center_points_yx"].T)])


@pytest.mark.parametrize("case", _model_cases())
def test_model_case_postprocess_identical(case):
    root = parity_root()
    if case == "<no fixtures>" or not (root / "cases.json").is_file():
        pytest.skip(f"parity fixtures not found at {root} (set DEEPLAB_ZOO_PARITY_DIR)")
    path = root / ("large/cases" if case.startswith("large/") else "cases") / case.split("/")[-1]
    meta = json.loads(path.with_suffix(".json").read_text())
    if meta.get("storage", "full") != "full":
        pytest.skip(f"{case}: raw outputs stored as '{meta.get('storage')}', not in full")
    ref = np.load(path.with_suffix(".npz"))
    missing = [k for k in ("semantic_logits", "center_heatmap", "offset_map") + OUTPUTS
               if k not in ref.files]
    if missing:
        pytest.skip(f"{case}: stored outputs lack {missing}")
    _assert_identical(_run_nhwc(ref, meta["postprocessing"]), ref)


# --- DeepLab2 / TensorFlow quirks (expected values recorded with TensorFlow 2.21 CPU) ----

def test_tf_top_k_unsorted_last_index_matches_tensorflow():
    assert tf_top_k_unsorted_last_index(torch.tensor([7, 3, 1, 2, 5, 0, 4, 6, 9, 8.0]), 5) == 9
    assert tf_top_k_unsorted_last_index(torch.arange(20.0), 5) == 19
    assert tf_top_k_unsorted_last_index(torch.arange(20.0).flip(0), 5) == 1
    assert tf_top_k_unsorted_last_index(torch.zeros(10), 3) == 0
    assert tf_top_k_unsorted_last_index(torch.tensor([0.0, 2.0, 5.0, 5.0]), 1) == 2

    def sparse(seed: int, size: int, density: float, levels: int) -> torch.Tensor:
        rng = np.random.default_rng(seed)
        x = np.zeros(size, np.float32)
        mask = rng.random(size) < density
        count = int(mask.sum())
        x[mask] = (rng.integers(1, levels + 1, count) / levels if levels
                   else rng.random(count)).astype(np.float32)
        return torch.from_numpy(x)

    # (seed, size, density, quantisation levels, k) -> index TF returned last.
    recorded = {(0, 5000, 0.02, 0, 20): 4811, (1, 5000, 0.05, 10, 37): 4850,
                (2, 800, 0.5, 4, 100): 694, (3, 6144, 0.01, 0, 3): 5011,
                (4, 3000, 0.3, 0, 400): 2996, (5, 100, 1.0, 3, 7): 14}
    for (seed, size, density, levels, k), expected in recorded.items():
        assert tf_top_k_unsorted_last_index(sparse(seed, size, density, levels), k) == expected


def test_keep_k_quirk_keeps_fewer_than_k():
    heat = torch.zeros(40, 60)
    for (y, x), v in {(5, 5): 0.3, (20, 20): 0.8, (20, 45): 0.7, (35, 10): 0.2}.items():
        heat[y, x] = v
    centers, scores = find_instance_centers(heat, center_threshold=0.1, nms_kernel=3,
                                            keep_k_centers=3)
    # TF's unsorted top-3 is [0.3, 0.8, 0.7] (heap order) -> keep > 0.7 only.
    assert centers.tolist() == [[20, 20]]
    assert scores.tolist() == pytest.approx([0.8])
    centers, _ = find_instance_centers(heat, center_threshold=0.1, nms_kernel=3, keep_k_centers=0)
    assert centers.tolist() == [[5, 5], [20, 20], [20, 45], [35, 10]]  # row-major


def test_semantic_argmax_reproduces_softmax_ties():
    rows = [[0.3, 0.30000004172325134], [0.1, 0.10000000894069672], [1.0, 1.0000001192092896],
            [0.0, 2.0**-25], [0.0, 2.980232594040899e-08], [-(2.0**-25), 0.0],
            [-2.980232594040899e-08, 0.0], [5.0, 5.0], [2.0, 1.0]]
    logits = torch.tensor([r + [-3.0] for r in rows], dtype=torch.float32)
    assert semantic_argmax(logits, dim=1).tolist() == [0, 0, 1, 0, 1, 0, 1, 0, 0]
    assert logits.argmax(dim=1).tolist()[:2] == [1, 1]  # plain logits argmax differs


def test_nms_pads_with_zeros_and_threshold_is_strict():
    heat = torch.full((3, 3), -0.5)
    heat[1, 1] = -0.2
    out = center_heatmap_nms(heat, center_threshold=-1.0, nms_kernel=3)
    # Zero padding: border pixels see 0 > their value and are suppressed; no centres (<= 0).
    assert out[1, 1] == heat[1, 1]
    assert torch.equal(out != 0, torch.tensor([[0, 0, 0], [0, 1, 0], [0, 0, 0]]).bool())
    heat = torch.tensor([[0.1, 0.2], [0.05, 0.1]])
    out = center_heatmap_nms(heat, center_threshold=0.1, nms_kernel=1)
    assert torch.equal(out, torch.tensor([[0.0, 0.2], [0.0, 0.0]]))
    even = center_heatmap_nms(torch.tensor([[0.0, 0.5, 0.4]]), center_threshold=0.1, nms_kernel=2)
    # Even kernel: pad (k-1)//2 = 0 before, 1 after, so the window of x is (x, x + 1).
    assert torch.equal(even, torch.tensor([[0.0, 0.5, 0.4]]))


# --- grouping -------------------------------------------------------------------------

def test_group_pixels_nearest_first_on_ties_and_chunking(monkeypatch):
    torch.manual_seed(0)
    height, width = 17, 23
    centers = torch.stack([torch.randint(0, height, (30,)), torch.randint(0, width, (30,))], 1)
    centers[5] = centers[2]  # duplicate centre: the first one must win
    offsets = torch.randint(-6, 7, (2, height, width)).float()  # integer -> exact distance ties
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    target = torch.stack([ys + offsets[0], xs + offsets[1]], -1).reshape(-1, 1, 2)
    dist = (centers.float()[None] - target).pow(2).sum(-1).sqrt()
    expected = dist.argmin(1).reshape(height, width) + 1
    full = group_pixels(centers, offsets)
    assert torch.equal(full, expected)
    assert not (full == 6).any()
    monkeypatch.setattr(pdl, "_GROUP_CHUNK_ELEMENTS", 7)
    assert torch.equal(group_pixels(centers, offsets), expected)
    assert torch.equal(group_pixels(centers[:0], offsets), torch.zeros(height, width,
                                                                      dtype=torch.int64))


# --- merge: vectorised implementation vs a slow per-instance oracle ----------------------

def _merge_oracle(semantic, instance, thing_ids, divisor, limit, void):
    sem = semantic.reshape(-1).tolist()
    inst = instance.reshape(-1).tolist()
    pan = [void * divisor] * len(sem)
    seen, order = set(), []
    for i in inst:  # first appearance order, like tf.unique
        if i not in seen:
            seen.add(i)
            order.append(i)
    counters: dict[int, int] = {}
    for inst_id in order:
        if inst_id == 0:
            continue
        pixels = [p for p, (s, i) in enumerate(zip(sem, inst)) if i == inst_id and s in thing_ids]
        if not pixels:
            continue
        votes: dict[int, int] = {}
        for p in pixels:
            votes[sem[p]] = votes.get(sem[p], 0) + 1
        best = max(votes.values())
        cls = min(c for c, v in votes.items() if v == best)
        counters[cls] = counters.get(cls, 0) + 1
        for p in pixels:
            pan[p] = cls * divisor + counters[cls]
    for cls in set(sem):
        if cls in thing_ids:
            continue
        pixels = [p for p, (s, i) in enumerate(zip(sem, inst)) if s == cls and i == 0]
        if len(pixels) >= limit:
            for p in pixels:
                pan[p] = cls * divisor
    return torch.tensor(pan, dtype=torch.int32).reshape(semantic.shape)


def test_merge_matches_slow_oracle_on_random_maps():
    gen = torch.Generator().manual_seed(1234)
    for trial in range(60):
        height = int(torch.randint(1, 20, (1,), generator=gen))
        width = int(torch.randint(1, 20, (1,), generator=gen))
        num_classes = int(torch.randint(1, 7, (1,), generator=gen))
        semantic = torch.randint(0, num_classes, (height, width), generator=gen)
        num_ids = int(torch.randint(1, 9, (1,), generator=gen))
        instance = torch.randint(0, num_ids, (height, width), generator=gen)
        if trial % 3 == 0:
            instance = instance * 7 - 3  # arbitrary, also negative, ids
        thing_ids = sorted(set(torch.randint(0, num_classes, (2,), generator=gen).tolist()))
        limit = int(torch.randint(0, 30, (1,), generator=gen))
        void = [255, 0, 32][trial % 3]
        got = merge_semantic_and_instance(semantic, instance, thing_class_ids=thing_ids,
                                          label_divisor=1000, stuff_area_limit=limit,
                                          void_label=void)
        expected = _merge_oracle(semantic, instance, set(thing_ids), 1000, limit, void)
        assert got.dtype == torch.int32
        assert torch.equal(got, expected), f"trial {trial}"


def test_merge_majority_tie_takes_smallest_class_and_counters_follow_first_appearance():
    semantic = torch.tensor([[12, 12, 11, 11, 0], [13, 13, 13, 0, 0]])
    instance = torch.tensor([[2, 2, 2, 2, 0], [1, 1, 1, 0, 0]])
    pan = merge_semantic_and_instance(semantic, instance, thing_class_ids=[11, 12, 13],
                                      label_divisor=1000, stuff_area_limit=3, void_label=255)
    # id 2 appears first: tie 11 vs 12 -> 11, counter 1; id 1 -> class 13, counter 1.
    assert pan.tolist() == [[11001] * 4 + [0], [13001] * 3 + [0, 0]]


# --- edge cases -------------------------------------------------------------------------

def _random_inputs(batch: int, height: int, width: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, 19, height, width, generator=gen) * 3
    heat = torch.rand(batch, 1, height, width, generator=gen)
    offsets = torch.randn(batch, 2, height, width, generator=gen) * 4
    return logits, heat, offsets


def test_no_centres_gives_void_things_and_zero_maps():
    logits, heat, offsets = _random_inputs(1, 24, 32)
    out = panoptic_deeplab_postprocess(logits, heat * 0.05, offsets, **CITYSCAPES)
    assert out["center_points"][0].shape == (0, 2)
    assert not out["instance_pred"].any() and not out["instance_scores"].any()
    assert not out["instance_center_pred"].any()
    things = (out["semantic_pred"] >= 11) & (out["semantic_pred"] <= 18)
    assert (out["panoptic_pred"][things] == 255000).all()


def test_one_pixel_image():
    logits = torch.zeros(1, 19, 1, 1)
    logits[0, 13] = 1.0
    heat = torch.full((1, 1, 1, 1), 0.9)
    offsets = torch.zeros(1, 2, 1, 1)
    out = panoptic_deeplab_postprocess(logits, heat, offsets, **CITYSCAPES)
    assert out["semantic_pred"].tolist() == [[[13]]]
    assert out["instance_pred"].tolist() == [[[1]]]
    assert out["panoptic_pred"].tolist() == [[[13001]]]
    assert torch.equal(out["instance_scores"], heat[:, 0])
    logits[0, 13] = 0.0
    logits[0, 2] = 1.0  # stuff, area 1 < 2048 -> void
    out = panoptic_deeplab_postprocess(logits, heat, offsets, **CITYSCAPES)
    assert out["panoptic_pred"].tolist() == [[[255000]]]
    assert out["instance_pred"].tolist() == [[[0]]]


def test_all_void_when_stuff_is_small():
    logits, heat, offsets = _random_inputs(1, 16, 16, seed=3)
    logits[:, 11:] -= 100.0  # no thing pixels at all
    out = panoptic_deeplab_postprocess(logits, heat, offsets, **CITYSCAPES)
    assert (out["panoptic_pred"] == 255000).all()
    assert not out["instance_pred"].any()


def test_batch_equals_per_image():
    logits, heat, offsets = _random_inputs(2, 40, 56, seed=7)
    kwargs = dict(CITYSCAPES, stuff_area_limit=50, keep_k_centers=4, nms_kernel=5)
    batched = panoptic_deeplab_postprocess(logits, heat, offsets, **kwargs)
    for i in range(2):
        single = panoptic_deeplab_postprocess(logits[i:i + 1], heat[i:i + 1], offsets[i:i + 1],
                                              **kwargs)
        for name in OUTPUTS:
            assert torch.equal(batched[name][i], single[name][0]), name
        assert torch.equal(batched["center_points"][i], single["center_points"][0])
    assert batched["panoptic_pred"].dtype == torch.int32
    assert batched["instance_scores"].dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    logits, heat, offsets = _random_inputs(2, 65, 97, seed=11)
    kwargs = dict(CITYSCAPES, stuff_area_limit=100, nms_kernel=7, keep_k_centers=6)
    cpu = panoptic_deeplab_postprocess(logits, heat, offsets, **kwargs)
    gpu = panoptic_deeplab_postprocess(logits.cuda(), heat.cuda(), offsets.cuda(), **kwargs)
    for name in OUTPUTS:
        assert torch.equal(cpu[name], gpu[name].cpu()), name


# --- validation -------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    (lambda a: (a[0][0], a[1], a[2]), "semantic_logits"),
    (lambda a: (a[0], a[1][:, 0], a[2]), "center_heatmap"),
    (lambda a: (a[0], a[1][..., :-1], a[2]), "center_heatmap"),
    (lambda a: (a[0], a[1], a[2][:, :1]), "offset_map"),
    (lambda a: (a[0], a[1], a[2][:1]), "offset_map"),
    (lambda a: (a[0][:, :0], a[1], a[2]), "semantic_logits"),
    (lambda a: (a[0].long(), a[1], a[2]), "semantic_logits"),
])
def test_postprocess_rejects_bad_inputs(change, message):
    args = change(_random_inputs(2, 8, 8))
    with pytest.raises(ValueError, match=message):
        panoptic_deeplab_postprocess(*args, **CITYSCAPES)


def test_postprocess_rejects_bad_parameters():
    args = _random_inputs(1, 8, 8)
    for key, value in [("nms_kernel", 0), ("nms_kernel", 2.5), ("keep_k_centers", "5"),
                       ("label_divisor", 0)]:
        with pytest.raises(ValueError, match=key):
            panoptic_deeplab_postprocess(*args, **dict(CITYSCAPES, **{key: value}))


def test_merge_rejects_bad_inputs_and_id_overflow():
    semantic = torch.full((4, 4), 11)
    instance = torch.arange(16).reshape(4, 4) + 1
    kwargs = dict(thing_class_ids=[11], stuff_area_limit=0, void_label=255)
    with pytest.raises(ValueError, match="label_divisor"):
        merge_semantic_and_instance(semantic, instance, label_divisor=10, **kwargs)
    with pytest.raises(ValueError, match="void_label"):
        merge_semantic_and_instance(semantic, instance, label_divisor=10**8, **kwargs)
    with pytest.raises(ValueError, match="overflows int32"):  # thing ids
        merge_semantic_and_instance(semantic, instance, label_divisor=2 * 10**8,
                                    thing_class_ids=[11], stuff_area_limit=0, void_label=0)
    with pytest.raises(ValueError, match="overflows int32"):  # stuff ids
        merge_semantic_and_instance(semantic, instance * 0, label_divisor=2 * 10**8,
                                    thing_class_ids=[], stuff_area_limit=0, void_label=0)
    with pytest.raises(ValueError, match="shapes differ"):
        merge_semantic_and_instance(semantic, instance[:2], label_divisor=1000, **kwargs)
    with pytest.raises(ValueError, match="integer"):
        merge_semantic_and_instance(semantic.float(), instance, label_divisor=1000, **kwargs)
    with pytest.raises(ValueError, match="non-negative"):
        merge_semantic_and_instance(semantic - 20, instance, label_divisor=1000, **kwargs)
    with pytest.raises(ValueError, match="instance"):
        merge_semantic_and_instance(semantic, instance[None], label_divisor=1000, **kwargs)
    with pytest.raises(ValueError, match="centers"):
        group_pixels(torch.zeros(3), torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="offsets"):
        group_pixels(torch.zeros(3, 2), torch.zeros(3, 4, 4))
