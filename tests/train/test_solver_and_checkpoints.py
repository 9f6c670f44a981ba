"""Learning-rate schedules, optimizers, presets, and the checkpoint files."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deeplab_zoo.registry import split_name
from deeplab_zoo.train import (
    PRESETS,
    TrainConfig,
    build_optimizer,
    get_preset,
    latest_checkpoint,
    learning_rate,
    load_checkpoint,
    save_checkpoint,
)
from deeplab_zoo.train.checkpoint import capture_rng_state, restore_rng_state
from deeplab_zoo.train.model_utils import enable_gradient_checkpointing


def test_poly_schedule_with_warmup() -> None:
    cfg = TrainConfig(lr=1e-3, steps=1000, warmup_steps=100, poly_power=0.9)
    assert learning_rate(0, cfg) == 0.0
    assert learning_rate(50, cfg) == pytest.approx(5e-4)
    # After warmup the poly decay is evaluated at the global step (not shifted).
    assert learning_rate(100, cfg) == pytest.approx(1e-3 * 0.9**0.9)
    assert learning_rate(500, cfg) == pytest.approx(1e-3 * 0.5**0.9)
    assert learning_rate(1000, cfg) == 0.0 and learning_rate(2000, cfg) == 0.0
    end = cfg.replace(poly_end_lr=1e-4, warmup_steps=0)
    assert learning_rate(0, end) == pytest.approx(1e-3)
    assert learning_rate(500, end) == pytest.approx(9e-4 * 0.5**0.9 + 1e-4)
    cosine = cfg.replace(lr_policy="cosine", warmup_steps=0)
    assert learning_rate(500, cosine) == pytest.approx(5e-4)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.head = nn.Linear(4, 2)
        self.embedding = nn.Embedding(5, 4)


def test_optimizers_as_deeplab2() -> None:
    net = _Net()
    adam = build_optimizer(net, TrainConfig(optimizer="adam"))
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["eps"] == 1e-7
    assert len(adam.param_groups) == 1

    cfg = TrainConfig(optimizer="adamw", adamw_weight_decay=0.05, backbone_lr_multiplier=0.1,
                      lr=1e-3)
    adamw = build_optimizer(net, cfg)
    decayed = {id(p) for g in adamw.param_groups if g["weight_decay"] for p in g["params"]}
    assert decayed == {id(net.encoder[0].weight), id(net.head.weight)}  # kernels only
    backbone = {id(p) for g in adamw.param_groups if g["lr_multiplier"] == 0.1
                for p in g["params"]}
    assert backbone == {id(p) for p in net.encoder.parameters()}
    from deeplab_zoo.train.optim import set_learning_rate

    set_learning_rate(adamw, 0, cfg)
    assert sorted({g["lr"] for g in adamw.param_groups}) == pytest.approx([1e-4, 1e-3])
    sgd = build_optimizer(net, TrainConfig(optimizer="sgd"))
    assert sgd.defaults["momentum"] == 0.9


def test_config_validation_and_roundtrip() -> None:
    cfg = TrainConfig(loss={"center_weight": 100.0})
    assert cfg.loss.center_weight == 100.0 and cfg.loss.semantic_top_k == 0.2
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for bad in ({"optimizer": "lamb"}, {"steps": 0}, {"min_scale": 2.0, "max_scale": 1.0},
                {"batch_norm": "group"}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="unknown training options"):
        TrainConfig.from_dict({"stepz": 3})


def test_presets_are_valid() -> None:
    assert "demo" in PRESETS
    for name in PRESETS:
        cfg = get_preset(name)
        split_name(cfg.model)  # registered
        assert cfg.loss.semantic_top_k == 0.2 and cfg.loss.center_weight == 200.0
    mnv3 = get_preset("panoptic_deeplab_mobilenet_v3_small_os32.cityscapes", steps=10)
    assert (mnv3.lr, mnv3.batch_size, mnv3.steps, mnv3.crop_size) == (4e-4, 64, 10, (1025, 2049))
    coco = get_preset("panoptic_deeplab_resnet50_os32.coco")
    assert (coco.warmup_steps, coco.max_scale, coco.small_instance_weight) == (2000, 1.5, 3.0)
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("nope")


def test_rng_state_roundtrip() -> None:
    state = json.loads(json.dumps(capture_rng_state()))
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.random(), np.random.rand(), torch.rand(3)
    restore_rng_state(state)
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def _step(net: nn.Module, opt: torch.optim.Optimizer) -> None:
    loss = net.encoder(torch.ones(2, 3, 5, 5)).square().mean() + net.head.weight.sum()
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_checkpoint_roundtrip_and_atomicity(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = _Net()
    opt = build_optimizer(net, TrainConfig(optimizer="adamw", adamw_weight_decay=0.01))
    _step(net, opt)
    for step in (1, 2, 3):
        path = save_checkpoint(tmp_path, step, net, opt, keep=2, extra={"note": step})
    assert path.name == "ckpt-00000003"
    assert sorted(p.name for p in tmp_path.glob("ckpt-*")) == ["ckpt-00000002", "ckpt-00000003"]
    assert (tmp_path / "latest").read_text().strip() == "ckpt-00000003"

    other = _Net()
    other_opt = build_optimizer(other, TrainConfig(optimizer="adamw", adamw_weight_decay=0.01))
    state = load_checkpoint(path, other, other_opt)
    assert state["step"] == 3 and state["extra"] == {"note": 3}
    for a, b in zip(net.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    _step(net, opt)
    _step(other, other_opt)  # identical continuation: optimizer moments were restored
    for a, b in zip(net.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)

    # A crash mid-write leaves a temporary directory and maybe a dangling pointer: ignored.
    (tmp_path / ".ckpt-00000004.tmpjunk").mkdir()
    (tmp_path / ".ckpt-00000004.tmpjunk" / "model.safetensors").write_bytes(b"partial")
    (tmp_path / "latest").write_text("ckpt-00000004\n")
    assert latest_checkpoint(tmp_path).name == "ckpt-00000003"
    (tmp_path / "ckpt-00000005").mkdir()  # incomplete directory
    assert latest_checkpoint(tmp_path).name == "ckpt-00000003"
    assert latest_checkpoint(tmp_path / "missing") is None


def test_gradient_checkpointing_wraps_blocks() -> None:
    from deeplab_zoo.factory import create_model

    model = create_model("demo")
    wrapped = enable_gradient_checkpointing(model)
    assert wrapped and all(name.startswith("blocks.") for name in wrapped)
    assert enable_gradient_checkpointing(model) == []  # idempotent
    model.train()
    x = torch.randn(2, 3, 33, 33, requires_grad=True)
    out = model(x)
    sum(v.sum() for v in out.values()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


class _AttentionNormBlock(torch.nn.Module):
    """The two multi-axis batch norms of the attention layers, in one block."""

    def __init__(self) -> None:
        super().__init__()
        from deeplab_zoo.layers.axial_attention import MultiAxisBatchNorm
        from deeplab_zoo.layers.keras_batch_norm import KerasAxesBatchNorm

        self.terms = MultiAxisBatchNorm((2, 1, 3, 1, 1), momentum=0.1)
        self.axes = KerasAxesBatchNorm((1, 3, 1, 1), momentum=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.axes(self.terms.fused_normalize_sum([x, 2 * x + 1]))


class _AttentionNormNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList([_AttentionNormBlock()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks[0](x)


def test_attention_batch_norms_are_frozen_and_recomputed_once() -> None:
    """Frozen BN and gradient checkpointing cover the attention layers' batch norms too:
    recomputation in the backward does not update their running statistics twice."""
    from deeplab_zoo.train.model_utils import freeze_batch_norm

    x = torch.randn(4, 3, 5, 1)
    plain, checkpointed = _AttentionNormNet(), _AttentionNormNet()
    assert enable_gradient_checkpointing(checkpointed) == ["blocks.0"]
    for model in (plain, checkpointed):
        model.train()
        model(x.clone().requires_grad_()).square().sum().backward()
    for (name, a), b in zip(plain.state_dict().items(), checkpointed.state_dict().values()):
        assert torch.equal(a, b), name
    assert not torch.equal(plain.state_dict()["blocks.0.terms.running_mean"],
                           torch.zeros(2, 1, 3, 1, 1))  # the statistics did move
    assert freeze_batch_norm(plain) == 2
    assert not any(p.requires_grad for p in plain.parameters())
    plain.train()
    from deeplab_zoo.train.model_utils import set_frozen_batch_norm_eval

    set_frozen_batch_norm_eval(plain)
    assert not plain.blocks[0].terms.training and not plain.blocks[0].axes.training
