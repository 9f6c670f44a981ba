"""Meta-architectures (backbone + heads + post-processing); importing registers them."""
from . import deeplab as deeplab
from .deeplab import DeepLab

__all__ = ["DeepLab", "deeplab"]
