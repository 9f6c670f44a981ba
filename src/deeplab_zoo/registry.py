"""Model registry: architecture names -> builders, ``arch.tag`` -> pretrained configs.

As in timm, each variant is a small function decorated with :func:`register_model`
that only states its architecture arguments. Pretrained configurations are data
(:class:`PretrainedCfg`), added with :func:`register_pretrained`.
"""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_DEFAULT_TAG: dict[str, str] = {}
_PRETRAINED: dict[str, PretrainedCfg] = {}
_ALIASES: dict[str, str] = {}
_KIND: dict[str, str] = {}


@dataclass(frozen=True)
class PretrainedCfg:
    """Everything known about one ``arch.tag``: dataset settings and weights source.

    ``url``/``sha256``/``hf_hub_id`` are empty where no checkpoint was released for
    this combination (the tag then only fixes dataset settings).
    """

    architecture: str
    tag: str
    dataset: str
    url: str = ""
    sha256: str = ""
    hf_hub_id: str = ""
    checkpoint_prefix: str = ""
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    crop_size: tuple[int, int] | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    license: str = "Apache-2.0"

    @property
    def name(self) -> str:
        return f"{self.architecture}.{self.tag}"

    @property
    def has_weights(self) -> bool:
        return bool(self.url or self.hf_hub_id)

    def to_dict(self) -> dict[str, Any]:
        from .data.datasets import get_dataset_info

        out = dataclasses.asdict(self)
        out["name"] = self.name
        out.update(get_dataset_info(self.dataset).to_dict())
        return out


def register_model(fn: Callable[..., nn.Module] | None = None, *, default_tag: str = "",
                   name: str | None = None, kind: str = "backbone"):
    """Decorator adding a builder to the registry under its function name.

    ``kind`` is ``"backbone"`` (builder takes architecture arguments only) or
    ``"model"`` (a meta-architecture; builder also takes dataset settings).
    """

    def wrap(builder: Callable[..., nn.Module]):
        key = name or builder.__name__
        if key in _MODELS:
            raise ValueError(f"model {key!r} is registered twice")
        _MODELS[key] = builder
        _KIND[key] = kind
        if default_tag:
            _DEFAULT_TAG[key] = default_tag
        return builder

    return wrap(fn) if fn is not None else wrap


def register_alias(alias: str, target: str) -> None:
    """Makes ``alias`` resolve to the registered name ``target``."""
    _ALIASES[alias] = target


def register_pretrained(cfg: PretrainedCfg) -> None:
    _PRETRAINED[cfg.name] = cfg


def _close_matches(name: str, candidates) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=5, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def split_name(name: str) -> tuple[str, str]:
    """``"arch.tag"`` -> (arch, tag); resolves aliases; raises for unknown names."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"model name must be a non-empty string, got {name!r}")
    arch, _, tag = name.partition(".")
    arch = _ALIASES.get(arch, arch)
    if arch not in _MODELS:
        hint = _close_matches(arch, list(_MODELS) + list(_ALIASES))
        raise ValueError(f"unknown model {arch!r}.{hint}"
                         " Use deeplab_zoo.list_models() to see all names.")
    if tag:
        if f"{arch}.{tag}" not in _PRETRAINED:
            tags = [c.tag for c in _PRETRAINED.values() if c.architecture == arch]
            raise ValueError(f"model {arch!r} has no tag {tag!r}; known tags: {sorted(tags)}")
    else:
        tag = _DEFAULT_TAG.get(arch, "")
    return arch, tag


def model_builder(arch: str) -> Callable[..., nn.Module]:
    return _MODELS[arch]


def model_kind(arch: str) -> str:
    return _KIND[arch]


def list_models(pattern: str = "*") -> list[str]:
    """Registered architecture names matching a glob ``pattern``."""
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def list_pretrained(pattern: str = "*") -> list[str]:
    """``arch.tag`` names that have released weights, matching ``pattern``."""
    return sorted(n for n, c in _PRETRAINED.items()
                  if c.has_weights and fnmatch.fnmatch(n, pattern))


def list_tags(pattern: str = "*") -> list[str]:
    """All ``arch.tag`` names (with or without weights) matching ``pattern``."""
    return sorted(n for n in _PRETRAINED if fnmatch.fnmatch(n, pattern))


def get_pretrained_cfg(name: str) -> PretrainedCfg | None:
    arch, tag = split_name(name)
    return _PRETRAINED.get(f"{arch}.{tag}") if tag else None


def pretrained_cfg(name: str) -> dict[str, Any]:
    """The pretrained configuration of ``name`` (or of its default tag) as a dict."""
    cfg = get_pretrained_cfg(name)
    if cfg is None:
        arch, _ = split_name(name)
        return {"architecture": arch, "tag": "", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    return cfg.to_dict()
