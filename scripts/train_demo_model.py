#!/usr/bin/env python
"""Trains the shipped offline demo model and measures its PQ on held-out synthetic scenes.

    python scripts/train_demo_model.py                 # ~15-40 min on a 2-core CPU
    python scripts/train_demo_model.py --resume        # continue after an interruption
    python scripts/train_demo_model.py --eval-only     # re-measure the shipped weights

Trains the ``demo`` architecture (Panoptic-DeepLab, MobileNetV3-small, slim decoders)
with the ``demo`` training preset on random crops of synthetic scenes (dataset seed 0),
then evaluates Panoptic Quality with :class:`deeplab_zoo.metrics.PanopticQuality` on
``--eval-images`` full 257x385 scenes from a different seed (never seen in training),
through ``model.predict`` (the same path as ``deeplab-zoo demo``). Writes
``model.safetensors`` + ``config.json`` (with the measured metrics) to ``--out``,
by default the package's ``assets/demo`` directory.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from deeplab_zoo.data.synthetic import SYNTHETIC, SyntheticPanopticDataset  # noqa: E402
from deeplab_zoo.factory import create_model  # noqa: E402
from deeplab_zoo.metrics import PanopticQuality  # noqa: E402
from deeplab_zoo.train import Trainer, get_preset  # noqa: E402
from deeplab_zoo.weights.store import save_weights  # noqa: E402

EVAL_SEED = 20_240_601  # held-out scenes: the training scenes use seed 0
DEFAULT_OUT = REPO / "src" / "deeplab_zoo" / "assets" / "demo"


def evaluate(model: torch.nn.Module, num_images: int, size: tuple[int, int] = (257, 385),
             batch_size: int = 8) -> dict:
    """PQ (and SQ, RQ, things / stuff splits) on ``num_images`` held-out scenes."""
    dataset = SyntheticPanopticDataset(num_images, size, seed=EVAL_SEED)
    metric = PanopticQuality(SYNTHETIC.num_classes, SYNTHETIC.ignore_label,
                             SYNTHETIC.label_divisor, thing_classes=SYNTHETIC.thing_class_ids)
    model.eval()
    for start in range(0, num_images, batch_size):
        samples = [dataset[i] for i in range(start, min(start + batch_size, num_images))]
        predictions = model.predict([s["image"] for s in samples])
        for sample, prediction in zip(samples, predictions):
            metric.update(sample["panoptic"].numpy(), prediction.panoptic)
    result = metric.compute()
    keys = ("pq", "sq", "rq", "pq_things", "pq_stuff", "sq_things", "sq_stuff", "rq_things",
            "rq_stuff")
    out = {k: round(float(result[k]), 4) for k in keys}
    out["per_class_pq"] = dict(zip(SYNTHETIC.class_names,
                                   [round(v, 4) for v in result["per_class"]["pq"]]))
    out["eval_images"] = num_images
    out["eval_size"] = list(size)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the weights go")
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "demo",
                        help="training output (checkpoints, metrics.jsonl)")
    parser.add_argument("--steps", type=int, help="override the preset's step count")
    parser.add_argument("--batch-size", type=int, help="override the preset's batch size")
    parser.add_argument("--lr", type=float, help="override the preset's learning rate")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--eval-images", type=int, default=200)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--eval-only", action="store_true",
                        help="evaluate the weights in --out instead of training")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.eval_only:
        model = create_model("demo", pretrained=str(args.out))
        print(json.dumps(evaluate(model, args.eval_images), indent=2))
        return 0

    overrides = {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size),
                                   ("lr", args.lr)) if v is not None}
    config = get_preset("demo", num_workers=args.num_workers, **overrides)
    trainer = Trainer(config, args.work_dir, resume=args.resume, device="cpu")
    start = time.perf_counter()
    summary = trainer.run()
    train_seconds = time.perf_counter() - start
    model = trainer.model
    metrics = evaluate(model, args.eval_images)
    print(json.dumps(metrics, indent=2))
    config_json = {
        "name": "demo.synthetic", "architecture": "demo", "dataset": "synthetic",
        "output_stride": model.output_stride, "metrics": metrics,
        "training": {"preset": "demo", "steps": summary["step"],
                     "seconds_this_run": round(train_seconds, 1),
                     "torch_threads": torch.get_num_threads(), **config.to_dict()},
    }
    path = save_weights(model, args.out, config=config_json)
    size_mb = path.stat().st_size / 1e6
    print(f"wrote {path} ({size_mb:.2f} MB); PQ {metrics['pq']:.4f} on {args.eval_images} "
          f"held-out scenes; trained {summary['step']} steps in {train_seconds / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
