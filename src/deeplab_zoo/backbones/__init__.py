"""Backbones (DeepLab2 encoders); importing this registers them."""
from . import auto_deeplab, mobilenet_v2, resnet_v1_beta, xception  # noqa: F401 research/deeplab
from . import axial_resnet as axial_resnet
from . import convnext as convnext
from . import max_deeplab as max_deeplab
from . import mobilenet_v3 as mobilenet_v3
from . import resnet as resnet
from .base import Backbone, FeatureInfo, FeaturesOnly, FeatureSpec

__all__ = ["Backbone", "FeatureInfo", "FeatureSpec", "FeaturesOnly", "axial_resnet", "convnext",
           "max_deeplab", "mobilenet_v3", "resnet"]
