"""What every backbone offers: named endpoints, ``feature_info`` and ``features_only``."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class FeatureSpec:
    """One feature map a backbone can return.

    ``endpoint`` is DeepLab2's endpoint name (``res2``, ``res5``, ...) used by the
    decoders; ``module`` the attribute path of the module producing it.
    """

    endpoint: str
    num_chs: int
    reduction: int
    module: str


class FeatureInfo:
    """timm-style ``feature_info``: indexable list of dicts plus accessor helpers."""

    def __init__(self, specs: Sequence[FeatureSpec], out_indices: Sequence[int]):
        self.specs = list(specs)
        self.out_indices = tuple(out_indices)

    def _select(self, field: str) -> list:
        return [getattr(self.specs[i], field) for i in self.out_indices]

    def channels(self) -> list[int]:
        return self._select("num_chs")

    def reduction(self) -> list[int]:
        return self._select("reduction")

    def module_name(self) -> list[str]:
        return self._select("module")

    def endpoints(self) -> list[str]:
        return self._select("endpoint")

    def __getitem__(self, index: int) -> dict:
        spec = self.specs[self.out_indices[index]]
        return {"num_chs": spec.num_chs, "reduction": spec.reduction,
                "module": spec.module, "endpoint": spec.endpoint}

    def __len__(self) -> int:
        return len(self.out_indices)

    def __iter__(self):
        return (self[i] for i in range(len(self)))


class Backbone(nn.Module):
    """Base class: ``forward(x)`` returns a dict of DeepLab2 endpoints.

    Subclasses set ``self.feature_specs`` (list of :class:`FeatureSpec`, shallow to
    deep) in ``__init__``.
    """

    feature_specs: list[FeatureSpec]

    @property
    def feature_info(self) -> FeatureInfo:
        return FeatureInfo(self.feature_specs, range(len(self.feature_specs)))


class FeaturesOnly(nn.Module):
    """Wraps a :class:`Backbone`; ``forward`` returns a list of feature maps.

    This is what ``create_model(name, features_only=True, out_indices=...)`` gives,
    as timm's ``features_only`` does.
    """

    def __init__(self, backbone: Backbone, out_indices: Sequence[int] | None = None):
        super().__init__()
        specs = backbone.feature_specs
        if out_indices is None:
            out_indices = range(len(specs))
        out_indices = [i if i >= 0 else len(specs) + i for i in out_indices]
        bad = [i for i in out_indices if not 0 <= i < len(specs)]
        if bad:
            raise ValueError(f"out_indices {bad} out of range for a backbone with "
                             f"{len(specs)} feature levels")
        self.encoder = backbone
        self.feature_info = FeatureInfo(specs, out_indices)
        self._endpoints = self.feature_info.endpoints()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        endpoints = self.encoder(x)
        return [endpoints[name] for name in self._endpoints]
