"""Dataset descriptors (and, later, readers and transforms)."""
