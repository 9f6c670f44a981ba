"""Backbones (DeepLab2 encoders); importing this registers them."""
from . import mobilenet_v3 as mobilenet_v3
from . import resnet as resnet
from .base import Backbone, FeatureInfo, FeaturesOnly, FeatureSpec

__all__ = ["Backbone", "FeatureInfo", "FeatureSpec", "FeaturesOnly", "mobilenet_v3", "resnet"]
