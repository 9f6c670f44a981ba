"""Training configuration: DeepLab2's solver, loss and train-dataset options in one dataclass."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..data.copy_paste import COPY_PASTE_OPTIONS
from ..losses.max_deeplab import MaXDeepLabLossConfig
from ..losses.panoptic_deeplab import PanopticDeepLabLossConfig

__all__ = ["TrainConfig"]

_CHOICES = {
    "lr_policy": ("poly", "cosine"),
    "optimizer": ("adam", "adamw", "sgd"),
    "batch_norm": ("default", "sync", "frozen"),
    "amp_dtype": ("auto", "bfloat16", "float16"),
    "copy_paste_thing_option": COPY_PASTE_OPTIONS,
    "copy_paste_stuff_option": COPY_PASTE_OPTIONS,
    "copy_paste_void_option": COPY_PASTE_OPTIONS,
}


@dataclass
class TrainConfig:
    """Everything a run needs; saved as ``config.json`` in the output directory.

    ``batch_size`` is the global batch (DeepLab2's ``train_dataset_options.batch_size``);
    with N processes each one gets ``batch_size / N`` samples. The learning-rate schedule is
    DeepLab2's: linear warmup from 0 over ``warmup_steps``, then ``poly`` decay
    ``(lr - end_lr) * (1 - step / steps) ** poly_power + end_lr`` (evaluated at the
    global step) or ``cosine`` decay.
    """

    model: str = "demo"
    dataset: str = "synthetic"
    data_dir: str | None = None
    split: str = "train"
    skip_bad_samples: bool = False  # on-disk datasets: skip missing / corrupt files (logged)
    model_args: dict[str, Any] = field(default_factory=dict)
    init_weights: str | None = None
    # Solver (DeepLab2 SolverOptions).
    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-3
    lr_policy: str = "poly"
    poly_power: float = 0.9
    poly_end_lr: float = 0.0
    warmup_steps: int = 0
    optimizer: str = "adam"
    adamw_weight_decay: float = 0.0
    backbone_lr_multiplier: float = 1.0
    clip_grad_norm: float = 0.0
    # Losses and targets (``loss``: Panoptic-DeepLab family; ``mask_loss``: MaX / kMaX).
    loss: PanopticDeepLabLossConfig = field(default_factory=PanopticDeepLabLossConfig)
    mask_loss: MaXDeepLabLossConfig = field(default_factory=MaXDeepLabLossConfig)
    max_thing_id: int = 128
    sigma: float = 8.0
    small_instance_threshold: int = 4096
    small_instance_weight: float = 1.0
    # Train data.
    crop_size: tuple[int, int] = (129, 129)
    min_scale: float = 1.0
    max_scale: float = 1.0
    scale_step: float = 0.0
    autoaugment_policy: str | None = None
    # Panoptic copy-paste (kMaX-DeepLab): off at scale 0; options "random" / "none" / "all".
    copy_paste_scale: float = 0.0
    copy_paste_thing_option: str = "random"
    copy_paste_stuff_option: str = "random"
    copy_paste_void_option: str = "none"
    min_resize: int | None = None
    max_resize: int | None = None
    num_images: int = 100_000  # synthetic dataset only: number of distinct scenes
    image_size: tuple[int, int] = (257, 385)  # synthetic dataset only
    # Hardware / numerics.
    batch_norm: str = "default"
    amp: bool = False
    amp_dtype: str = "auto"
    grad_checkpointing: bool = False
    num_workers: int = 0
    seed: int = 0
    # Evaluation during training (0: off): PQ / mIoU on ``eval_split`` (synthetic data:
    # ``eval_images`` scenes of another seed), logged to metrics.jsonl as ``eval_*``.
    eval_every: int = 0
    eval_split: str = "val"
    eval_images: int | None = None  # at most this many (None: the whole split; synthetic 50)
    # Bookkeeping.
    save_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.loss, dict):
            self.loss = PanopticDeepLabLossConfig(**self.loss)
        if isinstance(self.mask_loss, dict):
            self.mask_loss = MaXDeepLabLossConfig(**self.mask_loss)
        self.crop_size = (int(self.crop_size[0]), int(self.crop_size[1]))
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        self.validate()

    def validate(self) -> None:
        """Raises ValueError naming the first bad option."""
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        for name in ("steps", "batch_size", "save_every", "log_every", "keep_checkpoints"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.warmup_steps < 0 or self.num_workers < 0 or self.eval_every < 0:
            raise ValueError("warmup_steps, num_workers and eval_every must be >= 0")
        if self.eval_images is not None and self.eval_images < 1:
            raise ValueError(f"eval_images must be >= 1, got {self.eval_images}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 < self.min_scale <= self.max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {self.min_scale}, "
                             f"{self.max_scale}")
        if self.copy_paste_scale < 0:
            raise ValueError(f"copy_paste_scale must be >= 0, got {self.copy_paste_scale}")
        if min(self.crop_size) < 1:
            raise ValueError(f"crop_size must be positive, got {self.crop_size}")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["crop_size"] = list(self.crop_size)
        out["image_size"] = list(self.image_size)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training options: {unknown}")
        return cls(**data)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` (``loss`` / ``mask_loss`` may be partial dicts)."""
        data = self.to_dict()
        for key in ("loss", "mask_loss"):
            value = changes.pop(key, None)
            if isinstance(value, dict):
                data[key] = {**data[key], **value}
            elif value is not None:
                data[key] = dataclasses.asdict(value)
        data.update(changes)
        return TrainConfig.from_dict(data)
