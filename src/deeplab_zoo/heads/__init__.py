"""Decoder heads: ASPP, DeepLabv3, DeepLabv3+, Panoptic-DeepLab."""
