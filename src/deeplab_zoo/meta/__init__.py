"""Meta-architectures (backbone + heads + post-processing); importing registers them."""
from . import axial_deeplab as axial_deeplab
from . import classic_deeplab as classic_deeplab
from . import deeplab as deeplab
from . import kmax_deeplab as kmax_deeplab
from .deeplab import DeepLab
from .kmax_deeplab import KMaXDeepLab

__all__ = ["DeepLab", "KMaXDeepLab", "axial_deeplab", "deeplab", "kmax_deeplab"]
