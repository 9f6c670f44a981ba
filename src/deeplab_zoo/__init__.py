"""deeplab-zoo: the DeepLab family in PyTorch, with DeepLab2's weights and numbers."""
from . import backbones as backbones
from . import meta as meta
from .factory import create_model
from .inference import Prediction
from .registry import list_models, list_pretrained, pretrained_cfg

__version__ = "0.1.0"

__all__ = ["Prediction", "backbones", "meta", "create_model", "list_models", "list_pretrained",
           "pretrained_cfg", "__version__"]
