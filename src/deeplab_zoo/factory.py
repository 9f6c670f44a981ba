"""``create_model``: registry name (+ tag) -> built model, optionally with weights."""
from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from .backbones.base import FeaturesOnly
from .registry import PretrainedCfg, get_pretrained_cfg, model_builder, model_kind, split_name

PretrainedArg = bool | str | os.PathLike | None


def _resolve(name: str, pretrained: PretrainedArg) -> tuple[str, str, PretrainedCfg | None]:
    arch, tag = split_name(name)
    # pretrained="coco" on "panoptic_deeplab_resnet50_os32" means that tag's weights.
    if isinstance(pretrained, str) and "." not in name and not _looks_like_path(pretrained) \
            and not pretrained.startswith("hf-hub:"):
        arch, tag = split_name(f"{arch}.{pretrained}")
    cfg = get_pretrained_cfg(f"{arch}.{tag}") if tag else None
    return arch, tag, cfg


def _looks_like_path(value: str) -> bool:
    return os.path.sep in value or value.endswith((".safetensors", ".tar.gz", ".tgz", ".index")) \
        or os.path.exists(value)


def create_model(name: str, pretrained: PretrainedArg = False, *, num_classes: int | None = None,
                 crop_size: Sequence[int] | None = None, features_only: bool = False,
                 out_indices: Sequence[int] | None = None, **overrides: Any) -> nn.Module:
    """Builds a registered model, e.g. ``create_model("panoptic_deeplab_resnet50_os32.coco")``.

    Args:
        name: registry name, optionally with a tag (``arch.tag``) fixing dataset settings.
        pretrained: False; True (the tag's released weights); a tag; a local path
            (``.safetensors``, a directory with ``model.safetensors``, or a DeepLab2 TF
            checkpoint prefix / directory / tar.gz); or ``"hf-hub:org/repo[@revision]"``.
        num_classes: override the dataset's class count (the last layer is then new).
        crop_size: ``(H, W)`` training crop; sets the ASPP pooling window as DeepLab2.
        features_only: return the backbone as a feature extractor (list of maps).
        out_indices: which feature levels ``features_only`` returns.
        **overrides: architecture arguments passed to the builder.
    """
    arch, tag, cfg = _resolve(name, pretrained)
    kind = model_kind(arch)
    builder = model_builder(arch)
    if kind == "model":
        kwargs: dict[str, Any] = {}
        if cfg is not None:
            kwargs.update(cfg.model_args)
            kwargs["dataset"] = cfg.dataset
            if crop_size is None:
                crop_size = cfg.crop_size
        kwargs.update(overrides)
        model = builder(num_classes=num_classes, crop_size=crop_size, **kwargs)
        model.pretrained_name = f"{arch}.{tag}" if tag else arch
        if cfg is not None:
            model._mean, model._std = cfg.mean, cfg.std
    else:
        if num_classes is not None:
            raise ValueError(f"{arch!r} is a backbone; num_classes does not apply")
        if crop_size is not None:
            if "crop_size" not in inspect.signature(builder).parameters:
                raise ValueError(f"{arch!r} does not depend on the crop size; "
                                 "drop the crop_size argument")
            overrides["crop_size"] = crop_size
        model = builder(**overrides)
    if pretrained is not False and pretrained is not None:
        _load(model, arch, tag, cfg, pretrained)
    if features_only:
        encoder = model.encoder if kind == "model" else model
        return FeaturesOnly(encoder, out_indices)
    if out_indices is not None:
        raise ValueError("out_indices only applies with features_only=True")
    return model


def _load(model: nn.Module, arch: str, tag: str, cfg: PretrainedCfg | None,
          pretrained: PretrainedArg) -> None:
    from .weights.hub import convert_tf_checkpoint, load_from_hf_hub, load_pretrained
    from .weights.store import WEIGHTS_NAME, load_weights

    if pretrained is True or (isinstance(pretrained, str) and pretrained == tag):
        if cfg is None:
            raise ValueError(f"{arch!r} has no pretrained tag; pass a weights path instead")
        load_pretrained(model, cfg)
        return
    if isinstance(pretrained, str) and pretrained.startswith("hf-hub:"):
        load_from_hf_hub(model, pretrained[len("hf-hub:"):])
        return
    if not isinstance(pretrained, (str, os.PathLike)):
        raise TypeError(f"pretrained must be bool, a tag, a path or 'hf-hub:org/repo', "
                        f"got {type(pretrained).__name__}")
    path = Path(pretrained)
    if path.suffix == ".safetensors" or (path.is_dir() and (path / WEIGHTS_NAME).is_file()):
        load_weights(model, path)
    else:
        convert_tf_checkpoint(model, path)


def model_config_dict(model: nn.Module, name: str) -> dict[str, Any]:
    """The ``config.json`` written beside converted weights."""
    config = getattr(model, "config", None)
    out: dict[str, Any] = {"name": name}
    if config is not None:
        out.update({"architecture": config.architecture, "dataset": config.dataset,
                    "output_stride": config.output_stride, "crop_size": config.crop_size})
    return out
