"""Training: DeepLab2's recipes (losses, solver, targets) in a PyTorch loop with DDP."""
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .optim import build_optimizer, learning_rate
from .presets import PRESETS, get_preset, list_presets
from .trainer import Trainer, build_train_dataset, build_train_model

__all__ = [
    "PRESETS",
    "TrainConfig",
    "Trainer",
    "build_optimizer",
    "build_train_dataset",
    "build_train_model",
    "get_preset",
    "latest_checkpoint",
    "learning_rate",
    "list_presets",
    "load_checkpoint",
    "save_checkpoint",
]
