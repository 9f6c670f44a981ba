"""``deeplab-zoo`` command line: list, predict, convert, evaluate, train, demo."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _read_image(path: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))  # writable: torch warns on read-only arrays
    except FileNotFoundError:
        raise SystemExit(f"error: image not found: {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise SystemExit(f"error: cannot read image {path}: {exc}") from None


def _write_png(path: str, array: np.ndarray) -> None:
    from PIL import Image

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def cmd_list(args: argparse.Namespace) -> int:
    from . import registry

    if args.pretrained:
        names = registry.list_pretrained(args.pattern)
    else:
        names = registry.list_models(args.pattern)
    for name in names:
        print(name)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .factory import create_model

    image = _read_image(args.image)
    model = create_model(args.model, pretrained=args.weights or False)
    if not args.weights:
        print("warning: no --weights given; the model has random weights", file=sys.stderr)
    prediction = model.predict(image)
    _write_png(args.out, prediction.overlay(image, alpha=args.alpha))
    segments = np.unique(prediction.panoptic if prediction.panoptic is not None
                         else prediction.semantic)
    print(f"wrote {args.out} ({image.shape[1]}x{image.shape[0]}, {len(segments)} segments)")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .weights import convert

    path = convert(args.checkpoint, args.model, args.out)
    print(f"wrote {path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .data import build_dataset
    from .eval import evaluate, format_report
    from .factory import create_model

    model = create_model(args.model, pretrained=args.weights or False)
    if args.dataset == "synthetic":
        seeds = {"train": 0, "val": 1, "test": 2}
        if args.split not in seeds:
            raise ValueError(f"synthetic splits are {sorted(seeds)}, got {args.split!r}")
        dataset = build_dataset("synthetic", num_images=args.limit or 20,
                                seed=1000 + seeds[args.split])
    else:
        if not args.data_dir:
            raise ValueError(f"--data-dir is required for dataset {args.dataset!r}")
        dataset = build_dataset(args.dataset, args.data_dir, args.split)
    result = evaluate(model, dataset, scales=args.scales, flip=args.flip, limit=args.limit)
    info = getattr(dataset, "info", model.dataset)
    print(format_report(result, info.class_names))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2, default=float))
        print(f"wrote {args.json}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .registry import pretrained_cfg

    print(json.dumps(pretrained_cfg(args.model), indent=2, default=list))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .data.synthetic import make_scene
    from .factory import create_model

    image, _ = make_scene(seed=args.seed, num_things=6)
    # The demo model's weights ship inside the package: no network access.
    model = create_model("demo", pretrained=True)
    prediction = model.predict(image)
    _write_png(args.out, np.concatenate([image, prediction.overlay(image)], axis=1))
    things = int((np.unique(prediction.panoptic) % prediction.label_divisor > 0).sum())
    print(f"wrote {args.out}: input | overlay ({image.shape[1]}x{image.shape[0]}, "
          f"{things} thing instances)")
    return 0


def _train_config(args: argparse.Namespace):
    from .train import TrainConfig, get_preset

    overrides = {key: value for key, value in (
        ("model", args.model), ("dataset", args.dataset), ("data_dir", args.data_dir),
        ("split", args.split), ("copy_paste_scale", args.copy_paste_scale),
        ("eval_every", args.eval_every), ("eval_split", args.eval_split),
        ("eval_images", args.eval_images),
        ("steps", args.steps), ("batch_size", args.batch_size), ("lr", args.lr),
        ("warmup_steps", args.warmup_steps), ("optimizer", args.optimizer),
        ("batch_norm", args.batch_norm), ("save_every", args.save_every),
        ("log_every", args.log_every), ("seed", args.seed), ("init_weights", args.init_weights),
        ("crop_size", tuple(args.crop_size) if args.crop_size else None),
        ("image_size", tuple(args.image_size) if args.image_size else None),
        ("num_images", args.num_images)) if value is not None}
    overrides.update(num_workers=args.num_workers, progress=not args.no_progress)
    if args.skip_bad_samples:
        overrides["skip_bad_samples"] = True
    if args.amp:
        overrides["amp"] = True
    if args.grad_checkpointing:
        overrides["grad_checkpointing"] = True
    if args.preset:
        return get_preset(args.preset, **overrides)
    if "model" not in overrides and not args.resume:
        raise ValueError("train needs --model (or --preset)")
    return TrainConfig(**overrides)


def cmd_train(args: argparse.Namespace) -> int:
    if args.list_presets:
        from .train import list_presets

        print("\n".join(list_presets()))
        return 0
    if not args.out:
        raise ValueError("train needs --out DIR")
    from .train import Trainer

    trainer = Trainer(_train_config(args), args.out, resume=args.resume, device=args.device)
    try:
        summary = trainer.run()
    finally:
        trainer.close()
    if trainer.dist.is_main:
        print(f"trained to step {summary['step']} in {summary['seconds']:.1f} s; "
              f"output in {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deeplab-zoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered models (or those with weights)")
    p.add_argument("pattern", nargs="?", default="*", help="glob, e.g. 'panoptic_*'")
    p.add_argument("--pretrained", action="store_true", help="only arch.tag names with weights")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="print a model's pretrained configuration")
    p.add_argument("model")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("predict", help="predict one image and write a colourised overlay PNG")
    p.add_argument("image")
    p.add_argument("--model", required=True,
                   help="registry name, e.g. panoptic_deeplab_resnet50_os32.cityscapes")
    p.add_argument("--weights",
                   help="a tag, a .safetensors file/dir, a TF checkpoint, or hf-hub:org/repo")
    p.add_argument("--out", required=True, help="output PNG")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity in [0, 1]")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("demo", help="run the demo model on a synthetic scene (offline)")
    p.add_argument("--out", default="demo.png", help="output PNG (default demo.png)")
    p.add_argument("--seed", type=int, default=0, help="synthetic scene seed")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train a model (one process, or under torchrun: DDP)")
    p.add_argument("--preset", help="a named recipe (see --list-presets), e.g. "
                   "panoptic_deeplab_resnet50_os32.cityscapes or demo")
    p.add_argument("--model", help="registry name (+tag) to train")
    p.add_argument("--dataset", help="dataset name (default: synthetic)")
    p.add_argument("--data-dir", help="dataset root folder")
    p.add_argument("--split", help="training split (default: train)")
    p.add_argument("--skip-bad-samples", action="store_true",
                   help="skip missing / corrupt dataset files (logged) instead of stopping")
    p.add_argument("--out", help="output directory (checkpoints, logs, final weights)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint in --out (exactly)")
    p.add_argument("--steps", type=int, help="training steps")
    p.add_argument("--batch-size", type=int, help="global batch size")
    p.add_argument("--lr", type=float, help="base learning rate")
    p.add_argument("--warmup-steps", type=int, help="linear warmup steps")
    p.add_argument("--optimizer", choices=("adam", "adamw", "sgd"))
    p.add_argument("--crop-size", type=int, nargs=2, metavar=("H", "W"))
    p.add_argument("--batch-norm", choices=("default", "sync", "frozen"))
    p.add_argument("--copy-paste-scale", type=float,
                   help="panoptic copy-paste source scale (kMaX presets: 0.5; 0 = off)")
    p.add_argument("--amp", action="store_true", help="mixed precision (bf16 on CPU, fp16 GPU)")
    p.add_argument("--grad-checkpointing", action="store_true",
                   help="recompute encoder blocks in backward (less memory)")
    p.add_argument("--num-workers", type=int, default=2, help="data loader workers")
    p.add_argument("--save-every", type=int, help="checkpoint interval (steps)")
    p.add_argument("--eval-every", type=int,
                   help="evaluate PQ / mIoU every N steps and at the end (0: never)")
    p.add_argument("--eval-split", help="split to evaluate on (default: val)")
    p.add_argument("--eval-images", type=int, help="evaluate on at most this many images")
    p.add_argument("--log-every", type=int, help="scalar log interval (steps)")
    p.add_argument("--seed", type=int)
    p.add_argument("--init-weights", help="initial weights: a tag or a weights path")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"),
                   help="synthetic dataset: scene size")
    p.add_argument("--num-images", type=int, help="synthetic dataset: number of scenes")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--list-presets", action="store_true", help="print the preset names")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a model on a dataset (PQ, mIoU)")
    p.add_argument("--model", required=True, help="registry name (+tag)")
    p.add_argument("--weights", help="a tag, a .safetensors file/dir, a TF checkpoint, ...")
    p.add_argument("--dataset", required=True,
                   help="synthetic, cityscapes, coco, ade20k, kitti_step, ... ")
    p.add_argument("--data-dir", help="dataset root (not needed for synthetic)")
    p.add_argument("--split", default="val")
    p.add_argument("--limit", type=int, help="evaluate only the first N images")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0],
                   help="multi-scale evaluation, e.g. --scales 0.5 0.75 1 1.25")
    p.add_argument("--flip", action="store_true", help="also evaluate left-right flipped")
    p.add_argument("--json", help="write all metrics (per class too) to this JSON file")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("convert",
                       help="convert a DeepLab2 TF checkpoint to safetensors + config.json")
    p.add_argument("checkpoint", help="ckpt prefix, directory or .tar.gz")
    p.add_argument("--model", required=True, help="registry name (+tag) the checkpoint belongs to")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=cmd_convert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .errors import CheckpointError, DatasetError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CheckpointError, DatasetError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
