"""The training input pipeline: an index stream that is a pure function of the step.

Sample ``p`` of the run (``p = step * batch_size + rank * per_rank + j``) is image
``perm_e[p mod N]`` of epoch ``e = p div N``, where ``perm_e`` is a permutation seeded
by ``(seed, e)``; its augmentation and target noise draw from a generator seeded by
``(seed, p)``. Which samples a step sees therefore depends only on the step, not on
the number of workers, on restarts, or (for the union over ranks) on the number of
processes: resuming at step ``s`` replays exactly what an uninterrupted run would do.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from ..data.sample import Sample

__all__ = ["StepBatchSampler", "TrainingSamples", "collate"]

_MIX = 0x9E3779B97F4A7C15


def _seed(*values: int) -> int:
    state = 0x243F6A8885A308D3
    for value in values:
        state = ((state ^ (value & 0xFFFFFFFFFFFFFFFF)) * _MIX) & 0xFFFFFFFFFFFFFFFF
        state ^= state >> 29
    return state & 0x7FFFFFFFFFFFFFFF


class TrainingSamples(Dataset):
    """Maps a run position ``p`` to an augmented sample with its training targets.

    ``augment(sample, generator)``, ``copy_paste(sample, source, generator)`` (if given:
    ``source`` is the image at the same position of a second, independent permutation, as
    DeepLab2 zips the dataset with a reshuffled copy of itself) and
    ``targets(sample, generator)`` are applied in that order; the result holds ``image``
    plus the target tensors.
    """

    def __init__(self, dataset: Dataset, seed: int,
                 augment: Callable[[Sample, torch.Generator], Sample] | None,
                 targets: Callable[[Sample, torch.Generator], dict[str, torch.Tensor]],
                 copy_paste: Callable[[Sample, Sample, torch.Generator], Sample] | None = None):
        if len(dataset) == 0:
            raise ValueError("the training dataset is empty")
        self.dataset = dataset
        self.seed = seed
        self.augment = augment
        self.targets = targets
        self.copy_paste = copy_paste

    def __len__(self) -> int:  # positions are unbounded; len is the epoch size
        return len(self.dataset)

    @functools.lru_cache(maxsize=8)  # noqa: B019 - a handful of epochs, per worker
    def _permutation(self, epoch: int, stream: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(_seed(self.seed, epoch, stream))
        return torch.randperm(len(self.dataset), generator=generator)

    def index_of(self, position: int, stream: int = 1) -> int:
        """Dataset index of run position ``position`` (stream 1: the sample; stream 3: its
        copy-paste source)."""
        epoch, offset = divmod(position, len(self.dataset))
        return int(self._permutation(epoch, stream)[offset])

    def __getitem__(self, position: int) -> dict[str, Any]:
        sample = self.dataset[self.index_of(position)]
        generator = torch.Generator().manual_seed(_seed(self.seed, position, 2))
        if self.augment is not None:
            sample = self.augment(sample, generator)
        if self.copy_paste is not None:
            source = self.dataset[self.index_of(position, stream=3)]
            sample = self.copy_paste(sample, source, generator)
        out: dict[str, Any] = {"image": sample["image"], "position": position}
        out.update(self.targets(sample, generator))
        return out


class StepBatchSampler(Sampler[list[int]]):
    """Yields this rank's positions for steps ``start_step .. total_steps - 1``."""

    def __init__(self, total_steps: int, batch_size: int, *, start_step: int = 0,
                 rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by the number of "
                             f"processes {world_size}")
        self.total_steps = total_steps
        self.batch_size = batch_size
        self.per_rank = batch_size // world_size
        self.start_step = start_step
        self.rank = rank

    def __len__(self) -> int:
        return max(self.total_steps - self.start_step, 0)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.total_steps):
            first = step * self.batch_size + self.rank * self.per_rank
            yield list(range(first, first + self.per_rank))


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stacks tensors; other values become lists."""
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        out[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return out
