"""Time PanopticQuality.update on Cityscapes-sized maps against a per-segment Python loop.

The loop baseline is the straightforward implementation of the same definition (what
DeepLab2's evaluation/panoptic_quality.py does): ``np.unique`` on the combined ids, then
Python loops over segment pairs and segments. Both run in this process on the same maps; the
script checks that they agree and prints the per-update times, their ratio, the machine and
thread counts.

    PYTHONPATH=src python scripts/benchmark_metrics.py [--height 1025 --width 2049 --repeat 5]
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from deeplab_zoo.metrics import PanopticQuality

NUM_CLASSES = 19
THING_CLASSES = list(range(11, 19))  # Cityscapes-like: 11 stuff + 8 thing classes
IGNORE = 255
DIVISOR = 1000
OFFSET = 256 * 256 * 256


def make_maps(rng: np.random.Generator, height: int, width: int, instances: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """A blocky ground truth (stuff regions, ~``instances`` thing boxes, void) and a noisy,
    partly shifted / relabelled prediction."""
    cells = rng.integers(0, 11, size=(height // 64 + 1, width // 64 + 1))
    gt = np.repeat(np.repeat(cells, 64, axis=0), 64, axis=1)[:height, :width] * DIVISOR
    for k in range(instances):
        y0, x0 = int(rng.integers(0, height - 40)), int(rng.integers(0, width - 40))
        h, w = int(rng.integers(20, 200)), int(rng.integers(20, 200))
        gt[y0:y0 + h, x0:x0 + w] = int(rng.choice(THING_CLASSES)) * DIVISOR + k + 1
    gt[rng.random((height, width)) < 0.02] = IGNORE * DIVISOR
    pred = np.roll(gt, shift=(3, -5), axis=(0, 1))
    ids = np.unique(gt)
    relabel = rng.random(ids.size) < 0.1
    lut = {int(i): int(rng.integers(0, NUM_CLASSES)) * DIVISOR + 999 for i in ids[relabel]}
    for old, new in lut.items():
        pred[pred == old] = new
    noise = rng.random((height, width)) < 0.05
    pred[noise] = rng.integers(0, 11, size=int(noise.sum())) * DIVISOR
    return gt.astype(np.int32), pred.astype(np.int32)


def loop_update(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-class (iou_sum, tp, fn, fp) with dicts and per-segment Python loops."""
    stats = np.zeros((4, NUM_CLASSES))
    gt_area = dict(zip(*(a.tolist() for a in np.unique(gt, return_counts=True))))
    pred_area = dict(zip(*(a.tolist() for a in np.unique(pred, return_counts=True))))
    combined = gt.astype(np.int64) * OFFSET + pred.astype(np.int64)
    overlap = dict(zip(*(a.tolist() for a in np.unique(combined, return_counts=True))))
    void = IGNORE * DIVISOR
    gt_matched, pred_matched = set(), set()
    for key, inter in overlap.items():
        g, p = key // OFFSET, key % OFFSET
        category = g // DIVISOR
        if category != p // DIVISOR or category == IGNORE:
            continue
        union = gt_area[g] + pred_area[p] - inter - overlap.get(void * OFFSET + p, 0)
        iou = inter / union
        if iou > 0.5:
            stats[0, category] += iou
            stats[1, category] += 1
            gt_matched.add(g)
            pred_matched.add(p)
    for g in gt_area:
        if g not in gt_matched and g // DIVISOR != IGNORE:
            stats[2, g // DIVISOR] += 1
    for p, area in pred_area.items():
        if p in pred_matched or p // DIVISOR == IGNORE:
            continue
        if overlap.get(void * OFFSET + p, 0) / area > 0.5:
            continue
        stats[3, p // DIVISOR] += 1
    return stats


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def best_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=1025)
    parser.add_argument("--width", type=int, default=2049)
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    gt, pred = make_maps(rng, args.height, args.width, args.instances)
    metric = PanopticQuality(NUM_CLASSES, IGNORE, DIVISOR, OFFSET, thing_classes=THING_CLASSES)
    metric.update(gt, pred)  # warm-up, and the agreement check below
    ours = np.stack([metric.iou_sum, metric.tp, metric.fn, metric.fp])
    reference = loop_update(gt, pred)
    if not np.allclose(ours, reference, rtol=0, atol=1e-9):
        raise SystemExit(f"MISMATCH between vectorised and loop PQ:\n{ours}\n{reference}")

    vectorised = best_time(lambda: metric.update(gt, pred), args.repeat)
    loop = best_time(lambda: loop_update(gt, pred), args.repeat)
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    print(f"machine: {platform.platform()} | {cpu_model()} | "
          f"python {platform.python_version()} | numpy {np.__version__}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"threads: os.cpu_count()={os.cpu_count()} usable={affinity} load1={load:.1f} "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} "
          "(both implementations are single-threaded numpy)")
    print(f"maps: {args.height}x{args.width}, {np.unique(gt).size} gt segments, "
          f"{np.unique(pred).size} predicted segments, {NUM_CLASSES} classes")
    print(f"PanopticQuality.update (vectorised): {vectorised * 1e3:8.1f} ms  (best of "
          f"{args.repeat})")
    print(f"per-segment Python loop reference:   {loop * 1e3:8.1f} ms")
    print(f"speed-up: {loop / vectorised:.1f}x   (results agree to 1e-9)")


if __name__ == "__main__":
    main()
