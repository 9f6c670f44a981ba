"""TensorFlow-free checkpoint reader: real TF-written fixtures plus synthetic bundles."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import shutil
import tarfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from tf_bundle_writer import write_bundle

from deeplab_zoo.errors import CheckpointError
from deeplab_zoo.weights.tf_checkpoint import (
    TFCheckpointReader,
    list_tf_variables,
    open_tf_checkpoint_archive,
    read_tf_checkpoint,
    resolve_tf_checkpoint_prefix,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
PARITY_DIR = Path(os.environ.get("DEEPLAB_ZOO_PARITY_DIR", REPO_ROOT.parent / "shared" / "parity"))
TF2_DIR = PARITY_DIR / "tf_checkpoint"
TF2_NAME = "panoptic_deeplab_mobilenet_v3_small_os32_encoder"
TF1_DIR = PARITY_DIR / "classic" / "tf1_checkpoint"
TF1_TARBALL = TF1_DIR / "deeplabv3_mnv2_pascal_train_aug_subset.tar.gz"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"parity fixture {path} not found (set DEEPLAB_ZOO_PARITY_DIR)")
    return path


@pytest.fixture(scope="module")
def seeded() -> ModuleType:
    path = _require(PARITY_DIR / "seeded_weights.py")
    spec = importlib.util.spec_from_file_location("_parity_seeded_weights", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def tf2_copy(tmp_path: Path) -> Path:
    """Writable copy of the TF2 fixture; returns its prefix."""
    src = _require(TF2_DIR / f"{TF2_NAME}.index")
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copyfile(src.with_suffix(suffix), tmp_path / f"{TF2_NAME}{suffix}")
    return tmp_path / TF2_NAME


def _assert_seeded(arrays: dict[str, np.ndarray], seeded: ModuleType) -> None:
    for name, array in arrays.items():
        expected = seeded.seeded_value(name, array.shape, 0)
        assert array.dtype == np.float32, name
        assert np.array_equal(array.view(np.uint32), expected.view(np.uint32)), name


# --------------------------------------------------------------------------- real fixtures


def test_tf2_checkpoint_keys_and_values(seeded: ModuleType) -> None:
    prefix = _require(TF2_DIR / f"{TF2_NAME}.index").with_suffix("")
    listing = json.loads((TF2_DIR / "checkpoint_keys.json").read_text())
    expected = {v["name"]: (tuple(v["shape"]), v["dtype"]) for v in listing["variables"]}

    variables = list_tf_variables(prefix)
    assert variables == expected
    assert variables["_CHECKPOINTABLE_OBJECT_GRAPH"] == ((), "string")

    arrays = read_tf_checkpoint(prefix)
    assert set(arrays) == {k for k, (_, dtype) in expected.items() if dtype != "string"}
    assert sum(a.size for a in arrays.values()) == listing["num_float_values"]
    for name, array in arrays.items():
        assert array.shape == expected[name][0]
    _assert_seeded(arrays, seeded)


def test_tf2_checkpoint_path_forms(tf2_copy: Path) -> None:
    prefix = str(tf2_copy)
    assert resolve_tf_checkpoint_prefix(tf2_copy.parent) == prefix
    assert resolve_tf_checkpoint_prefix(prefix + ".index") == prefix
    assert resolve_tf_checkpoint_prefix(prefix + ".data-00000-of-00001") == prefix
    by_dir = read_tf_checkpoint(tf2_copy.parent, verify=False)
    by_prefix = read_tf_checkpoint(prefix)
    assert by_dir.keys() == by_prefix.keys()
    assert all(np.array_equal(by_dir[k], by_prefix[k]) for k in by_dir)


def test_tf1_tarball(seeded: ModuleType) -> None:
    tarball = _require(TF1_TARBALL)
    listing = json.loads((TF1_DIR / "keys.json").read_text())
    expected = {v["name"]: (tuple(v["shape"]), v["dtype"]) for v in listing["variables"]}

    assert list_tf_variables(tarball) == expected
    arrays = read_tf_checkpoint(tarball)
    assert set(arrays) == set(expected)
    _assert_seeded(arrays, seeded)

    with open_tf_checkpoint_archive(tarball) as prefix:
        assert Path(prefix).name == "model.ckpt"
        assert Path(prefix).parent.name == "deeplabv3_mnv2_pascal_train_aug"
        assert set(list_tf_variables(prefix)) == set(expected)
        tmp_root = Path(prefix).parents[1]
    assert not tmp_root.exists()


# --------------------------------------------------------------------------- corruption


def _expect_error(match_file: Path | str, func, *args, **kwargs) -> str:
    with pytest.raises(CheckpointError) as info:
        func(*args, **kwargs)
    message = str(info.value)
    assert str(match_file) in message, message
    return message


def test_truncated_index(tf2_copy: Path) -> None:
    index = Path(f"{tf2_copy}.index")
    data = index.read_bytes()
    index.write_bytes(data[:-10])
    _expect_error(index, read_tf_checkpoint, tf2_copy)
    index.write_bytes(data[:20])
    _expect_error(index, list_tf_variables, tf2_copy)


def test_bad_magic(tf2_copy: Path) -> None:
    index = Path(f"{tf2_copy}.index")
    data = bytearray(index.read_bytes())
    data[-1] ^= 0xFF
    index.write_bytes(bytes(data))
    assert "magic" in _expect_error(index, read_tf_checkpoint, tf2_copy)


def test_index_block_crc(tf2_copy: Path) -> None:
    index = Path(f"{tf2_copy}.index")
    data = bytearray(index.read_bytes())
    pos = data.index(b"encoder/_blocks/0/_batch_norm/beta")
    data[pos + 2] ^= 0x01
    index.write_bytes(bytes(data))
    assert "CRC" in _expect_error(index, list_tf_variables, tf2_copy)


def test_missing_index(tmp_path: Path) -> None:
    _expect_error(tmp_path / "nothing.index", read_tf_checkpoint, tmp_path / "nothing")


def test_missing_data_shard(tf2_copy: Path) -> None:
    shard = Path(f"{tf2_copy}.data-00000-of-00001")
    shard.unlink()
    assert len(list_tf_variables(tf2_copy)) == 207  # listing needs no data
    _expect_error(shard, read_tf_checkpoint, tf2_copy)


def test_truncated_data_shard(tf2_copy: Path) -> None:
    shard = Path(f"{tf2_copy}.data-00000-of-00001")
    shard.write_bytes(shard.read_bytes()[:-100])
    assert "truncated" in _expect_error(shard, read_tf_checkpoint, tf2_copy, verify=False)


def test_data_crc_mismatch(tf2_copy: Path, seeded: ModuleType) -> None:
    shard = Path(f"{tf2_copy}.data-00000-of-00001")
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x10
    shard.write_bytes(bytes(data))
    assert "CRC" in _expect_error(shard, read_tf_checkpoint, tf2_copy)
    arrays = read_tf_checkpoint(tf2_copy, verify=False)  # verify=False reads the bad bits
    bad = [
        k for k, a in arrays.items() if not np.array_equal(a, seeded.seeded_value(k, a.shape, 0))
    ]
    assert len(bad) == 1


def test_directory_with_two_checkpoints(tf2_copy: Path) -> None:
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copyfile(f"{tf2_copy}{suffix}", tf2_copy.parent / f"other{suffix}")
    message = _expect_error(tf2_copy.parent, read_tf_checkpoint, tf2_copy.parent)
    assert "other.index" in message and f"{TF2_NAME}.index" in message
    # A `checkpoint` state file picks one, also when it names a foreign absolute path.
    (tf2_copy.parent / "checkpoint").write_text(
        'model_checkpoint_path: "/gcs/somewhere/other"\n'
        'all_model_checkpoint_paths: "/gcs/somewhere/other"\n'
    )
    assert resolve_tf_checkpoint_prefix(tf2_copy.parent) == str(tf2_copy.parent / "other")


def test_empty_directory(tmp_path: Path) -> None:
    _expect_error(tmp_path, read_tf_checkpoint, tmp_path)


# --------------------------------------------------------------------------- synthetic bundles
# tf_bundle_writer is a minimal independent writer of the format, to reach dtypes and
# layouts the fixtures lack.


def _sample_tensors() -> tuple[dict, dict]:
    rng = np.random.default_rng(0)
    arrays = {
        "a/float32": rng.normal(size=(3, 4)).astype(np.float32),
        "a/float64": rng.normal(size=(5,)),
        "b/int32": rng.integers(-1000, 1000, (2, 2, 2)).astype(np.int32),
        "b/int64": rng.integers(-(2**40), 2**40, (7,)),
        "b/int8": rng.integers(-128, 128, (9,)).astype(np.int8),
        "b/int16": rng.integers(-3000, 3000, (9,)).astype(np.int16),
        "b/uint8": rng.integers(0, 256, (4, 4)).astype(np.uint8),
        "b/uint16": rng.integers(0, 65536, (3,)).astype(np.uint16),
        "b/uint32": rng.integers(0, 2**32, (3,)).astype(np.uint32),
        "b/uint64": rng.integers(0, 2**63, (3,)).astype(np.uint64),
        "c/bool": rng.integers(0, 2, (6,)).astype(bool),
        "c/float16": rng.normal(size=(2, 3)).astype(np.float16),
        "c/complex64": (rng.normal(size=3) + 1j * rng.normal(size=3)).astype(np.complex64),
        "d/scalar": np.array(1.5, dtype=np.float32),
        "d/empty": np.zeros((0, 3), dtype=np.float32),
        "global_step": np.array(12345, dtype=np.int64),
    }
    tensors = {name: (str(a.dtype), a.shape, a.tobytes()) for name, a in arrays.items()}
    bf16_bits = (rng.normal(size=(4, 2)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    tensors["c/bfloat16"] = ("bfloat16", (4, 2), bf16_bits.tobytes())
    arrays["c/bfloat16"] = (bf16_bits.astype(np.uint32) << 16).view(np.float32)
    tensors["_CHECKPOINTABLE_OBJECT_GRAPH"] = ("string", (), b"\x05\x00\x00\x00\x00hello")
    return tensors, arrays


@pytest.mark.parametrize("num_shards", [1, 3])
def test_synthetic_dtypes(tmp_path: Path, num_shards: int) -> None:
    tensors, arrays = _sample_tensors()
    prefix = tmp_path / "model.ckpt-100"
    write_bundle(prefix, tensors, num_shards=num_shards)
    variables = list_tf_variables(prefix)
    assert variables == {name: (shape, dtype) for name, (dtype, shape, _) in tensors.items()}
    result = read_tf_checkpoint(prefix)
    assert set(result) == set(arrays)
    for name, expected in arrays.items():
        assert result[name].dtype == expected.dtype, name
        assert result[name].shape == expected.shape, name
        assert result[name].tobytes() == expected.tobytes(), name
    with TFCheckpointReader(prefix) as reader:
        assert reader.num_shards == num_shards
        assert np.array_equal(reader.read("a/float32"), arrays["a/float32"])
        with pytest.raises(KeyError):
            reader.read("nope")


def test_synthetic_big_endian(tmp_path: Path) -> None:
    values = np.arange(6, dtype=">f4").reshape(2, 3)
    write_bundle(tmp_path / "be", {"x": ("float32", (2, 3), values.tobytes())}, big_endian=True)
    result = read_tf_checkpoint(tmp_path / "be")["x"]
    assert result.dtype == np.float32 and result.dtype.isnative
    assert np.array_equal(result, values)


def test_synthetic_missing_second_shard(tmp_path: Path) -> None:
    tensors, _ = _sample_tensors()
    write_bundle(tmp_path / "m", tensors, num_shards=2)
    shard = tmp_path / "m.data-00001-of-00002"
    shard.unlink()
    _expect_error(shard, read_tf_checkpoint, tmp_path / "m")


def test_synthetic_unsupported_dtype(tmp_path: Path) -> None:
    write_bundle(tmp_path / "r", {"handle": ("resource", (), b"\0" * 8)})
    assert list_tf_variables(tmp_path / "r") == {"handle": ((), "resource")}
    message = _expect_error(f"{tmp_path / 'r'}.index", read_tf_checkpoint, tmp_path / "r")
    assert "unsupported dtype resource" in message


def test_synthetic_size_mismatch(tmp_path: Path) -> None:
    write_bundle(tmp_path / "s", {"x": ("float32", (2, 3), b"\0" * 20)})
    assert "needs 24" in _expect_error(
        f"{tmp_path / 's'}.index", read_tf_checkpoint, tmp_path / "s"
    )


def test_synthetic_snappy_block(tmp_path: Path) -> None:
    write_bundle(tmp_path / "z", {"x": ("float32", (1,), b"\0" * 4)}, compression=1)
    message = _expect_error(f"{tmp_path / 'z'}.index", list_tf_variables, tmp_path / "z")
    assert "Snappy" in message


def test_synthetic_many_blocks(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    arrays = {f"layer_{i:03d}/kernel": rng.normal(size=(i % 5 + 1,)).astype(np.float32)
              for i in range(150)}  # fmt: skip
    write_bundle(
        tmp_path / "big", {k: ("float32", a.shape, a.tobytes()) for k, a in arrays.items()}
    )
    result = read_tf_checkpoint(tmp_path / "big")
    assert list(result) == sorted(arrays)
    assert all(np.array_equal(result[k], arrays[k]) for k in arrays)


# --------------------------------------------------------------------------- archives


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _bundle_files(tmp_path: Path) -> dict[str, bytes]:
    prefix = tmp_path / "src" / "ckpt-7"
    prefix.parent.mkdir()
    write_bundle(prefix, {"x": ("float32", (2,), np.ones(2, np.float32).tobytes())})
    return {p.name: p.read_bytes() for p in prefix.parent.iterdir()}


@pytest.mark.parametrize("bad_name", ["../evil/ckpt-7.index", "/abs/ckpt-7.index", "a/../../x"])
def test_archive_rejects_unsafe_members(tmp_path: Path, bad_name: str) -> None:
    files = {f"ok/{k}": v for k, v in _bundle_files(tmp_path).items()}
    files[bad_name] = b"x"
    archive = _tar(tmp_path / "bad.tar.gz", files)
    assert "unsafe" in _expect_error(archive, read_tf_checkpoint, archive)


def test_archive_deeplab2_layout(tmp_path: Path) -> None:
    files = {f"max_deeplab_s/{k}": v for k, v in _bundle_files(tmp_path).items()}
    files["max_deeplab_s/checkpoint"] = b'model_checkpoint_path: "ckpt-7"\n'
    files["max_deeplab_s/README.txt"] = b"not extracted"
    archive = _tar(tmp_path / "m.tgz", files)
    assert list_tf_variables(archive) == {"x": ((2,), "float32")}
    with open_tf_checkpoint_archive(archive) as prefix:
        assert Path(prefix).name == "ckpt-7"
        assert not (Path(prefix).parent / "README.txt").exists()
        assert np.array_equal(read_tf_checkpoint(prefix)["x"], np.ones(2, np.float32))


def test_archive_with_two_checkpoint_folders(tmp_path: Path) -> None:
    bundle = _bundle_files(tmp_path)
    files = {f"{d}/{k}": v for d in ("a", "b") for k, v in bundle.items()}
    archive = _tar(tmp_path / "two.tar.gz", files)
    message = _expect_error(archive, read_tf_checkpoint, archive)
    assert "a/ckpt-7.index" in message and "b/ckpt-7.index" in message


def test_archive_truncated(tmp_path: Path) -> None:
    files = {f"d/{k}": v for k, v in _bundle_files(tmp_path).items()}
    archive = _tar(tmp_path / "t.tar.gz", files)
    archive.write_bytes(archive.read_bytes()[: math.ceil(archive.stat().st_size / 2)])
    _expect_error(archive, read_tf_checkpoint, archive)


def test_archive_missing_shard(tmp_path: Path) -> None:
    files = {f"d/{k}": v for k, v in _bundle_files(tmp_path).items() if k.endswith(".index")}
    archive = _tar(tmp_path / "noshard.tar.gz", files)
    message = _expect_error(archive, read_tf_checkpoint, archive)
    assert "ckpt-7.data-00000-of-00001" in message
