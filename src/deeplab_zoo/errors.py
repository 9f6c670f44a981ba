"""Exceptions raised for problems with files the user hands us."""


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, or does not fit the model."""


class DatasetError(RuntimeError):
    """A dataset file is missing, corrupt, or malformed."""
