"""Test-side writer of TensorFlow tensor bundles (``<prefix>.index`` + data shards).

An independent, minimal implementation of the format that
:mod:`deeplab_zoo.weights.tf_checkpoint` reads, used to make synthetic checkpoints:
unusual dtypes and layouts (``test_tf_checkpoint.py``) and full DeepLab2-shaped
checkpoints with seeded values (``test_loading.py``, ``tests/test_cli.py``).
Tests in ``tests/weights`` import it as ``tf_bundle_writer``; others load it by path.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import tarfile
from pathlib import Path
from types import ModuleType

import numpy as np

from deeplab_zoo.weights.crc32c import crc32c, mask_crc32c

# Value of the string tensor every TF2 object-based checkpoint carries; never read as a weight.
OBJECT_GRAPH = ("string", (), b"\x05\x00\x00\x00\x00hello")


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_varint(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value) if value else b""


def _field_bytes(field: int, value: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(value)) + value


def _block(items: list[tuple[bytes, bytes]], restart_interval: int) -> bytes:
    out = bytearray()
    restarts = []
    prev = b""
    for i, (key, value) in enumerate(items):
        if i % restart_interval == 0:
            restarts.append(len(out))
            shared = 0
        else:
            shared = len(os.path.commonprefix([prev, key]))
        out += _varint(shared) + _varint(len(key) - shared) + _varint(len(value))
        out += key[shared:] + value
        prev = key
    if not restarts:
        restarts = [0]
    for r in restarts:
        out += r.to_bytes(4, "little")
    out += len(restarts).to_bytes(4, "little")
    return bytes(out)


def write_table(
    path: Path, items: list[tuple[bytes, bytes]], per_block: int = 4, compression: int = 0
) -> None:
    out = bytearray()

    def add_block(contents: bytes) -> bytes:
        handle = _varint(len(out)) + _varint(len(contents))
        tail = bytes([compression])
        out.extend(contents + tail + mask_crc32c(crc32c(contents + tail)).to_bytes(4, "little"))
        return handle

    index_items = []
    for start in range(0, len(items), per_block):
        chunk = items[start : start + per_block]
        index_items.append((chunk[-1][0], add_block(_block(chunk, restart_interval=3))))
    meta = add_block(_block([], 1))
    index = add_block(_block(index_items, 1))
    footer = (meta + index).ljust(40, b"\0") + (0xDB4775248B80FB57).to_bytes(8, "little")
    path.write_bytes(bytes(out) + footer)


DTYPE_ENUM = {
    "float32": 1, "float64": 2, "int32": 3, "uint8": 4, "int16": 5, "int8": 6, "string": 7,
    "complex64": 8, "int64": 9, "bool": 10, "bfloat16": 14, "uint16": 17, "float16": 19,
    "resource": 20, "uint32": 22, "uint64": 23,
}  # fmt: skip


def write_bundle(
    prefix: Path,
    tensors: dict[str, tuple[str, tuple[int, ...], bytes]],
    num_shards: int = 1,
    big_endian: bool = False,
    compression: int = 0,
) -> None:
    """tensors: name -> (dtype name, shape, raw bytes); round-robin over shards."""
    shards = [bytearray() for _ in range(num_shards)]
    items = [
        (
            b"",
            _field_varint(1, num_shards)
            + _field_varint(2, int(big_endian))
            + _field_bytes(3, _field_varint(1, 1)),
        )
    ]
    for i, (name, (dtype, shape, raw)) in enumerate(sorted(tensors.items())):
        shard = i % num_shards
        dims = b"".join(_field_bytes(2, _field_varint(1, d) or b"\x08\x00") for d in shape)
        entry = (
            _field_varint(1, DTYPE_ENUM[dtype])
            + _field_bytes(2, dims)
            + _field_varint(3, shard)
            + _field_varint(4, len(shards[shard]))
            + _field_varint(5, len(raw))
            + b"\x35"
            + mask_crc32c(crc32c(raw)).to_bytes(4, "little")
        )
        shards[shard] += raw
        items.append((name.encode(), entry))
    for shard, data in enumerate(shards):
        Path(f"{prefix}.data-{shard:05d}-of-{num_shards:05d}").write_bytes(bytes(data))
    write_table(Path(f"{prefix}.index"), items, compression=compression)


# --------------------------------------------------------------------------- DeepLab2 helpers


def write_checkpoint(prefix: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Writes numpy ``arrays`` (plus an object-graph string) as one-shard bundle ``prefix``."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: (str(a.dtype), a.shape, np.ascontiguousarray(a).tobytes())
               for name, a in arrays.items()}
    tensors["_CHECKPOINTABLE_OBJECT_GRAPH"] = OBJECT_GRAPH
    write_bundle(prefix, tensors)
    return prefix


def load_seeded_module(parity_dir: Path) -> ModuleType:
    """The fixtures' ``seeded_weights.py``, imported by path."""
    path = Path(parity_dir) / "seeded_weights.py"
    spec = importlib.util.spec_from_file_location("_tf_bundle_writer_seeded_weights", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_manifest(keys_file: Path) -> list[dict]:
    """``variables`` of a ``*.keys.json.gz`` listing: ``[{name, shape, dtype}, ...]``."""
    with gzip.open(keys_file, "rt") as f:
        return json.load(f)["variables"]


def seeded_arrays(parity_dir: Path, case: str, salt: int = 0,
                  max_size: int | None = None) -> dict[str, np.ndarray]:
    """DeepLab2 checkpoint variables of parity ``case`` with the fixtures' seeded values.

    ``max_size`` keeps only variables with at most that many elements (a cheap,
    partial checkpoint of a large model).
    """
    seeded = load_seeded_module(parity_dir)
    out = {}
    for var in read_manifest(Path(parity_dir) / "cases" / f"{case}.keys.json.gz"):
        if not var["dtype"].startswith("float"):
            continue
        if max_size is not None and int(np.prod(var["shape"])) > max_size:
            continue
        out[var["name"]] = seeded.seeded_value(var["name"], var["shape"], salt)
    return out


def tar_checkpoint(prefix: Path, archive: Path, folder: str = "model") -> Path:
    """Packs bundle ``prefix`` as DeepLab2's zoo does: ``folder/<name>.*`` + ``checkpoint``."""
    prefix = Path(prefix)
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        for path in sorted(prefix.parent.glob(prefix.name + ".*")):
            tar.add(path, arcname=f"{folder}/{path.name}")
        state = prefix.parent / "checkpoint"
        if state.is_file():
            tar.add(state, arcname=f"{folder}/checkpoint")
    return archive
