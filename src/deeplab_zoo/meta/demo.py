"""The offline demo model: a small Panoptic-DeepLab trained on the synthetic scenes.

``create_model("demo", pretrained=True)`` builds Panoptic-DeepLab on MobileNetV3-small
(output stride 32) with slim decoders (1x1 ASPP, 64 / 32 channels) for the
``synthetic`` dataset, and loads the weights shipped inside the package
(``deeplab_zoo/assets/demo/model.safetensors``, written by
``scripts/train_demo_model.py``) without any network access.
"""
from __future__ import annotations

from typing import Any

from ..data import synthetic as _synthetic  # registers the "synthetic" dataset
from ..registry import PretrainedCfg, register_model, register_pretrained
from .deeplab import DeepLab, build_panoptic_deeplab

__all__ = ["DEMO_ARCHITECTURE", "DEMO_POSTPROCESS", "DEMO_WEIGHTS_URL", "demo"]

#: Where the shipped weights live (``package://<package>/<path>``, read via importlib.resources).
DEMO_WEIGHTS_URL = "package://deeplab_zoo/assets/demo/model.safetensors"

#: Architecture arguments of the demo model (builder defaults; overridable).
DEMO_ARCHITECTURE: dict[str, Any] = dict(
    backbone="mobilenet_v3_small", output_stride=32, aspp_use_only_1x1_proj_conv=True,
    aspp_channels=64, decoder_channels=64, low_level=(("res3", 32), ("res2", 16)),
    semantic_head_channels=64, instance_aspp_channels=64, instance_decoder_channels=32,
    instance_low_level=(("res3", 16), ("res2", 8)), center_head_channels=32,
    regression_head_channels=32)

#: Post-processing for its small scenes (things of ~200-2500 pixels, stuff patches).
DEMO_POSTPROCESS: dict[str, Any] = dict(center_threshold=0.1, nms_kernel=7,
                                        keep_k_centers=200, stuff_area_limit=64)


@register_model(kind="model", default_tag="synthetic")
def demo(**kwargs: Any) -> DeepLab:
    """Panoptic-DeepLab, MobileNetV3-small os32, slim decoders; the offline demo model."""
    args = {**DEMO_ARCHITECTURE, "dataset": _synthetic.SYNTHETIC.name,
            "postprocess": dict(DEMO_POSTPROCESS)}
    args.update(kwargs)
    return build_panoptic_deeplab("demo", **args)


register_pretrained(PretrainedCfg(
    architecture="demo", tag="synthetic", dataset="synthetic", url=DEMO_WEIGHTS_URL,
    source="scripts/train_demo_model.py (trained on deeplab_zoo.data.synthetic scenes)"))
