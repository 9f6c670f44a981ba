"""Meta-architectures (backbone + heads + post-processing); importing registers them."""
from . import axial_deeplab as axial_deeplab
from . import classic_deeplab as classic_deeplab
from . import deeplab as deeplab
from . import demo as demo
from . import kmax_deeplab as kmax_deeplab
from . import max_deeplab as max_deeplab
from .deeplab import DeepLab
from .kmax_deeplab import KMaXDeepLab
from .max_deeplab import MaXDeepLab

__all__ = ["DeepLab", "KMaXDeepLab", "MaXDeepLab", "axial_deeplab", "deeplab", "kmax_deeplab",
           "max_deeplab"]
