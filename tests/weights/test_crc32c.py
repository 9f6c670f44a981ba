"""CRC-32C against published vectors and a bit-at-a-time reference."""

from __future__ import annotations

import numpy as np
import pytest

from deeplab_zoo.weights import crc32c as crc_module
from deeplab_zoo.weights.crc32c import crc32c, mask_crc32c, unmask_crc32c


def _reference(data: bytes, crc: int = 0) -> int:
    reg = crc ^ 0xFFFFFFFF
    for byte in data:
        reg ^= byte
        for _ in range(8):
            reg = (reg >> 1) ^ (0x82F63B78 if reg & 1 else 0)
    return reg ^ 0xFFFFFFFF


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", 0),
        (b"123456789", 0xE3069283),
        (bytes(32), 0x8A9136AA),  # RFC 3720 B.4
        (b"\xff" * 32, 0x62A8AB43),
        (bytes(range(32)), 0x46DD794E),
        (bytes(range(31, -1, -1)), 0x113FDB5C),
    ],
)
def test_known_vectors(data: bytes, expected: int) -> None:
    assert crc32c(data) == expected


@pytest.mark.parametrize("n", [1, 3, 4, 5, 511, 512, 513, 1000, 4099, 65536 + 13, 200_001])
def test_matches_reference(n: int) -> None:
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8)
    expected = _reference(data.tobytes())
    assert crc32c(data) == expected
    assert crc32c(data.tobytes()) == expected
    assert crc32c(memoryview(data.tobytes())) == expected
    cut = n // 3
    assert crc32c(data[cut:], crc32c(data[:cut])) == expected


def test_many_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crc_module, "_SEGMENT_BYTES", 4096)
    data = np.random.default_rng(7).integers(0, 256, 50_000, dtype=np.uint8)
    assert crc32c(data) == _reference(data.tobytes())


def test_non_byte_arrays() -> None:
    values = np.arange(1000, dtype=np.float32).reshape(10, 100)
    assert crc32c(values) == _reference(values.tobytes())
    assert crc32c(values.T) == _reference(np.ascontiguousarray(values.T).tobytes())


def test_mask_round_trip() -> None:
    for value in (0, 1, 0x12345678, 0xFFFFFFFF):
        assert unmask_crc32c(mask_crc32c(value)) == value
    # LevelDB: mask(crc) = rotate_right(crc, 15) + 0xa282ead8.
    assert mask_crc32c(0) == 0xA282EAD8
    assert mask_crc32c(1 << 15) == (1 + 0xA282EAD8) & 0xFFFFFFFF
