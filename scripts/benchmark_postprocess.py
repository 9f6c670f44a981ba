"""Benchmark: Panoptic-DeepLab post-processing, pure-PyTorch reference vs the native ops.

Cityscapes-sized scene (1025 x 2049, 19 classes, 8 thing classes, ~50 instances), timed at
1 thread and at all threads (and on the GPU when there is one), reporting ratios measured
in the same run. Outputs are checked to be bit-identical before timing.

    python -m deeplab_zoo.ops.build            # once
    python scripts/benchmark_postprocess.py [--repeats 5] [--centers 50]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from bench_common import cpu_name

from deeplab_zoo import ops
from deeplab_zoo.postprocess import panoptic_deeplab as reference

THING_CLASSES = list(range(11, 19))
PARAMS = dict(thing_class_ids=THING_CLASSES, label_divisor=1000, stuff_area_limit=2048,
              center_threshold=0.1, nms_kernel=13, keep_k_centers=200, void_label=255)


def make_scene(height: int, width: int, num_classes: int, centers: int, seed: int = 0
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stuff layout + disc-shaped thing instances, their Gaussian centre peaks and offsets."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 11, (1, 1, 9, 17), generator=gen).float()
    label = F.interpolate(coarse, size=(height, width), mode="nearest")[0, 0].long()
    heat = torch.rand(height, width, generator=gen) * 0.05
    offsets = torch.randn(2, height, width, generator=gen)
    sigma, reach = 8.0, 24
    for _ in range(centers):
        cy = int(torch.randint(0, height, (1,), generator=gen))
        cx = int(torch.randint(0, width, (1,), generator=gen))
        radius = int(torch.randint(12, 80, (1,), generator=gen))
        cls = int(torch.randint(11, 19, (1,), generator=gen))
        peak = 0.5 + 0.5 * float(torch.rand((), generator=gen))
        y0, y1 = max(0, cy - radius), min(height, cy + radius + 1)
        x0, x1 = max(0, cx - radius), min(width, cx + radius + 1)
        ys = torch.arange(y0, y1).float()[:, None]
        xs = torch.arange(x0, x1).float()[None, :]
        disc = (ys - cy) ** 2 + (xs - cx) ** 2 <= radius**2
        label[y0:y1, x0:x1][disc] = cls
        offsets[0, y0:y1, x0:x1][disc] = (cy - ys).expand_as(disc)[disc]
        offsets[1, y0:y1, x0:x1][disc] = (cx - xs).expand_as(disc)[disc]
        y0, y1 = max(0, cy - reach), min(height, cy + reach + 1)
        x0, x1 = max(0, cx - reach), min(width, cx + reach + 1)
        ys = torch.arange(y0, y1).float()[:, None]
        xs = torch.arange(x0, x1).float()[None, :]
        gauss = peak * torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * sigma**2))
        heat[y0:y1, x0:x1] = torch.maximum(heat[y0:y1, x0:x1], gauss)
    logits = torch.randn(1, num_classes, height, width, generator=gen) * 0.5
    logits.scatter_add_(1, label[None, None], torch.full((1, 1, height, width), 3.0))
    return logits, heat[None, None], offsets[None]


def timeit(fn: Callable[[], object], repeats: int, cuda: bool = False) -> float:
    """Median wall time in seconds (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def check_identical(native: dict, ref: dict) -> None:
    for key in ("panoptic_pred", "semantic_pred", "instance_pred", "instance_center_pred",
                "instance_scores"):
        a, b = native[key], ref[key]
        if a.is_floating_point():
            a, b = a.view(torch.int32), b.view(torch.int32)
        if not torch.equal(a, b):
            raise SystemExit(f"native and reference outputs differ in {key}")


def stage_functions(logits, heat, offsets, backend: str) -> dict[str, Callable[[], object]]:
    """The four stages, each run on precomputed inputs of the previous ones."""
    out = ops.panoptic_deeplab_postprocess(logits, heat, offsets, backend="reference", **PARAMS)
    semantic, instance = out["semantic_pred"], out["instance_pred"]
    centers, scores = out["center_points"], out["center_scores"]
    things = torch.isin(semantic, torch.tensor(THING_CLASSES, device=semantic.device))
    merge_args = {k: PARAMS[k] for k in ("thing_class_ids", "label_divisor", "stuff_area_limit",
                                         "void_label")}

    def centres() -> object:
        nms = ops.center_heatmap_nms(heat, center_threshold=PARAMS["center_threshold"],
                                     nms_kernel=PARAMS["nms_kernel"], backend=backend)
        return [reference._centers_from_nms_map(m, PARAMS["keep_k_centers"]) for m in nms]

    return {
        "semantic argmax": lambda: ops.semantic_argmax(logits, backend=backend),
        "centre NMS + selection": centres,
        "center_group": lambda: ops.center_group(centers, offsets, things, center_scores=scores,
                                                 backend=backend),
        "merge_semantic_instance": lambda: ops.merge_semantic_instance(
            semantic, instance, backend=backend, **merge_args),
    }


def run(logits, heat, offsets, repeats: int, cuda: bool, stages: bool) -> None:
    ref_fn = lambda: ops.panoptic_deeplab_postprocess(  # noqa: E731
        logits, heat, offsets, backend="reference", **PARAMS)
    nat_fn = lambda: ops.panoptic_deeplab_postprocess(  # noqa: E731
        logits, heat, offsets, backend="native", **PARAMS)
    check_identical(nat_fn(), ref_fn())
    t_ref = timeit(ref_fn, max(1, repeats // 2 + 1), cuda)
    t_nat = timeit(nat_fn, repeats, cuda)
    print(f"  {'whole post-processor':<26} {t_ref * 1e3:10.1f} {t_nat * 1e3:10.1f} "
          f"{t_ref / t_nat:9.1f}x")
    if not stages:
        return
    ref_stages = stage_functions(logits, heat, offsets, "reference")
    nat_stages = stage_functions(logits, heat, offsets, "native")
    for name in ref_stages:
        a = timeit(ref_stages[name], max(1, repeats // 2 + 1), cuda)
        b = timeit(nat_stages[name], repeats, cuda)
        print(f"    {name:<24} {a * 1e3:10.1f} {b * 1e3:10.1f} {a / b:9.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=1025)
    parser.add_argument("--width", type=int, default=2049)
    parser.add_argument("--centers", type=int, default=50, help="instances in the scene")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-stages", action="store_true", help="skip the per-stage table")
    args = parser.parse_args()

    if ops.backend() == "reference":
        raise SystemExit("the native extension is not available: "
                         f"{ops.extension_status().reason}")
    all_threads = torch.get_num_threads()
    logits, heat, offsets = make_scene(args.height, args.width, 19, args.centers)
    out = ops.panoptic_deeplab_postprocess(logits, heat, offsets, backend="native", **PARAMS)
    thing_fraction = float((out["instance_pred"] > 0).float().mean())
    load = ", load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()) if hasattr(
        os, "getloadavg") else ""
    print(f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs{load}; torch "
          f"{torch.__version__}; native backend: {ops.backend()}")
    print(f"input: 1 x 19 x {args.height} x {args.width}, {len(THING_CLASSES)} thing classes, "
          f"{out['center_points'][0].shape[0]} centres, {thing_fraction:.0%} thing pixels, "
          f"{int(out['panoptic_pred'].unique().numel())} panoptic segments")
    print("outputs: native == reference, bit for bit")
    print(f"  {'':<26} {'reference':>10} {'native':>10} {'speed-up':>10}   (ms, median)")
    for threads in sorted({1, all_threads}):
        torch.set_num_threads(threads)
        print(f"CPU, {threads} thread{'s' if threads > 1 else ''}:")
        run(logits, heat, offsets, args.repeats, cuda=False, stages=not args.no_stages)
    torch.set_num_threads(all_threads)
    if torch.cuda.is_available():
        if not ops.native_available("cuda"):
            print("CUDA: skipped (extension built without CUDA kernels)")
        else:
            print(f"CUDA ({torch.cuda.get_device_name()}):")
            run(logits.cuda(), heat.cuda(), offsets.cuda(), args.repeats * 4, cuda=True,
                stages=not args.no_stages)


if __name__ == "__main__":
    main()
