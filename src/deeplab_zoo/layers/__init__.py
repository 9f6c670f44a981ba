"""Shared building blocks (convolutions, activations, squeeze-excite, resizing, ...)."""
