"""Read TensorFlow checkpoints (tensor bundle format) without TensorFlow.

A checkpoint ``<prefix>`` is ``<prefix>.index`` plus data shards
``<prefix>.data-%05d-of-%05d``. The index is a LevelDB-style SSTable (as
written by TensorFlow's ``table_builder``): data blocks of prefix-compressed
key/value entries with restart points, an index block pointing at them, a
metaindex block and a 48-byte footer ending in the magic ``0xdb4775248b80fb57``.
Every block is followed by a 5-byte trailer: a compression byte (TensorFlow
writes 0 = none) and the masked CRC-32C of block + compression byte. Key ``""``
holds a ``BundleHeaderProto``; every other key is a tensor name whose value is a
``BundleEntryProto`` locating its raw little-endian bytes in one data shard,
together with the masked CRC-32C of those bytes. Both protos are decoded here by
hand from the protobuf wire format.

Checks: footer magic, block bounds and trailer CRCs (always), strictly increasing
keys, shard presence and sizes, tensor byte counts against shape x dtype, and the
per-tensor data CRC when ``verify=True`` (the default; about 0.3 s per 100 MB with
the numpy CRC in :mod:`deeplab_zoo.weights.crc32c`). Every problem raises
:class:`~deeplab_zoo.errors.CheckpointError` naming the offending file.

String tensors (e.g. ``_CHECKPOINTABLE_OBJECT_GRAPH``) are listed by
:func:`list_tf_variables` with dtype ``"string"`` but never returned by
:func:`read_tf_checkpoint`: they are not weights. ``bfloat16`` tensors are
returned as float32 (exact); every other dtype keeps its numpy equivalent.
Partitioned (sliced) variables are not supported.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tarfile
import tempfile
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np

from deeplab_zoo.errors import CheckpointError
from deeplab_zoo.weights.crc32c import crc32c, unmask_crc32c

__all__ = [
    "TFCheckpointReader",
    "TFVariable",
    "list_tf_variables",
    "open_tf_checkpoint_archive",
    "read_tf_checkpoint",
    "resolve_tf_checkpoint_prefix",
]

PathLike = str | os.PathLike

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_BYTES = 48
_TRAILER_BYTES = 5
_STATE_FILE = "checkpoint"
_DATA_SUFFIX = re.compile(r"\.data-\d{5}-of-\d{5}$")
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")

# TensorFlow DataType enum -> (name, numpy little-endian dtype or None if unreadable).
_DTYPES: dict[int, tuple[str, str | None]] = {
    1: ("float32", "<f4"),
    2: ("float64", "<f8"),
    3: ("int32", "<i4"),
    4: ("uint8", "u1"),
    5: ("int16", "<i2"),
    6: ("int8", "i1"),
    7: ("string", None),
    8: ("complex64", "<c8"),
    9: ("int64", "<i8"),
    10: ("bool", "?"),
    11: ("qint8", None),
    12: ("quint8", None),
    13: ("qint32", None),
    14: ("bfloat16", "<u2"),
    15: ("qint16", None),
    16: ("quint16", None),
    17: ("uint16", "<u2"),
    18: ("complex128", "<c16"),
    19: ("float16", "<f2"),
    20: ("resource", None),
    21: ("variant", None),
    22: ("uint32", "<u4"),
    23: ("uint64", "<u8"),
}


class _WireError(ValueError):
    """Malformed bytes; the caller turns it into a CheckpointError naming the file."""


@dataclass(frozen=True)
class TFVariable:
    """One entry of a checkpoint index."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    dtype_enum: int
    shard_id: int
    offset: int
    size: int
    crc32c: int | None  # masked CRC-32C as stored, None if absent
    sliced: bool


# --------------------------------------------------------------------------- wire format


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise _WireError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _WireError("varint longer than 10 bytes")


def _proto_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield (field number, wire type, value) of a serialized protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise _WireError("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise _WireError("truncated fixed64")
            value = int.from_bytes(buf[pos : pos + 8], "little")
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise _WireError("truncated length-delimited field")
            value = bytes(buf[pos : pos + length])
            pos += length
        elif wire == 5:
            if pos + 4 > len(buf):
                raise _WireError("truncated fixed32")
            value = int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        else:
            raise _WireError(f"unsupported wire type {wire}")
        yield field, wire, value


def _expect_wire(field: int, wire: int, expected: int) -> None:
    if wire != expected:
        raise _WireError(f"field {field} has wire type {wire}, expected {expected}")


def _int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    """TensorShapeProto: repeated Dim dim = 2 {int64 size = 1}; unknown_rank = 3."""
    dims: list[int] = []
    for field, wire, value in _proto_fields(buf):
        if field == 2:
            _expect_wire(field, wire, 2)
            size = 0
            for dfield, dwire, dvalue in _proto_fields(value):
                if dfield == 1:
                    _expect_wire(dfield, dwire, 0)
                    size = _int64(dvalue)
            if size < 0:
                raise _WireError(f"unknown dimension size {size}")
            dims.append(size)
        elif field == 3 and value:
            raise _WireError("shape of unknown rank")
    return tuple(dims)


def _parse_entry(name: str, buf: bytes) -> TFVariable:
    """BundleEntryProto: dtype 1, shape 2, shard_id 3, offset 4, size 5, crc32c 6, slices 7."""
    dtype_enum, shape, shard_id, offset, size = 0, (), 0, 0, 0
    crc: int | None = None
    sliced = False
    for field, wire, value in _proto_fields(buf):
        if field == 1:
            _expect_wire(field, wire, 0)
            dtype_enum = value
        elif field == 2:
            _expect_wire(field, wire, 2)
            shape = _parse_shape(value)
        elif field in (3, 4, 5):
            _expect_wire(field, wire, 0)
            value = _int64(value)
            if value < 0:
                raise _WireError(f"negative value {value} in field {field}")
            if field == 3:
                shard_id = value
            elif field == 4:
                offset = value
            else:
                size = value
        elif field == 6:
            _expect_wire(field, wire, 5)
            crc = value
        elif field == 7:
            sliced = True
    dtype = _DTYPES.get(dtype_enum, (f"unknown_dtype_{dtype_enum}", None))[0]
    return TFVariable(name, shape, dtype, dtype_enum, shard_id, offset, size, crc, sliced)


@dataclass(frozen=True)
class _Header:
    num_shards: int
    big_endian: bool
    min_consumer: int


def _parse_header(buf: bytes) -> _Header:
    """BundleHeaderProto: num_shards 1, endianness 2 (0 little, 1 big), version 3."""
    num_shards, endianness, min_consumer = 0, 0, 0
    for field, wire, value in _proto_fields(buf):
        if field == 1:
            _expect_wire(field, wire, 0)
            num_shards = _int64(value)
        elif field == 2:
            _expect_wire(field, wire, 0)
            endianness = value
        elif field == 3:
            _expect_wire(field, wire, 2)
            for vfield, vwire, vvalue in _proto_fields(value):
                if vfield == 2 and vwire == 0:  # VersionDef.min_consumer
                    min_consumer = _int64(vvalue)
    if num_shards < 0:
        raise _WireError(f"negative num_shards {num_shards}")
    if endianness not in (0, 1):
        raise _WireError(f"unknown endianness {endianness}")
    return _Header(num_shards, endianness == 1, min_consumer)


# --------------------------------------------------------------------------- SSTable


def _read_block(data: bytes, handle: bytes, path: str, what: str) -> bytes:
    try:
        offset, pos = _varint(handle, 0)
        size, _ = _varint(handle, pos)
    except _WireError as exc:
        raise CheckpointError(f"{path}: corrupt {what} block handle ({exc})") from None
    end = offset + size + _TRAILER_BYTES
    if end > len(data) - _FOOTER_BYTES:
        raise CheckpointError(
            f"{path}: {what} block at byte {offset} (+{size}) extends past the end of the "
            f"table ({len(data)} bytes); the file is truncated or corrupt"
        )
    block = data[offset : offset + size]
    compression = data[offset + size]
    stored = int.from_bytes(data[offset + size + 1 : end], "little")
    actual = crc32c(data[offset : offset + size + 1])
    if unmask_crc32c(stored) != actual:
        raise CheckpointError(
            f"{path}: CRC mismatch in {what} block at byte {offset} (stored "
            f"{unmask_crc32c(stored):#010x}, computed {actual:#010x}); the file is corrupt"
        )
    if compression == 1:
        raise CheckpointError(
            f"{path}: {what} block at byte {offset} is Snappy-compressed; only uncompressed "
            "tables (what TensorFlow writes) are supported"
        )
    if compression != 0:
        raise CheckpointError(f"{path}: {what} block has unknown compression type {compression}")
    return block


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Key/value pairs of one block (prefix-compressed keys, restart array at the end)."""
    if len(block) < 4:
        raise _WireError("block shorter than its restart count")
    num_restarts = int.from_bytes(block[-4:], "little")
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise _WireError(f"restart count {num_restarts} does not fit the block")
    key = b""
    pos = 0
    while pos < limit:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + value_len > limit:
            raise _WireError("entry runs past the block")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + value_len]
        pos += value_len


def _table_items(path: str) -> list[tuple[bytes, bytes]]:
    """All key/value pairs of an SSTable file, in key order."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint index file not found: {path}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint index {path}: {exc}") from None
    if len(data) < _FOOTER_BYTES:
        raise CheckpointError(
            f"{path}: {len(data)} bytes, shorter than the {_FOOTER_BYTES}-byte table footer; "
            "the file is truncated or not a TensorFlow checkpoint index"
        )
    footer = data[-_FOOTER_BYTES:]
    magic = int.from_bytes(footer[-8:], "little")
    if magic != _TABLE_MAGIC:
        raise CheckpointError(
            f"{path}: bad table magic {magic:#018x} (expected {_TABLE_MAGIC:#018x}); the file is "
            "truncated or not a TensorFlow checkpoint index"
        )
    try:
        _, pos = _varint(footer, 0)
        _, pos = _varint(footer, pos)  # end of the metaindex handle
    except _WireError as exc:
        raise CheckpointError(f"{path}: corrupt table footer ({exc})") from None
    meta_handle = footer[:pos]
    index_handle = footer[pos:]
    _read_block(data, meta_handle, path, "metaindex")
    index_block = _read_block(data, index_handle, path, "index")
    items: list[tuple[bytes, bytes]] = []
    try:
        handles = [value for _, value in _block_entries(index_block)]
    except _WireError as exc:
        raise CheckpointError(f"{path}: corrupt index block ({exc})") from None
    for handle in handles:
        block = _read_block(data, handle, path, "data")
        try:
            for key, value in _block_entries(block):
                if items and key <= items[-1][0]:
                    raise _WireError(f"keys out of order ({items[-1][0]!r} then {key!r})")
                items.append((key, value))
        except _WireError as exc:
            raise CheckpointError(f"{path}: corrupt data block ({exc})") from None
    return items


# --------------------------------------------------------------------------- paths


def _strip_file_suffix(path: str) -> str | None:
    if path.endswith(".index"):
        return path[: -len(".index")]
    match = _DATA_SUFFIX.search(path)
    if match:
        return path[: match.start()]
    return None


def _is_archive(path: str) -> bool:
    return path.lower().endswith(_ARCHIVE_SUFFIXES) and os.path.isfile(path)


def _read_state_file(state: str) -> str | None:
    """``model_checkpoint_path`` from a text-format CheckpointState file."""
    try:
        text = Path(state).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"cannot read checkpoint state file {state}: {exc}") from None
    match = re.search(r'^\s*model_checkpoint_path\s*:\s*"((?:[^"\\]|\\.)*)"', text, re.M)
    if not match:
        return None
    return re.sub(r"\\(.)", r"\1", match.group(1))


def _prefix_in_directory(directory: str) -> str:
    indexes = sorted(p.name for p in Path(directory).glob("*.index") if p.is_file())
    state = os.path.join(directory, _STATE_FILE)
    if os.path.isfile(state):
        target = _read_state_file(state)
        if target is not None:
            candidates = [target if os.path.isabs(target) else os.path.join(directory, target)]
            # Zoo tarballs often carry absolute paths from the machine that trained them.
            candidates.append(os.path.join(directory, os.path.basename(target)))
            for candidate in candidates:
                if os.path.isfile(candidate + ".index"):
                    return candidate
            if len(indexes) != 1:
                raise CheckpointError(
                    f"{state} names checkpoint {target!r}, but {target}.index does not exist in "
                    f"{directory} (found: {', '.join(indexes) or 'no *.index files'})"
                )
            warnings.warn(
                f"{state} names missing checkpoint {target!r}; using the only one present, "
                f"{indexes[0]}",
                stacklevel=3,
            )
    if len(indexes) == 1:
        return os.path.join(directory, indexes[0][: -len(".index")])
    if not indexes:
        raise CheckpointError(f"no TensorFlow checkpoint (*.index file) in directory {directory}")
    raise CheckpointError(
        f"directory {directory} holds {len(indexes)} checkpoints and no '{_STATE_FILE}' state "
        f"file picks one: {', '.join(indexes)}; pass a prefix instead"
    )


def resolve_tf_checkpoint_prefix(path: PathLike) -> str:
    """Checkpoint prefix for a prefix, an ``.index``/``.data-*`` file, or a directory."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return _prefix_in_directory(path)
    if os.path.isfile(path):
        stripped = _strip_file_suffix(path)
        if stripped is not None:
            return stripped
        if _is_archive(path):
            raise CheckpointError(
                f"{path} is an archive; use open_tf_checkpoint_archive() or read_tf_checkpoint()"
            )
        if not os.path.isfile(path + ".index"):
            raise CheckpointError(f"{path} is not a TensorFlow checkpoint (no {path}.index)")
        return path
    if not os.path.isfile(path + ".index"):
        raise CheckpointError(f"checkpoint index file not found: {path}.index")
    return path


# --------------------------------------------------------------------------- archives


def _check_member(archive: str, member: tarfile.TarInfo) -> None:
    name = member.name
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise CheckpointError(f"{archive}: refusing unsafe archive member {name!r}")


def _is_checkpoint_member(name: str) -> bool:
    base = PurePosixPath(name).name
    return base == _STATE_FILE or base.endswith(".index") or bool(_DATA_SUFFIX.search(base))


def _extract_checkpoint_files(archive: str, dest: str, with_data: bool) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(archive, member)
            wanted = [
                m
                for m in members
                if m.isfile()
                and _is_checkpoint_member(m.name)
                and (with_data or not _DATA_SUFFIX.search(m.name))
            ]
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=wanted, filter="data")
            else:  # Python < 3.10.12: names were checked above and only files are extracted
                tar.extractall(dest, members=wanted)
    except CheckpointError:
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise CheckpointError(f"cannot read checkpoint archive {archive}: {exc}") from None


def _prefix_in_tree(root: str, archive: str) -> str:
    dirs = sorted({str(p.parent) for p in Path(root).rglob("*.index") if p.is_file()})
    if not dirs:
        raise CheckpointError(f"no TensorFlow checkpoint (*.index file) in archive {archive}")
    if len(dirs) > 1:
        names = sorted(
            os.path.relpath(str(p), root) for p in Path(root).rglob("*.index") if p.is_file()
        )
        raise CheckpointError(
            f"archive {archive} holds checkpoints in several folders: {', '.join(names)}"
        )
    try:
        return _prefix_in_directory(dirs[0])
    except CheckpointError as exc:
        raise CheckpointError(f"in archive {archive}: {exc}") from None


@contextlib.contextmanager
def _archive_prefix(path: str, with_data: bool) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="deeplab_zoo_ckpt_") as tmp:
        _extract_checkpoint_files(path, tmp, with_data)
        yield _prefix_in_tree(tmp, path)


@contextlib.contextmanager
def open_tf_checkpoint_archive(path: PathLike) -> Iterator[str]:
    """Extract the checkpoint files of a tarball to a temporary folder; yield its prefix.

    Only ``*.index``, ``*.data-*-of-*`` and ``checkpoint`` members are extracted (with
    ``tarfile``'s ``"data"`` filter); archives with absolute or ``..`` member names are
    rejected. The folder is deleted when the context exits.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint archive not found: {path}")
    with _archive_prefix(path, with_data=True) as prefix:
        yield prefix


# --------------------------------------------------------------------------- reader


class TFCheckpointReader:
    """Random access to the tensors of one checkpoint prefix (no TensorFlow needed).

    Use as a context manager (or call :meth:`close`) to release the shard files.
    """

    def __init__(self, prefix: PathLike, *, verify: bool = True) -> None:
        self.prefix = resolve_tf_checkpoint_prefix(prefix)
        self.index_path = self.prefix + ".index"
        self.verify = verify
        self._files: dict[int, BinaryIO] = {}
        items = _table_items(self.index_path)
        if not items or items[0][0] != b"":
            raise CheckpointError(f"{self.index_path}: no bundle header (key '')")
        try:
            self._header = _parse_header(items[0][1])
        except _WireError as exc:
            raise CheckpointError(f"{self.index_path}: corrupt bundle header ({exc})") from None
        if self._header.min_consumer > 1:
            raise CheckpointError(
                f"{self.index_path}: bundle format needs a reader of version "
                f">= {self._header.min_consumer}; this reader understands version 1"
            )
        self.variables: dict[str, TFVariable] = {}
        for key, value in items[1:]:
            if key.startswith(b"\x00"):
                continue  # encoded keys of the slices of partitioned variables
            try:
                name = key.decode("utf-8")
                self.variables[name] = _parse_entry(name, value)
            except (UnicodeDecodeError, _WireError) as exc:
                raise CheckpointError(
                    f"{self.index_path}: corrupt entry for key {key!r} ({exc})"
                ) from None

    @property
    def num_shards(self) -> int:
        """Number of data shards the header announces."""
        return self._header.num_shards

    def shard_path(self, shard_id: int) -> str:
        """File name of data shard ``shard_id``."""
        return f"{self.prefix}.data-{shard_id:05d}-of-{self.num_shards:05d}"

    def check_shards(self) -> None:
        """Raise CheckpointError if a data shard is missing or shorter than its entries need.

        Covers every entry, including the string tensors that are never read.
        """
        sizes = []
        for shard in range(self.num_shards):
            path = self.shard_path(shard)
            if not os.path.isfile(path):
                raise CheckpointError(f"missing checkpoint data shard: {path}")
            sizes.append(os.path.getsize(path))
        for name, var in self.variables.items():
            if var.sliced:
                continue
            if var.shard_id >= self.num_shards:
                raise CheckpointError(
                    f"{self.index_path}: {name!r} is in shard {var.shard_id}, but the header "
                    f"announces {self.num_shards} shard(s)"
                )
            if var.offset + var.size > sizes[var.shard_id]:
                raise CheckpointError(
                    f"{self.shard_path(var.shard_id)}: truncated: {name!r} needs bytes "
                    f"{var.offset}..{var.offset + var.size} but the file has "
                    f"{sizes[var.shard_id]}"
                )

    def _shard(self, shard_id: int) -> BinaryIO:
        if shard_id not in self._files:
            path = self.shard_path(shard_id)
            try:
                self._files[shard_id] = open(path, "rb")  # closed in close()
            except FileNotFoundError:
                raise CheckpointError(f"missing checkpoint data shard: {path}") from None
            except OSError as exc:
                raise CheckpointError(f"cannot open checkpoint data shard {path}: {exc}") from None
        return self._files[shard_id]

    def read(self, name: str) -> np.ndarray:
        """The tensor stored under ``name`` (native byte order; bfloat16 -> float32)."""
        var = self.variables.get(name)
        if var is None:
            raise KeyError(f"{name!r} is not in checkpoint {self.prefix}")
        _, np_dtype = _DTYPES.get(var.dtype_enum, (var.dtype, None))
        if var.sliced:
            raise CheckpointError(
                f"{self.index_path}: {name!r} is a partitioned (sliced) variable; not supported"
            )
        if np_dtype is None:
            raise CheckpointError(
                f"{self.index_path}: {name!r} has unsupported dtype {var.dtype} "
                f"(DataType {var.dtype_enum})"
            )
        dtype = np.dtype(np_dtype)
        if self._header.big_endian:
            dtype = dtype.newbyteorder(">")
        expected = math.prod(var.shape) * dtype.itemsize
        if var.size != expected:
            raise CheckpointError(
                f"{self.index_path}: {name!r} stores {var.size} bytes, but shape {var.shape} "
                f"of {var.dtype} needs {expected}"
            )
        if var.shard_id >= self.num_shards:
            raise CheckpointError(
                f"{self.index_path}: {name!r} is in shard {var.shard_id}, but the header "
                f"announces {self.num_shards} shard(s)"
            )
        path = self.shard_path(var.shard_id)
        f = self._shard(var.shard_id)
        file_size = os.fstat(f.fileno()).st_size
        if var.offset + var.size > file_size:
            raise CheckpointError(
                f"{path}: truncated: {name!r} needs bytes {var.offset}..{var.offset + var.size} "
                f"but the file has {file_size}"
            )
        raw = np.empty(var.size, dtype=np.uint8)
        f.seek(var.offset)
        got = f.readinto(memoryview(raw))
        if got != var.size:
            raise CheckpointError(f"{path}: truncated while reading {name!r}")
        if self.verify and var.crc32c is not None:
            actual = crc32c(raw)
            if unmask_crc32c(var.crc32c) != actual:
                raise CheckpointError(
                    f"{path}: CRC mismatch for {name!r} (stored "
                    f"{unmask_crc32c(var.crc32c):#010x}, computed {actual:#010x}); the data "
                    "shard is corrupt"
                )
        array = raw.view(dtype).reshape(var.shape)
        if var.dtype == "bfloat16":
            return (array.astype(np.uint32) << np.uint32(16)).view(np.float32)
        if not dtype.isnative:
            array = array.astype(dtype.newbyteorder("="))
        return array

    def close(self) -> None:
        """Close the open shard files."""
        for f in self._files.values():
            f.close()
        self._files.clear()

    def __enter__(self) -> TFCheckpointReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --------------------------------------------------------------------------- public API


def list_tf_variables(path: PathLike) -> dict[str, tuple[tuple[int, ...], str]]:
    """Name -> (shape, dtype name) of every tensor, without reading the data shards.

    ``path``: a checkpoint prefix, its ``.index`` file, a directory holding one
    checkpoint (or a ``checkpoint`` state file), or a ``.tar.gz``/``.tgz`` archive.
    Dtype names are numpy-style (``"float32"``, ``"int64"``, ...) plus ``"string"``,
    ``"bfloat16"`` and TensorFlow names for types :func:`read_tf_checkpoint` rejects.
    """
    path = os.fspath(path)
    if _is_archive(path):
        with _archive_prefix(path, with_data=False) as prefix:
            return list_tf_variables(prefix)
    reader = TFCheckpointReader(path)
    return {name: (var.shape, var.dtype) for name, var in reader.variables.items()}


def read_tf_checkpoint(path: PathLike, *, verify: bool = True) -> dict[str, np.ndarray]:
    """All non-string tensors of a TensorFlow checkpoint as numpy arrays, in key order.

    ``path`` is resolved as in :func:`list_tf_variables` (archives are extracted to a
    temporary folder first). With ``verify`` (default) every tensor's stored CRC-32C
    is checked. String tensors such as ``_CHECKPOINTABLE_OBJECT_GRAPH`` are skipped.
    """
    path = os.fspath(path)
    if _is_archive(path):
        with _archive_prefix(path, with_data=True) as prefix:
            try:
                return read_tf_checkpoint(prefix, verify=verify)
            except CheckpointError as exc:
                raise CheckpointError(f"in archive {path}: {exc}") from None
    with TFCheckpointReader(path, verify=verify) as reader:
        reader.check_shards()
        return {
            name: reader.read(name)
            for name, var in reader.variables.items()
            if var.dtype != "string"
        }
