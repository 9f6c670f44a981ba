"""The training loop: one process or ``torchrun`` DDP, AMP, checkpoints, exact resume.

Follows DeepLab2's ``trainer/trainer.py``: each step averages every per-sample loss over
the (per-process) batch, replaces a NaN average by 0, back-propagates the total, clips
gradients if asked, and applies the optimizer with the scheduled learning rate. With N
processes each one takes ``batch_size / N`` samples and DDP averages the gradients
(DeepLab2 divides the loss by the replica count and sums: the same).

Output directory::

    config.json                  the TrainConfig (resume re-reads it)
    metrics.jsonl                one JSON line per log interval (losses, lr, speed)
    metrics.png                  those curves, redrawn at every checkpoint
    checkpoints/ckpt-<step>/     atomic training checkpoints (see checkpoint.py)
    model.safetensors            final weights (+ config.json for create_model)
"""
from __future__ import annotations

import json
import math
import os
import random
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data.copy_paste import PanopticCopyPaste, copy_paste_padding_label
from ..data.datasets import DatasetInfo
from ..data.targets import PanopticTargetGenerator
from ..data.transforms import deeplab2_train_transform
from ..losses.max_deeplab import MaXDeepLabLoss
from ..losses.panoptic_deeplab import PanopticDeepLabLoss
from .checkpoint import (
    capture_rng_state,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from .config import TrainConfig
from .data import StepBatchSampler, TrainingSamples, collate
from .distributed import DistInfo, all_gather_objects, init_distributed, mean_across_ranks
from .model_utils import (
    enable_gradient_checkpointing,
    freeze_batch_norm,
    set_frozen_batch_norm_eval,
)
from .optim import build_optimizer, set_learning_rate

__all__ = ["Trainer", "build_eval_dataset", "build_train_dataset", "build_train_model"]

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "metrics.png"
CHECKPOINT_DIR = "checkpoints"


def build_train_model(config: TrainConfig) -> nn.Module:
    """The model of ``config`` (registry name, dataset, crop, architecture overrides)."""
    from ..factory import create_model

    args = dict(config.model_args)
    args.setdefault("dataset", config.dataset)
    pretrained = config.init_weights or False
    return create_model(config.model, pretrained=pretrained, crop_size=config.crop_size, **args)


def build_train_dataset(config: TrainConfig) -> Dataset:
    """The training split of ``config.dataset`` (samples as ``data/sample.py`` describes)."""
    from ..data import build_dataset

    if config.dataset == "synthetic":
        return build_dataset("synthetic", num_images=config.num_images,
                             size=config.image_size, seed=config.seed)
    if not config.data_dir:
        raise ValueError(f"dataset {config.dataset!r} needs a data directory (--data-dir)")
    return build_dataset(config.dataset, config.data_dir, split=config.split,
                         skip_bad=config.skip_bad_samples)


#: Scenes in the held-out synthetic evaluation set (another seed than training's).
SYNTHETIC_EVAL_IMAGES = 50
_EVAL_KEYS = ("pq", "sq", "rq", "pq_things", "pq_stuff", "miou")


def build_eval_dataset(config: TrainConfig) -> Dataset:
    """The evaluation split of ``config.dataset`` (synthetic: held-out scenes)."""
    from ..data import build_dataset

    if config.dataset == "synthetic":
        return build_dataset("synthetic", num_images=config.eval_images or SYNTHETIC_EVAL_IMAGES,
                             size=config.image_size, seed=config.seed + 7_919)
    if not config.data_dir:
        raise ValueError(f"dataset {config.dataset!r} needs a data directory (--data-dir)")
    return build_dataset(config.dataset, config.data_dir, split=config.eval_split,
                         skip_bad=config.skip_bad_samples)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Builds everything from a :class:`TrainConfig` and runs (or resumes) training.

    Args:
        config: the run's configuration (ignored on resume when ``out_dir`` has one,
            except ``num_workers`` and ``progress``).
        out_dir: output directory (created).
        resume: continue from the newest checkpoint in ``out_dir`` (a fresh start if none).
        device: ``"cpu"``, ``"cuda"``...; default CUDA when available.
        dataset: a training dataset to use instead of :func:`build_train_dataset`.
        model: a model to train instead of :func:`build_train_model`.
    """

    def __init__(self, config: TrainConfig, out_dir: str | os.PathLike, *, resume: bool = False,
                 device: str | None = None, dataset: Dataset | None = None,
                 model: nn.Module | None = None):
        self.out_dir = Path(out_dir)
        self.resume = resume
        saved = self.out_dir / CONFIG_FILE
        if resume and saved.is_file():
            stored = TrainConfig.from_dict(json.loads(saved.read_text()))
            config = stored.replace(num_workers=config.num_workers, progress=config.progress)
        self.config = config
        self.dist: DistInfo = init_distributed(device)
        self._dataset = dataset
        self._model = model
        self._eval_dataset: Dataset | None = None

    # ------------------------------------------------------------------------------ setup
    def _log(self, message: str) -> None:
        if self.dist.is_main:
            print(message, file=sys.stderr, flush=True)

    def _setup(self) -> None:
        cfg, info = self.config, self.dist
        if cfg.batch_size % info.world_size:
            raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the number "
                             f"of processes ({info.world_size})")
        _seed_everything(cfg.seed)
        model = self._model if self._model is not None else build_train_model(cfg)
        self.dataset_info: DatasetInfo = model.dataset
        model.to(info.device)
        if cfg.batch_norm == "frozen":
            freeze_batch_norm(model)
        elif cfg.batch_norm == "sync":
            if info.device.type == "cuda" and info.distributed:
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            else:
                warnings.warn("sync batch norm needs CUDA and several processes; using "
                              "per-process batch norm", stacklevel=2)
        if cfg.grad_checkpointing:
            enable_gradient_checkpointing(model)
        self.model = model
        self.optimizer = build_optimizer(model, cfg)
        self.amp_dtype = None
        if cfg.amp:
            if cfg.amp_dtype == "auto":
                self.amp_dtype = torch.float16 if info.device.type == "cuda" else torch.bfloat16
            else:
                self.amp_dtype = getattr(torch, cfg.amp_dtype)
        self.scaler = torch.amp.GradScaler(
            info.device.type, enabled=self.amp_dtype == torch.float16)
        num_classes = cfg.model_args.get("num_classes") or self.dataset_info.num_classes
        self.panoptic = bool(getattr(model, "is_panoptic", True))
        from ..meta.mask_transformer import MaskTransformerMixin

        self.mask_transformer = isinstance(model, MaskTransformerMixin)
        if self.mask_transformer:  # MaX-DeepLab / kMaX-DeepLab
            self.loss_fn = MaXDeepLabLoss(num_classes, self.dataset_info.ignore_label,
                                          self.dataset_info.thing_class_ids, cfg.mask_loss)
        else:
            self.loss_fn = PanopticDeepLabLoss(num_classes, self.dataset_info.ignore_label,
                                               cfg.loss, semantic_only=not self.panoptic)
        # Seeds differ per rank from here on (dropout, drop-path); weights are synced by DDP.
        torch.manual_seed(cfg.seed + 1_000_003 * (info.rank + 1))
        self.step = 0
        if self.resume:
            self._restore()
        elif info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2))
        if info.distributed:
            ids = [info.device.index] if info.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(
                model, device_ids=ids, find_unused_parameters=not self.panoptic)
        else:
            self.ddp = model

    def _restore(self) -> None:
        path = latest_checkpoint(self.out_dir / CHECKPOINT_DIR)
        if path is None:
            self._log(f"no checkpoint in {self.out_dir}; starting from step 0")
            if self.dist.is_main:
                self.out_dir.mkdir(parents=True, exist_ok=True)
                (self.out_dir / CONFIG_FILE).write_text(
                    json.dumps(self.config.to_dict(), indent=2))
            return
        state = load_checkpoint(path, self.model, self.optimizer, scaler=self.scaler)
        self.step = int(state["step"])
        states = state["rng"]
        if len(states) == self.dist.world_size:
            restore_rng_state(states[self.dist.rank])
        else:
            warnings.warn(f"checkpoint has RNG states of {len(states)} processes, this run has "
                          f"{self.dist.world_size}: the resume is not bit-exact", stacklevel=2)
        self._log(f"resumed from {path} at step {self.step}")

    def _loader(self) -> DataLoader:
        cfg, info = self.config, self.dist
        dataset = self._dataset if self._dataset is not None else build_train_dataset(cfg)
        augment = deeplab2_train_transform(cfg.crop_size, self.dataset_info,
                                           min_scale=cfg.min_scale, max_scale=cfg.max_scale,
                                           scale_step=cfg.scale_step,
                                           autoaugment_policy=cfg.autoaugment_policy,
                                           min_resize=cfg.min_resize, max_resize=cfg.max_resize)
        targets = PanopticTargetGenerator(
            self.dataset_info, sigma=cfg.sigma, small_instance_area=cfg.small_instance_threshold,
            small_instance_weight=cfg.small_instance_weight,
            max_thing_id=cfg.max_thing_id if self.mask_transformer else None)
        copy_paste = None
        if cfg.copy_paste_scale > 0:  # the source: the same preprocessing, scaled further
            source_augment = deeplab2_train_transform(
                cfg.crop_size, self.dataset_info, min_scale=cfg.min_scale * cfg.copy_paste_scale,
                max_scale=cfg.max_scale * cfg.copy_paste_scale, scale_step=cfg.scale_step,
                autoaugment_policy=cfg.autoaugment_policy, min_resize=cfg.min_resize,
                max_resize=cfg.max_resize, label_pad=copy_paste_padding_label(self.dataset_info))
            copy_paste = PanopticCopyPaste(
                self.dataset_info, source_augment, thing_option=cfg.copy_paste_thing_option,
                stuff_option=cfg.copy_paste_stuff_option, void_option=cfg.copy_paste_void_option)
        samples = TrainingSamples(dataset, cfg.seed, augment, targets, copy_paste)
        sampler = StepBatchSampler(cfg.steps, cfg.batch_size, start_step=self.step,
                                   rank=info.rank, world_size=info.world_size)
        return DataLoader(samples, batch_sampler=sampler, num_workers=cfg.num_workers,
                          collate_fn=collate, pin_memory=info.device.type == "cuda",
                          persistent_workers=False)

    # ------------------------------------------------------------------------------- loop
    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        model = self.model
        channels = images.shape[1]
        mean = torch.tensor(model.mean, device=images.device).repeat(channels // 3)
        std = torch.tensor(model.std, device=images.device).repeat(channels // 3)
        return (images.float() / 255.0 - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One optimisation step on a collated batch; returns the batch-mean losses."""
        device = self.dist.device
        lr = set_learning_rate(self.optimizer, self.step, self.config)
        images = self._normalise(batch["image"].to(device, non_blocking=True))
        targets = {k: v.to(device, non_blocking=True) for k, v in batch.items()
                   if isinstance(v, torch.Tensor) and k != "image"}
        self.ddp.train()
        set_frozen_batch_norm_eval(self.model)
        autocast = (torch.autocast(device.type, dtype=self.amp_dtype)
                    if self.amp_dtype is not None else nullcontext())
        with autocast:
            outputs = self.ddp(images)
        outputs = {k: v.float() if isinstance(v, torch.Tensor) else v
                   for k, v in outputs.items()}
        losses = self.loss_fn(outputs, targets)
        means = {}
        for name, value in losses.items():
            mean = value.mean()
            means[name] = torch.where(torch.isnan(mean), torch.zeros_like(mean), mean)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(means["total_loss"]).backward()
        if self.config.clip_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        logs = {name: float(value.detach()) for name, value in means.items()}
        logs["learning_rate"] = lr
        return logs

    def save(self) -> Path | None:
        """Writes a checkpoint of the current step (all processes must call it)."""
        rng = all_gather_objects(capture_rng_state(), self.dist)
        path = None
        if self.dist.is_main:
            path = save_checkpoint(self.out_dir / CHECKPOINT_DIR, self.step, self.model,
                                   self.optimizer, scaler=self.scaler, rng_states=rng,
                                   keep=self.config.keep_checkpoints,
                                   extra={"world_size": self.dist.world_size})
        if self.dist.distributed:
            torch.distributed.barrier()
        return path

    def evaluate(self) -> dict[str, float]:
        """PQ / mIoU of the current weights on the evaluation split (main process; the
        others wait); appends an ``eval_*`` record to metrics.jsonl. Returns the metrics
        (empty on the other processes)."""
        from ..eval import evaluate

        metrics: dict[str, float] = {}
        if self.dist.is_main:
            if self._eval_dataset is None:
                self._eval_dataset = build_eval_dataset(self.config)
            model = self.model
            model.eval()
            with torch.no_grad():
                result = evaluate(model, self._eval_dataset, info=self.dataset_info,
                                  limit=self.config.eval_images, progress=False)
            model.train()
            metrics = {f"eval_{k}": float(result[k]) for k in _EVAL_KEYS if k in result}
            self._write_metrics({"step": self.step, **metrics})
            summary = ", ".join(f"{k[5:]} {v:.4f}" for k, v in metrics.items())
            self._log(f"step {self.step}: {summary} on {result['num_images']} images")
        if self.dist.distributed:
            torch.distributed.barrier()
        return metrics

    def _plot_metrics(self) -> None:
        """Redraws ``metrics.png`` (the logged curves) from ``metrics.jsonl``."""
        from ..viz.training_curves import plot_training_curves

        source = self.out_dir / METRICS_FILE
        if self.dist.is_main and source.is_file():
            plot_training_curves(source, self.out_dir / PLOT_FILE)

    def _write_metrics(self, record: dict[str, Any]) -> None:
        with open(self.out_dir / METRICS_FILE, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def export(self) -> Path:
        """Writes the final ``model.safetensors`` + ``config.json`` into ``out_dir``."""
        from ..factory import model_config_dict
        from ..weights.store import save_weights

        model = self.model
        config = model_config_dict(model, getattr(model, "pretrained_name", self.config.model))
        config.update({"dataset": self.dataset_info.name, "step": self.step,
                       "model_args": self.config.model_args})
        return save_weights(model, self.out_dir, config=config)

    def run(self, stop_at: int | None = None) -> dict[str, Any]:
        """Trains up to ``config.steps`` (or ``stop_at``, checkpointing there).

        Returns ``{"step", "seconds", "last_logs"}``; exports the final weights once the
        last step is reached.
        """
        from tqdm.auto import tqdm

        self._setup()
        cfg = self.config
        end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step",
                   disable=not (self.dist.is_main and cfg.progress), dynamic_ncols=True)
        sums: dict[str, float] = {}
        count, interval_start, start = 0, time.perf_counter(), time.perf_counter()
        last: dict[str, float] = {}
        try:
            for batch in self._loader() if self.step < end else []:
                logs = self.train_step(batch)
                bar.update(1)
                for key, value in logs.items():
                    sums[key] = sums.get(key, 0.0) + value
                count += 1
                if self.step % cfg.log_every == 0 or self.step == end:
                    elapsed = time.perf_counter() - interval_start
                    last = mean_across_ranks({k: v / count for k, v in sums.items()}, self.dist)
                    if self.dist.is_main:
                        record = {"step": self.step, **last, "sec_per_step": elapsed / count,
                                  "images_per_sec": count * cfg.batch_size / max(elapsed, 1e-9)}
                        self._write_metrics(record)
                        bar.set_postfix(loss=f"{last['total_loss']:.4f}",
                                        lr=f"{last['learning_rate']:.2e}")
                        if not math.isfinite(last["total_loss"]):
                            warnings.warn(f"non-finite loss at step {self.step}", stacklevel=1)
                    sums, count, interval_start = {}, 0, time.perf_counter()
                evaluate_now = cfg.eval_every and (self.step % cfg.eval_every == 0
                                                   or self.step == cfg.steps)
                save_now = self.step % cfg.save_every == 0 or self.step == end
                if evaluate_now:
                    self.evaluate()
                if save_now:
                    self.save()
                if evaluate_now or save_now:
                    self._plot_metrics()
                if self.step >= end:
                    break
        except KeyboardInterrupt:
            # Ctrl-C in one process: keep the steps done since the last checkpoint (under
            # DDP the other ranks may be gone, so only the periodic checkpoints count).
            if not self.dist.distributed and self.step % cfg.save_every:
                self._log(f"interrupted: saved {self.save()}; continue with --resume")
            raise
        finally:
            bar.close()
        if self.step >= cfg.steps and self.dist.is_main:
            self.export()
        return {"step": self.step, "seconds": time.perf_counter() - start, "last_logs": last}

    def close(self) -> None:
        """Leaves the process group if this trainer created it."""
        if self.dist.initialized_here and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
