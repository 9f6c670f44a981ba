"""Evaluating a model on a dataset with DeepLab2's metrics (``deeplab-zoo evaluate``)."""
from .evaluate import evaluate, format_report

__all__ = ["evaluate", "format_report"]
