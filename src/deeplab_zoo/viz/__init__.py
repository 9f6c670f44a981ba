"""Colourised overlays of predictions."""
from .overlay import colorize_panoptic, colorize_semantic, overlay_prediction

__all__ = ["colorize_panoptic", "colorize_semantic", "overlay_prediction"]
