"""Post-processing of raw model outputs into semantic / instance / panoptic maps."""
