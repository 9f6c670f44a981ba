"""Benchmark: position-sensitive axial attention, pure-PyTorch reference vs the native op.

Shapes of Axial-ResNet stages for a 1025 x 2049 input at output stride 16 (65 x 129 feature
maps, 8 heads): height-axis layers attend over 65 rows for each of the 129 columns,
width-axis layers over 129 columns for each of the 65 rows. Configurations (key / value
depth per head): Axial-ResNet-L stage 4 (32 / 64) and stage 5 (64 / 128, atrous at
stride 16), Axial-ResNet-S stage 4 (16 / 32).

What is timed is the attention core of one layer, forward + backward, exactly as the
layers run it: `deeplab_zoo.ops.axial_attention` with DeepLab2's batch norms on the
similarity terms and on the retrieved terms (training mode by default: batch statistics,
running-statistic updates), gradients for every input and norm parameter. The reference
is `axial_attention_reference` (composite PyTorch); the native path is the fused op plus
the norms around it (closed-form similarity moments, F.batch_norm for the retrieved terms).
Both are timed in the same run, alternately (best of N: load from other processes hits
both alike), at 1 thread and at all threads, after checking that they agree (float
rounding).

Peak memory is measured with torch.profiler (profile_memory=True): the largest "Total
Allocated" of the CPU allocator's memory events during one forward + backward, counted
from the start of the call (the inputs exist before), i.e. every tensor the call creates,
the native op's scratch buffers included (they are ATen tensors); memory outside the
PyTorch allocator (thread stacks, the OpenMP runtime) is not counted. On CUDA:
torch.cuda.max_memory_allocated above the inputs.

    python -m deeplab_zoo.ops.build            # once
    python scripts/benchmark_axial_attention.py [--repeats 5] [--eval-norms]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from collections.abc import Callable

import torch
from bench_common import cpu_name

from deeplab_zoo import ops
from deeplab_zoo.layers.axial_attention import MultiAxisBatchNorm

HEADS = 8
FEATURE = (65, 129)  # 1025 x 2049 at output stride 16
CONFIGS = {  # name: (key depth, value depth) per head
    "L-stage4": (32, 64),
    "L-stage5": (64, 128),
    "S-stage4": (16, 32),
}
TARGET_SPEEDUP = 1.3
TARGET_MEMORY = 0.6


def make_case(sequences: int, length: int, dk: int, dv: int, *, training: bool,
              device: str, seed: int = 0) -> tuple[list[torch.Tensor], list[MultiAxisBatchNorm]]:
    """Inputs of one layer's attention core and its two norms (non-trivial statistics)."""
    gen = torch.Generator().manual_seed(seed)
    shapes = [(sequences, HEADS, length, dk), (sequences, HEADS, length, dk),
              (sequences, HEADS, length, dv), (length, length, dk), (length, length, dk),
              (length, length, dv)]
    tensors = [torch.randn(shape, generator=gen).to(device).requires_grad_() for shape in shapes]
    sim = MultiAxisBatchNorm((3, 1, HEADS, 1, 1), eps=1e-3, momentum=0.01)
    out = MultiAxisBatchNorm((2, 1, HEADS, 1, dv), eps=1e-3, momentum=0.01)
    with torch.no_grad():
        sim.running_var.fill_(float(dk))
        for norm in (sim, out):
            norm.weight.uniform_(0.5, 1.5, generator=gen)
    return tensors, [sim.to(device).train(training), out.to(device).train(training)]


def step_fn(tensors: list[torch.Tensor], norms: list[MultiAxisBatchNorm], backend: str,
            grad: torch.Tensor) -> Callable[[], list[torch.Tensor]]:
    """One forward + backward (gradients of the inputs and the norm parameters)."""
    sim, out_norm = (copy.deepcopy(n) for n in norms)
    params = [*tensors, sim.weight, sim.bias, out_norm.weight, out_norm.bias]

    def step() -> list[torch.Tensor]:
        out = ops.axial_attention(*tensors, similarity_norm=sim, output_norm=out_norm,
                                  backend=backend)
        return [out, *torch.autograd.grad(out, params, grad)]

    return step


def check_close(native: list[torch.Tensor], ref: list[torch.Tensor]) -> float:
    """Largest error relative to the largest value, over output and gradients (skipping
    the similarity shift's gradient, 0 up to float noise under softmax)."""
    worst = 0.0
    for index, (a, b) in enumerate(zip(native, ref)):
        if index == 8:  # similarity bias
            continue
        err = float(((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).detach())
        worst = max(worst, err)
    if worst > 1e-4:
        raise SystemExit(f"native and reference results differ: relative error {worst:.2g}")
    return worst


def timeit_pair(first: Callable[[], object], second: Callable[[], object], repeats: int,
                cuda: bool) -> tuple[float, float]:
    """Fastest wall times in seconds of two functions, run alternately (after one warm-up
    call each), so that load from other processes affects both alike."""
    first()
    second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((first, times[0]), (second, times[1])):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize()
            out.append(time.perf_counter() - start)
    return min(times[0]), min(times[1])


def peak_cpu_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes held by the CPU allocator during fn(), counted from its start."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as trace:
            events = json.load(trace)["traceEvents"]
    totals = [e["args"]["Total Allocated"] for e in events
              if e.get("name") == "[memory]" and e.get("args", {}).get("Device Type", 0) == 0]
    return max([0, *totals])


def peak_cuda_bytes(fn: Callable[[], object]) -> int:
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def run_rows(args: argparse.Namespace, device: str) -> list[tuple[float, float]]:
    cuda = device == "cuda"
    results = []
    height, width = FEATURE
    for name in args.configs:
        dk, dv = CONFIGS[name]
        for axis, (sequences, length) in (("height", (width * args.batch, height)),
                                          ("width", (height * args.batch, width))):
            tensors, norms = make_case(sequences, length, dk, dv, training=not args.eval_norms,
                                       device=device)
            gen = torch.Generator().manual_seed(1)
            grad = torch.randn(sequences, HEADS, length, dv, generator=gen).to(device)
            ref = step_fn(tensors, norms, "reference", grad)
            nat = step_fn(tensors, norms, "native", grad)
            err = check_close(nat(), ref())
            t_ref, t_nat = timeit_pair(ref, nat, args.repeats, cuda)
            if args.no_memory:
                m_ref = m_nat = float("nan")
            else:
                peak = peak_cuda_bytes if cuda else peak_cpu_bytes
                m_ref, m_nat = peak(ref) / 2**20, peak(nat) / 2**20
            speedup, memory = t_ref / t_nat, m_nat / m_ref
            results.append((speedup, memory))
            shape = f"{sequences}x{HEADS}x{length}, {dk}/{dv}"
            print(f"  {name:<9} {axis:<6} {shape:<19} {t_ref * 1e3:9.1f} {t_nat * 1e3:9.1f} "
                  f"{speedup:7.2f}x {m_ref:9.1f} {m_nat:9.1f} {memory:7.2f}x   {err:.1e}",
                  flush=True)
    return results


def summary(label: str, results: list[tuple[float, float]]) -> None:
    speed = [s for s, _ in results]
    memory = [m for _, m in results if m == m]
    met = sum(s >= TARGET_SPEEDUP and (m != m or m <= TARGET_MEMORY) for s, m in results)
    line = (f"  {label}: speed-up {min(speed):.2f}x .. {max(speed):.2f}x "
            f"(target >= {TARGET_SPEEDUP}x)")
    if memory:
        line += f"; peak memory {min(memory):.2f}x .. {max(memory):.2f}x (target <= " \
                f"{TARGET_MEMORY}x)"
    print(line + f"; both targets met in {met} / {len(results)} layers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1, help="images per batch")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--eval-norms", action="store_true",
                        help="batch norms in eval mode (running statistics)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory columns")
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="CPU thread counts (default: 1 and all)")
    args = parser.parse_args()

    if not ops.axial.native_available("cpu"):
        raise SystemExit("the native extension is not available: "
                         f"{ops.extension_status().reason}")
    all_threads = torch.get_num_threads()
    load = ", load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()) if hasattr(
        os, "getloadavg") else ""
    print(f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs, torch threads "
          f"{all_threads}{load}; torch {torch.__version__}; native backend: {ops.backend()}")
    print(f"axial attention fwd + bwd, {args.batch} x 1025 x 2049 input, stride-16 features "
          f"{FEATURE[0]} x {FEATURE[1]}, {HEADS} heads, batch norms in "
          f"{'eval' if args.eval_norms else 'training'} mode")
    print(f"  {'layer':<9} {'axis':<6} {'BxHxL, dk/dv':<19} {'ref ms':>9} {'nat ms':>9} "
          f"{'speed':>8} {'ref MiB':>9} {'nat MiB':>9} {'memory':>8}   max rel. err")
    for threads in args.threads or sorted({1, all_threads}):
        torch.set_num_threads(threads)
        print(f"CPU, {threads} thread{'s' if threads > 1 else ''} (times: best of "
              f"{args.repeats}, alternating; memory: torch.profiler CPU allocator peak):")
        summary(f"{threads} thread{'s' if threads > 1 else ''}", run_rows(args, "cpu"))
    torch.set_num_threads(all_threads)
    if torch.cuda.is_available():
        if not ops.axial.native_available("cuda"):
            print("CUDA: skipped (extension built without CUDA kernels)")
        else:
            print(f"CUDA ({torch.cuda.get_device_name()}; memory: max_memory_allocated):")
            summary("CUDA", run_rows(args, "cuda"))


if __name__ == "__main__":
    main()
