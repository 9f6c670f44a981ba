"""Every way ``create_model(..., pretrained=...)`` finds weights, without network access.

A DeepLab2-shaped checkpoint is written by the test-side bundle writer from the
parity manifest of ``panoptic_deeplab_mobilenet_v3_small_os32`` with the fixtures'
seeded values; it is then loaded as a TF prefix / directory / tar.gz, converted to
safetensors, served from a ``file://`` "release" URL through the tag path, and from
a Hugging Face cache built here (``HF_HUB_OFFLINE=1``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from tf_bundle_writer import seeded_arrays, tar_checkpoint, write_checkpoint

from deeplab_zoo import create_model, registry
from deeplab_zoo.errors import CheckpointError
from deeplab_zoo.registry import get_pretrained_cfg, register_pretrained
from deeplab_zoo.weights import (
    convert,
    hub,
    load_tf_variables,
    load_weights,
    read_config,
    save_weights,
)

NAME = "panoptic_deeplab_mobilenet_v3_small_os32"
TAG = "zoo_test_release"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
V = "/.ATTRIBUTES/VARIABLE_VALUE"


@dataclass(frozen=True)
class Checkpoint:
    arrays: dict[str, np.ndarray]
    prefix: Path  # <dir>/ckpt-1
    tarball: Path
    sha256: str


@pytest.fixture(scope="module")
def ckpt(parity_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Checkpoint:
    arrays = seeded_arrays(parity_dir, NAME)
    root = tmp_path_factory.mktemp("deeplab2")
    prefix = write_checkpoint(root / "ckpt" / "ckpt-1", arrays)
    (prefix.parent / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    tarball = tar_checkpoint(prefix, root / "mobilenet_v3_small_os32.tar.gz", folder="release")
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    return Checkpoint(arrays, prefix, tarball, digest)


@pytest.fixture(scope="module")
def reference(ckpt: Checkpoint) -> torch.nn.Module:
    """The model loaded straight from the arrays with ``load_tf_variables``."""
    model = create_model(NAME)
    load_tf_variables(model, ckpt.arrays, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.rand(1, 3, 65, 65, generator=torch.Generator().manual_seed(0)) * 2 - 1


@pytest.fixture(scope="module")
def reference_outputs(reference: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return reference(x)


@pytest.fixture(scope="module")
def converted(ckpt: Checkpoint, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``deeplab_zoo.weights.convert`` output directory (one conversion per module)."""
    out = tmp_path_factory.mktemp("converted")
    assert Path(convert(ckpt.tarball, NAME, out)) == out / "model.safetensors"
    return out


def assert_same_weights(model: torch.nn.Module, reference: torch.nn.Module) -> None:
    ours, ref = model.state_dict(), reference.state_dict()
    assert ours.keys() == ref.keys()
    different = [k for k in ref if not torch.equal(ours[k], ref[k])]
    assert not different, different[:5]


def assert_same_outputs(model: torch.nn.Module, x: torch.Tensor,
                        expected: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        outputs = model.eval()(x)
    assert outputs.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(outputs[key], value), key


# --------------------------------------------------------------------------- TF checkpoints


@pytest.mark.parametrize("form", ["prefix", "directory", "tarball"])
def test_tf_checkpoint_forms(form: str, ckpt: Checkpoint, reference: torch.nn.Module) -> None:
    source = {"prefix": str(ckpt.prefix), "directory": ckpt.prefix.parent,
              "tarball": str(ckpt.tarball)}[form]
    model = create_model(NAME, pretrained=source)
    state = model.state_dict()
    a = ckpt.arrays
    # Seeded values arrive in PyTorch layout: conv HWIO -> OIHW, depthwise HWC1 -> C1HW.
    conv = a[f"encoder/_blocks/0/_conv/kernel{V}"]
    assert conv.shape == (3, 3, 3, 16)
    assert torch.equal(state["encoder.blocks.0.conv.weight"],
                       torch.from_numpy(conv.transpose(3, 2, 0, 1).copy()))
    depthwise = a[f"encoder/_blocks/1/_conv2_bn_act/_depthwise_conv/depthwise_kernel{V}"]
    assert torch.equal(state["encoder.blocks.1.conv2_bn_act.depthwise_conv.weight"],
                       torch.from_numpy(depthwise.transpose(2, 3, 0, 1).copy()))
    assert torch.equal(state["encoder.blocks.0.batch_norm.running_var"],
                       torch.from_numpy(a[f"encoder/_blocks/0/_batch_norm/moving_variance{V}"]))
    last = a[f"semantic_last_layer/kernel{V}"]
    assert torch.equal(state["decoder.semantic_head.final_conv.weight"],
                       torch.from_numpy(last.transpose(3, 2, 0, 1).copy()))
    assert_same_weights(model, reference)


def test_tf_checkpoint_outputs_match_load_tf_variables(
        ckpt: Checkpoint, x: torch.Tensor, reference_outputs: dict[str, torch.Tensor]) -> None:
    model = create_model(NAME, pretrained=ckpt.tarball)  # a Path, not a str
    assert_same_outputs(model, x, reference_outputs)


def test_backbone_from_tf_encoder_checkpoint(parity_dir: Path,
                                             reference: torch.nn.Module) -> None:
    """A real TF-written encoder-only checkpoint loads into the bare backbone."""
    prefix = parity_dir / "tf_checkpoint" / "panoptic_deeplab_mobilenet_v3_small_os32_encoder"
    if not prefix.with_suffix(".index").is_file():
        pytest.skip(f"{prefix}.index not found")
    backbone = create_model("mobilenet_v3_small", pretrained=str(prefix))
    assert_same_weights(backbone, reference.encoder)


# --------------------------------------------------------------------------- safetensors


def test_convert_writes_safetensors_and_config(converted: Path) -> None:
    assert sorted(p.name for p in converted.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((converted / "config.json").read_text())
    assert read_config(converted) == read_config(converted / "model.safetensors") == config
    assert config["name"] == config["architecture"] == NAME
    assert config["dataset"] == "cityscapes"
    assert config["output_stride"] == 32
    assert config["crop_size"] == [1025, 2049]


@pytest.mark.parametrize("form", ["directory", "file"])
def test_converted_weights_reproduce_outputs(
        form: str, converted: Path, reference: torch.nn.Module, x: torch.Tensor,
        reference_outputs: dict[str, torch.Tensor]) -> None:
    source = converted if form == "directory" else str(converted / "model.safetensors")
    model = create_model(NAME, pretrained=source)
    assert_same_weights(model, reference)
    if form == "file":
        assert_same_outputs(model, x, reference_outputs)


def test_converted_weights_with_features_only(converted: Path,
                                              reference: torch.nn.Module) -> None:
    features = create_model(NAME, pretrained=converted, features_only=True)
    assert_same_weights(features.encoder, reference.encoder)


def test_save_load_roundtrip(tmp_path: Path, reference: torch.nn.Module) -> None:
    file = save_weights(reference, tmp_path / "w.safetensors", config={"name": NAME, "k": (1, 2)})
    assert file == tmp_path / "w.safetensors"
    assert read_config(file) == {"name": NAME, "k": [1, 2]}
    folder = save_weights(reference, tmp_path / "folder")
    assert folder == tmp_path / "folder" / "model.safetensors"
    assert read_config(tmp_path / "folder") is None
    # Atomic writes leave no temporary files behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "folder",
                                                          "w.safetensors"]
    for source in (file, tmp_path / "folder"):
        model = create_model(NAME)
        load_weights(model, source)
        assert_same_weights(model, reference)


# --------------------------------------------------------------------------- pretrained=True


@pytest.fixture()
def release(ckpt: Checkpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Registers ``NAME.TAG`` whose release URL is the test tarball (``file://``).

    Yields a function ``register(**changes) -> PretrainedCfg``; the registry entry is
    removed again afterwards. The converted-weights cache lives in ``tmp_path``.
    """
    monkeypatch.setenv("DEEPLAB_ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    base = get_pretrained_cfg(NAME)
    added: list[str] = []

    def register(**changes) -> registry.PretrainedCfg:
        fields = {"tag": TAG, "url": ckpt.tarball.as_uri(), "sha256": ckpt.sha256, **changes}
        cfg = dataclasses.replace(base, **fields)
        register_pretrained(cfg)
        added.append(cfg.name)
        return cfg

    yield register
    for name in added:
        registry._PRETRAINED.pop(name, None)


def _no_download(*args, **kwargs):
    raise AssertionError("a download was attempted")


def test_pretrained_true_downloads_converts_and_caches(
        release, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        reference: torch.nn.Module) -> None:
    cfg = release()
    assert f"{NAME}.{TAG}" in registry.list_pretrained(f"*.{TAG}")
    model = create_model(f"{NAME}.{TAG}", pretrained=True)
    assert_same_weights(model, reference)
    cached = tmp_path / "cache" / cfg.name / "model.safetensors"
    assert cached.is_file()
    assert hub.cached_weights_path(cfg) == cached
    assert read_config(cached) == {"name": cfg.name, "source": cfg.url}

    # Second time: offline, from the cache, no download; the tag may be given as a string.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "_download", _no_download)
    model = create_model(NAME, pretrained=TAG)
    assert_same_weights(model, reference)

    hub.clear_cache(cfg.name)
    assert not cached.exists()


def test_pretrained_offline_without_cache(release, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = release()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "_download", _no_download)
    with pytest.raises(CheckpointError) as info:
        create_model(f"{NAME}.{TAG}", pretrained=True)
    message = str(info.value)
    assert "deeplab-zoo convert" in message and cfg.name in message and "offline" in message


def test_pretrained_wrong_sha256(release, tmp_path: Path) -> None:
    cfg = release(sha256="0" * 64)
    with pytest.raises(CheckpointError, match="sha256"):
        create_model(f"{NAME}.{TAG}", pretrained=True)
    assert not hub.cached_weights_path(cfg).exists()


def test_pretrained_download_failure(release, tmp_path: Path) -> None:
    release(url=(tmp_path / "gone.tar.gz").as_uri())
    with pytest.raises(CheckpointError, match="download failed.*deeplab-zoo convert"):
        create_model(f"{NAME}.{TAG}", pretrained=True)


def test_pretrained_true_without_released_weights() -> None:
    with torch.device("meta"), pytest.raises(CheckpointError, match="no released weights"):
        create_model("deeplabv3_resnet50.cityscapes", pretrained=True)
    with torch.device("meta"), pytest.raises(ValueError, match="no pretrained tag"):
        create_model("resnet50", pretrained=True)


# --------------------------------------------------------------------------- hf-hub:


@pytest.fixture()
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             reference: torch.nn.Module) -> Path:
    """A local Hugging Face cache holding ``org/repo`` at ``COMMIT`` (refs/main -> COMMIT).

    huggingface_hub reads ``HF_HUB_CACHE`` when imported, so its constant is patched
    too. ``HF_HUB_OFFLINE`` is only set in the environment, at call time, as a user
    would; any metadata request to the hub fails the test.
    """
    import huggingface_hub.constants
    import huggingface_hub.file_download

    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.file_download, "get_hf_file_metadata", _no_download)
    repo = cache / "models--org--repo"
    save_weights(reference, repo / "snapshots" / COMMIT, config={"name": NAME})
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return cache


@pytest.mark.parametrize("spec", ["org/repo", f"org/repo@{COMMIT}", "org/repo@main"])
def test_hf_hub_from_local_cache(spec: str, hf_cache: Path,
                                 reference: torch.nn.Module) -> None:
    assert_same_weights(create_model(NAME, pretrained=f"hf-hub:{spec}"), reference)


def test_hf_hub_id_of_a_tag(release, hf_cache: Path, reference: torch.nn.Module) -> None:
    release(url="", sha256="", hf_hub_id="org/repo")
    assert_same_weights(create_model(f"{NAME}.{TAG}", pretrained=True), reference)


@pytest.mark.parametrize("spec", ["org/missing", f"org/repo@{'f' * 40}", "org/repo@v9"])
def test_hf_hub_missing(spec: str, hf_cache: Path) -> None:
    with torch.device("meta"), pytest.raises(CheckpointError, match=f"hf-hub:{spec}"):
        create_model(NAME, pretrained=f"hf-hub:{spec}")


# --------------------------------------------------------------------------- errors


def test_checkpoint_of_another_architecture(parity_dir: Path, tmp_path: Path) -> None:
    # A ResNet-50 Panoptic-DeepLab checkpoint (its small variables only, to stay fast).
    arrays = seeded_arrays(parity_dir, "panoptic_deeplab_resnet50_os32", max_size=300_000)
    assert any(k.startswith("encoder/_stage2/_block1/") for k in arrays)
    prefix = write_checkpoint(tmp_path / "resnet" / "ckpt-1", arrays)
    with pytest.raises(CheckpointError) as info:
        create_model(NAME, pretrained=prefix.parent)
    message = str(info.value)
    assert "no checkpoint variable for" in message
    assert "checkpoint variable not used by the model" in message
    assert "decoder.semantic_decoder.aspp" in message  # a missing MobileNet-model tensor
    assert "encoder/_stage2/_block1/" in message  # an unused ResNet variable
    assert "semantic_decoder/_low_level_conv1/_conv/kernel" in message  # 512 vs 88 channels
    assert "architecture" in message


def test_checkpoint_with_one_wrong_shape(ckpt: Checkpoint, tmp_path: Path) -> None:
    key = f"encoder/_blocks/0/_batch_norm/gamma{V}"
    arrays = {**ckpt.arrays, key: np.ones(17, np.float32)}
    prefix = write_checkpoint(tmp_path / "ckpt-1", arrays)
    with pytest.raises(CheckpointError) as info:
        create_model(NAME, pretrained=str(prefix))
    message = str(info.value)
    assert key in message and "shape mismatch (1)" in message
    assert "(17,)" in message and "encoder.blocks.0.batch_norm.weight" in message
    # The tensor it would have filled is reported missing; nothing else is wrong.
    assert "no checkpoint variable for (1): encoder.blocks.0.batch_norm.weight" in message
    assert "not used by the model" not in message


def test_checkpoint_with_one_variable_missing(ckpt: Checkpoint, tmp_path: Path) -> None:
    key = f"semantic_last_layer/bias{V}"
    arrays = {k: v for k, v in ckpt.arrays.items() if k != key}
    prefix = write_checkpoint(tmp_path / "ckpt-1", arrays)
    with pytest.raises(CheckpointError, match=r"no checkpoint variable for \(1\): "
                                              r"decoder\.semantic_head\.final_conv\.bias"):
        create_model(NAME, pretrained=str(prefix))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_safetensors(damage: str, converted: Path, tmp_path: Path) -> None:
    data = (converted / "model.safetensors").read_bytes()
    bad = tmp_path / "model.safetensors"
    bad.write_bytes({"garbage": b"\x00\xff" * 100, "truncated": data[: len(data) // 2],
                     "empty": b""}[damage])
    for source in (bad, tmp_path):
        with torch.device("meta"), pytest.raises(CheckpointError) as info:
            create_model(NAME, pretrained=source)
        assert str(bad) in str(info.value)


def test_safetensors_of_another_model(tmp_path: Path) -> None:
    other = create_model(NAME, num_classes=7)
    save_weights(other, tmp_path / "seven")
    with pytest.raises(CheckpointError) as info:
        create_model(NAME, pretrained=tmp_path / "seven")
    message = str(info.value)
    assert str(tmp_path / "seven" / "model.safetensors") in message
    assert "shape mismatch (2)" in message and "decoder.semantic_head.final_conv.weight" in message

    save_weights(create_model("mobilenet_v3_small"), tmp_path / "backbone.safetensors")
    with pytest.raises(CheckpointError, match=r"(?s)missing \(\d+\).*unexpected \(\d+\)"):
        create_model(NAME, pretrained=tmp_path / "backbone.safetensors")


@pytest.mark.parametrize("name", ["no_dir/ckpt-1", "missing.safetensors", "missing.tar.gz",
                                  "missing_dir"])
def test_nonexistent_path(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    with torch.device("meta"), pytest.raises(CheckpointError, match=path.name):
        create_model(NAME, pretrained=str(path))


def test_directory_without_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("nothing here")
    with torch.device("meta"), pytest.raises(CheckpointError, match=str(tmp_path)):
        create_model(NAME, pretrained=tmp_path)


@pytest.mark.parametrize("value", [123, 1.5, ["a"], b"bytes"])
def test_pretrained_of_wrong_type(value) -> None:
    with torch.device("meta"), pytest.raises(TypeError, match="pretrained must be"):
        create_model(NAME, pretrained=value)

