"""Colourised overlays of predictions; training curves."""
from .overlay import colorize_panoptic, colorize_semantic, overlay_prediction
from .training_curves import plot_training_curves, read_metrics

__all__ = ["colorize_panoptic", "colorize_semantic", "overlay_prediction",
           "plot_training_curves", "read_metrics"]
