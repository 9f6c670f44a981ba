"""Checkpoint reading, DeepLab2 -> PyTorch conversion, safetensors storage, hub loading."""
import os

from .convert import convert_tensor, load_tf_variables, plan_tf_mapping, torch_name
from .hub import cache_dir, convert_tf_checkpoint, load_pretrained
from .store import load_weights, read_config, save_weights
from .tf_checkpoint import list_tf_variables, open_tf_checkpoint_archive, read_tf_checkpoint


def convert(checkpoint: str | os.PathLike, model_name: str, out: str | os.PathLike, *,
            crop_size: tuple[int, int] | None = None) -> str:
    """Converts a DeepLab2 checkpoint for ``model_name`` into ``out`` (safetensors + config.json).

    ``checkpoint``: prefix, directory or tar.gz. Returns the written weights path.
    """
    from ..factory import create_model, model_config_dict

    model = create_model(model_name, crop_size=crop_size)
    convert_tf_checkpoint(model, checkpoint)
    return str(save_weights(model, out, config=model_config_dict(model, model_name)))


__all__ = [
    "cache_dir", "convert", "convert_tensor", "convert_tf_checkpoint", "list_tf_variables",
    "load_pretrained", "load_tf_variables", "load_weights", "open_tf_checkpoint_archive",
    "plan_tf_mapping", "read_config", "read_tf_checkpoint", "save_weights", "torch_name",
]
