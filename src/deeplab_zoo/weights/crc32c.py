"""CRC-32C (Castagnoli) in numpy, fast enough for checkpoints of hundreds of MB.

A byte-at-a-time CRC loop in Python runs at about 5 MB/s. Here the input is cut
into many equal "lanes" whose CRC registers are advanced together, one 32-bit
word per numpy step (two lookups in 65536-entry tables), and the lane registers
are then merged with the linear "feed n zero bytes" operator. The result is the
standard CRC-32C (initial value and final xor 0xFFFFFFFF), e.g.
``crc32c(b"123456789") == 0xE3069283``.
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["crc32c", "mask_crc32c", "unmask_crc32c"]

_POLY = 0x82F63B78  # reflected Castagnoli polynomial
_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF
_LANE_WORDS = 64  # words (4 bytes) per lane in one vectorised pass
_SEGMENT_BYTES = 1 << 22  # inputs are processed in pieces of at most this size
_SMALL_BYTES = 512  # below this a plain Python byte loop is faster


def mask_crc32c(crc: int) -> int:
    """LevelDB/TensorFlow "masked" form of a CRC, as stored in checkpoint files."""
    crc &= _U32
    return ((((crc >> 15) | (crc << 17)) & _U32) + _MASK_DELTA) & _U32


def unmask_crc32c(masked: int) -> int:
    """Inverse of :func:`mask_crc32c`."""
    rot = (masked - _MASK_DELTA) & _U32
    return ((rot >> 17) | (rot << 15)) & _U32


@functools.cache
def _byte_table() -> np.ndarray:
    """Classic 256-entry table: register after shifting one byte value through."""
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_POLY), table >> 1)
    return table.astype(np.uint32)


def _span_table(columns: np.ndarray, bits: int) -> np.ndarray:
    """Table t[x] = XOR of columns[i] over the set bits i of x (x < 2**bits)."""
    table = np.zeros(1, dtype=np.uint32)
    for i in range(bits):
        table = np.concatenate([table, table ^ columns[i]])
    return table


@functools.cache
def _identity_op() -> np.ndarray:
    return (np.uint32(1) << np.arange(32, dtype=np.uint32)).astype(np.uint32)


def _apply(op: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Apply the GF(2)-linear operator ``op`` (images of the 32 bits) to uint32 values."""
    out = np.zeros(values.shape, dtype=np.uint32)
    for byte in range(4):
        table = _span_table(op[8 * byte : 8 * byte + 8], 8)
        out ^= table[(values >> np.uint32(8 * byte)) & np.uint32(0xFF)]
    return out


@functools.cache
def _zeros_op(n: int) -> np.ndarray:
    """Operator that advances a raw CRC register over ``n`` zero bytes."""
    if n == 0:
        return _identity_op()
    if n == 1:
        basis = _identity_op()
        return (basis >> np.uint32(8)) ^ _byte_table()[basis & np.uint32(0xFF)]
    half = _zeros_op(n // 2)
    op = _apply(half, half)
    return _apply(_zeros_op(1), op) if n % 2 else op


@functools.cache
def _zeros_tables(n: int) -> tuple[np.ndarray, ...]:
    """Byte tables of ``_zeros_op(n)`` (for merging many registers at once)."""
    op = _zeros_op(n)
    return tuple(_span_table(op[8 * i : 8 * i + 8], 8) for i in range(4))


@functools.cache
def _word_tables() -> tuple[np.ndarray, np.ndarray]:
    """Tables advancing a register by one 4-byte word: low and high 16 bits."""
    op = _zeros_op(4)
    return _span_table(op[:16], 16), _span_table(op[16:], 16)


@functools.cache
def _inverse_word_op() -> tuple[int, ...]:
    """Inverse of ``_zeros_op(4)`` over GF(2) (the CRC step is invertible)."""
    cols = [int(c) for c in _zeros_op(4)]
    # Gaussian elimination on the augmented rows [A | I], A's row r = bit r of each column.
    rows = [(sum(((cols[c] >> r) & 1) << c for c in range(32)), 1 << r) for r in range(32)]
    for col in range(32):
        pivot = next(i for i in range(col, 32) if (rows[i][0] >> col) & 1)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for i in range(32):
            if i != col and (rows[i][0] >> col) & 1:
                rows[i] = (rows[i][0] ^ rows[col][0], rows[i][1] ^ rows[col][1])
    # rows[r][1] is row r of the inverse; return its columns.
    return tuple(sum(((rows[r][1] >> c) & 1) << r for r in range(32)) for c in range(32))


def _prefix_word(reg: int) -> bytes:
    """4 bytes that take a zero register to ``reg``."""
    word = 0
    for i, col in enumerate(_inverse_word_op()):
        if (reg >> i) & 1:
            word ^= col
    return word.to_bytes(4, "little")


def _small_crc(data: np.ndarray, reg: int) -> int:
    table = _byte_table().tolist()
    for byte in data.tolist():
        reg = (reg >> 8) ^ table[(reg ^ byte) & 0xFF]
    return reg


def _advance(data: np.ndarray, reg: int) -> int:
    """Register after feeding ``data`` (uint8) into a register holding ``reg``."""
    n = data.size
    if n < _SMALL_BYTES:
        return _small_crc(data, reg)
    words_needed = -(-(n + 4) // 4)
    rows = min(_LANE_WORDS, max(8, math.isqrt(words_needed)))
    lane_bytes = 4 * rows
    lanes = -(-(n + 4) // lane_bytes)
    padded = np.zeros(lanes * lane_bytes, dtype=np.uint8)
    # A zero register stays zero over leading zero bytes; the 4 bytes before the
    # data then load ``reg``, so every lane can start from a zero register.
    padded[padded.size - n :] = data
    padded[padded.size - n - 4 : padded.size - n] = np.frombuffer(_prefix_word(reg), np.uint8)
    words = np.ascontiguousarray(padded.view("<u4").reshape(lanes, rows).T).astype(
        np.uint32, copy=False
    )
    low_table, high_table = _word_tables()
    acc = np.zeros(lanes, dtype=np.uint32)
    low = np.empty(lanes, dtype=np.uint32)
    high = np.empty(lanes, dtype=np.uint32)
    gathered = np.empty(lanes, dtype=np.uint32)
    mask16 = np.uint32(0xFFFF)
    shift16 = np.uint32(16)
    for row in words:
        np.bitwise_xor(acc, row, out=acc)
        np.bitwise_and(acc, mask16, out=low)
        np.right_shift(acc, shift16, out=high)
        low_table.take(low, out=gathered)
        high_table.take(high, out=acc)
        np.bitwise_xor(acc, gathered, out=acc)
    # Merge lanes pairwise: reg(a + b) = zeros(len(b))(reg(a)) ^ reg(b), from zero.
    span = lane_bytes
    while acc.size > 1:
        if acc.size % 2:
            acc = np.concatenate([np.zeros(1, dtype=np.uint32), acc])
        left = acc[0::2]
        t0, t1, t2, t3 = _zeros_tables(span)
        acc = (
            t0[left & np.uint32(0xFF)]
            ^ t1[(left >> np.uint32(8)) & np.uint32(0xFF)]
            ^ t2[(left >> np.uint32(16)) & np.uint32(0xFF)]
            ^ t3[left >> np.uint32(24)]
            ^ acc[1::2]
        )
        span *= 2
    return int(acc[0])


def _as_bytes(data: object) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)


def crc32c(data: object, crc: int = 0) -> int:
    """CRC-32C of a bytes-like object or array, continuing from ``crc`` (0 to start).

    ``crc32c(b, crc32c(a)) == crc32c(a + b)``.
    """
    buf = _as_bytes(data)
    reg = (crc ^ _U32) & _U32
    for start in range(0, buf.size, _SEGMENT_BYTES):
        reg = _advance(buf[start : start + _SEGMENT_BYTES], reg)
    return reg ^ _U32
