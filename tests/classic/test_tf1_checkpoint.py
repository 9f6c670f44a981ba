"""research/deeplab TF1 checkpoints (TF-Slim names, ``model.ckpt.*`` in a zoo-style tar.gz).

``classic/tf1_checkpoint`` holds a real checkpoint written by ``tf.compat.v1.train.Saver``
with 22 of ``deeplabv3_mobilenet_v2_voc``'s variables (seeded values). It is read without
TensorFlow, through the same tar.gz path ``pretrained=True`` takes after a download
(``hub.load_pretrained``: download -> ``convert_tf_checkpoint`` -> ``read_tf_checkpoint``
-> ``load_tf_variables``). A complete TF1-named checkpoint written by the test-side
bundle writer then goes all the way through ``create_model(..., pretrained=True)``.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deeplab_zoo import create_model, registry
from deeplab_zoo.errors import CheckpointError
from deeplab_zoo.registry import get_pretrained_cfg, register_pretrained
from deeplab_zoo.weights import convert_tensor, hub, load_tf_variables, read_tf_checkpoint

NAME = "deeplabv3_mobilenet_v2"
TAG = "tf1_test_release"


@pytest.fixture(scope="module")
def tf1_dir(parity_dir: Path) -> Path:
    folder = parity_dir / "classic" / "tf1_checkpoint"
    if not (folder / "keys.json").is_file():
        pytest.skip(f"{folder} not found")
    return folder


@pytest.fixture(scope="module")
def tarball(tf1_dir: Path) -> Path:
    return tf1_dir / "deeplabv3_mnv2_pascal_train_aug_subset.tar.gz"


@pytest.fixture(scope="module")
def expected(parity_dir: Path, tf1_dir: Path) -> dict[str, np.ndarray]:
    """``seeded_value(name, shape, 0)`` of every variable in ``keys.json``."""
    spec = importlib.util.spec_from_file_location("_classic_seeded", parity_dir /
                                                  "seeded_weights.py")
    seeded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seeded)
    listing = json.loads((tf1_dir / "keys.json").read_text())
    return {v["name"]: seeded.seeded_value(v["name"], v["shape"], listing["salt"])
            for v in listing["variables"]}


@pytest.fixture()
def release(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Registers ``NAME.TAG`` with a ``file://`` release URL; removed afterwards."""
    monkeypatch.setenv("DEEPLAB_ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    added = []

    def register(archive: Path) -> registry.PretrainedCfg:
        cfg = dataclasses.replace(get_pretrained_cfg(f"{NAME}.voc"), tag=TAG,
                                  url=archive.as_uri(), sha256="")
        register_pretrained(cfg)
        added.append(cfg.name)
        return cfg

    yield register
    for name in added:
        registry._PRETRAINED.pop(name, None)


def test_real_tarball_reads_back_seeded_values(tarball: Path, expected):
    variables = read_tf_checkpoint(tarball)
    assert set(variables) == set(expected)
    for name, value in expected.items():
        assert variables[name].dtype == np.float32
        assert np.array_equal(variables[name], value), name


def test_real_tarball_through_the_pretrained_path(tarball: Path, expected, release,
                                                  monkeypatch: pytest.MonkeyPatch):
    """``pretrained=True``: download (file://), tar.gz, TF-Slim names -> our tensors.

    The tarball holds a subset, so the strict load is relaxed here to look at what
    arrived; everything present must map (nothing unused or mismatched).
    """
    reports = []

    def partial_load(model, variables, *, strict=True):
        reports.append(load_tf_variables(model, variables, strict=False))
        return reports[-1]

    monkeypatch.setattr(hub, "load_tf_variables", partial_load)
    release(tarball)
    model = create_model(f"{NAME}.{TAG}", pretrained=True)
    (report,) = reports
    assert report["unused"] == [] and report["mismatched"] == []
    state = model.state_dict()
    loaded = {name: model.tf_name_map(name) for name in expected}
    assert len(report["missing"]) == len(
        [k for k in state if not k.endswith("num_batches_tracked")]) - len(expected)
    for key, name in loaded.items():
        assert torch.equal(state[name], convert_tensor(key, expected[key])), key
    conv = expected["MobilenetV2/Conv/weights"]  # HWIO -> OIHW
    assert torch.equal(state["encoder.conv.conv.weight"],
                       torch.from_numpy(conv.transpose(3, 2, 0, 1).copy()))
    depthwise = expected["MobilenetV2/expanded_conv/depthwise/depthwise_weights"]  # HWC1->C1HW
    assert torch.equal(state["encoder.expanded_conv.depthwise.depthwise_conv.weight"],
                       torch.from_numpy(depthwise.transpose(2, 3, 0, 1).copy()))
    assert torch.equal(state["decoder.logits.conv.bias"],
                       torch.from_numpy(expected["logits/semantic/biases"]))


def test_real_tarball_strict_load_names_what_is_missing(tarball: Path):
    with pytest.raises(CheckpointError) as info:
        create_model(f"{NAME}.voc", pretrained=tarball)
    message = str(info.value)
    assert "no checkpoint variable for" in message
    assert "not used by the model" not in message and "shape mismatch" not in message


@pytest.fixture(scope="module")
def full_checkpoint(parity_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """All 272 seeded variables of the MobileNetV2 case as a zoo-style TF1 tarball."""
    path = Path(__file__).parents[1] / "weights" / "tf_bundle_writer.py"
    spec = importlib.util.spec_from_file_location("_classic_tf_bundle_writer", path)
    writer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(writer)
    seeded = writer.load_seeded_module(parity_dir)
    keys = parity_dir / "classic" / "cases" / "deeplabv3_mobilenet_v2_voc.keys.json.gz"
    arrays = {v["name"]: seeded.seeded_value(v["name"], v["shape"], 0)
              for v in writer.read_manifest(keys)}
    arrays["global_step"] = np.array(30000, dtype=np.int64)  # as in the zoo's checkpoints
    root = tmp_path_factory.mktemp("tf1")
    prefix = writer.write_checkpoint(root / "train_aug" / "model.ckpt", arrays)
    archive = writer.tar_checkpoint(prefix, root / "deeplabv3_mnv2_test.tar.gz",
                                    folder="deeplabv3_mnv2_pascal_train_aug")
    return arrays, archive


def test_full_tf1_checkpoint_pretrained_true(full_checkpoint, release, tmp_path: Path):
    arrays, archive = full_checkpoint
    cfg = release(archive)
    model = create_model(f"{NAME}.{TAG}", pretrained=True)
    reference = create_model(f"{NAME}.voc")
    load_tf_variables(reference, {k: v for k, v in arrays.items() if k != "global_step"})
    ours, ref = model.state_dict(), reference.state_dict()
    assert all(torch.equal(ours[k], ref[k]) for k in ref)
    assert hub.cached_weights_path(cfg).is_file()  # converted once, cached as safetensors
    x = torch.rand(1, 3, 33, 41, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model.eval()(x)["semantic_logits"],
                           reference.eval()(x)["semantic_logits"])
