"""Vectorised id histograms: unique ids with (weighted) counts, and joint (pair) counts.

These replace the ``np.unique`` + Python-dict loops of the reference implementations:

* label maps are spatially coherent, so consecutive equal values (of one map, or of the pair
  of maps) are first collapsed into runs weighted by their length; the histograms are then
  built over one element per run;
* ids are compacted to dense indices with a look-up table when the id range is moderate (it
  is for ``semantic * label_divisor + instance`` maps), else by binary search in the sorted
  unique ids, so the joint histogram of two maps is ``np.bincount`` over
  ``a_index * n_b + b_index`` (equivalent to DeepLab2's ``a * offset + b`` ids);
* passes over the pixels run in cache-sized chunks with reused buffers, avoiding full-size
  temporaries (at Cityscapes resolution those cost more in page faults than the arithmetic).

Counts are exact: int64, or float64 sums when per-pixel weights are given.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

__all__ = ["Histogram", "PairCounts", "histogram", "merge_counts", "pair_counts", "runs"]

# Largest id for which a direct look-up table (np.bincount over the id range) is used.
_LUT_MAX_ID = 1 << 22
# Largest n_a * n_b for which the joint histogram is a dense np.bincount.
_DENSE_PAIRS_MAX = 1 << 22
# Elements per chunk.
_CHUNK = 1 << 18
# Run-length compression is tried from this many elements on.
_RUN_LENGTH_MIN = 1 << 16


class Histogram(NamedTuple):
    """Sorted unique ids (int64) and their counts (int64, or float64 sums of weights)."""

    ids: np.ndarray
    counts: np.ndarray


class PairCounts(NamedTuple):
    """Non-empty (a, b) id pairs of two aligned maps with their counts, plus the marginals."""

    a: Histogram
    b: Histogram
    a_index: np.ndarray  # [p] intp index into a.ids; pairs sorted by (a id, b id)
    b_index: np.ndarray  # [p] intp index into b.ids
    counts: np.ndarray  # [p] int64 (float64 when weighted)


def _slices(size: int, step: int = _CHUNK) -> list[slice]:
    return [slice(start, start + step) for start in range(0, size, step)]


def _bincount(x: np.ndarray, weights: np.ndarray | None, length: int) -> np.ndarray:
    """``np.bincount(x, weights, minlength=length)`` computed chunk by chunk."""
    total = np.zeros(length, dtype=np.int64 if weights is None else np.float64)
    for part in _slices(x.size):
        w = None if weights is None else weights[part]
        total += np.bincount(x[part], weights=w, minlength=length)
    return total


def _unique_ids(x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Sorted unique ids of ``x`` and, when the id range is moderate, a look-up table
    id -> index (else None)."""
    high = int(x.max())
    if high < max(_LUT_MAX_ID, 2 * x.size):
        ids = np.flatnonzero(_bincount(x, None, high + 1))
        lut = np.empty(high + 1, dtype=np.intp)
        lut[ids] = np.arange(ids.size)
        return ids.astype(np.int64, copy=False), lut
    return np.unique(x).astype(np.int64, copy=False), None


def _indexer(ids: np.ndarray, lut: np.ndarray | None, scale: int
             ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``f(values, out)`` writing ``index_of(values) * scale`` into ``out`` (intp)."""
    if lut is not None:
        table = lut * scale if scale != 1 else lut

        def take(part: np.ndarray, out: np.ndarray) -> np.ndarray:
            return np.take(table, part, out=out)

        return take

    def search(part: np.ndarray, out: np.ndarray) -> np.ndarray:
        out[...] = np.searchsorted(ids, part)
        if scale != 1:
            out *= scale
        return out

    return search


def _run_length(a: np.ndarray, b: np.ndarray | None, weights: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray] | None:
    """Collapse runs of equal consecutive values (of ``a``, or of the pair ``(a, b)``) into
    ``(a_values, b_values, run_weights)``; None when runs are not much fewer than elements."""
    if a.size < _RUN_LENGTH_MIN:
        return None
    change = a[1:] != a[:-1]
    if b is not None:
        change |= b[1:] != b[:-1]
    starts = np.flatnonzero(change)
    if starts.size > a.size // 3:
        return None
    starts += 1
    starts = np.concatenate([np.zeros(1, dtype=starts.dtype), starts])
    if weights is None:
        run_weights = np.diff(np.append(starts, a.size))
    else:
        run_weights = np.add.reduceat(weights.astype(np.float64, copy=False), starts)
    return a[starts], (None if b is None else b[starts]), run_weights


def runs(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index and value of every run of equal consecutive values of a 1-D array."""
    starts = np.flatnonzero(flat[1:] != flat[:-1])
    starts += 1
    starts = np.concatenate([np.zeros(1, dtype=starts.dtype), starts])
    return starts, flat[starts]


def _as_count_dtype(values: np.ndarray, weighted: bool) -> np.ndarray:
    return values if weighted else np.rint(values).astype(np.int64)


def histogram(x: np.ndarray, weights: np.ndarray | None = None) -> Histogram:
    """Unique ids of the flat non-negative integer array ``x`` with their counts.

    With ``weights`` (same shape as ``x``) the counts are float64 sums of the weights.
    """
    if x.size == 0:
        return Histogram(np.zeros(0, np.int64),
                         np.zeros(0, np.int64 if weights is None else np.float64))
    runs = _run_length(x, None, weights)
    values, w = (x, weights) if runs is None else (runs[0], runs[2])
    ids, lut = _unique_ids(values)
    index = np.empty(values.size, dtype=np.intp)
    _indexer(ids, lut, 1)(values, index)
    if w is None:
        counts = np.bincount(index, minlength=ids.size)
    else:
        counts = _as_count_dtype(np.bincount(index, weights=w, minlength=ids.size),
                                 weights is not None)
    return Histogram(ids, counts)


def pair_counts(a: np.ndarray, b: np.ndarray, weights: np.ndarray | None = None) -> PairCounts:
    """Joint histogram of two aligned flat non-negative integer arrays (the "offset trick").

    Equivalent to ``np.unique(a * offset + b, return_counts=True)`` for any ``offset`` larger
    than ``b.max()``, without forming the (possibly huge) combined ids. The marginal
    histograms of ``a`` and ``b`` come with it.
    """
    weighted = weights is not None
    if a.size == 0:
        empty = histogram(a, weights)
        index = np.zeros(0, dtype=np.intp)
        return PairCounts(empty, empty, index, index, empty.counts)
    runs = _run_length(a, b, weights)
    if runs is not None:
        a, b, weights = runs
    ids_a, lut_a = _unique_ids(a)
    ids_b, lut_b = _unique_ids(b)
    na, nb = ids_a.size, ids_b.size
    length = na * nb
    index_a = _indexer(ids_a, lut_a, nb)
    index_b = _indexer(ids_b, lut_b, 1)
    if length <= _DENSE_PAIRS_MAX:
        # Small joint tables are accumulated per chunk, large ones in one pass.
        step = _CHUNK if length <= _CHUNK else a.size
        joint = np.zeros(length, dtype=np.int64 if weights is None else np.float64)
        key = np.empty(min(step, a.size), dtype=np.intp)
        other = np.empty_like(key)
        for part in _slices(a.size, step):
            n = min(step, a.size - part.start)
            k = index_a(a[part], key[:n])
            k += index_b(b[part], other[:n])
            joint += np.bincount(k, weights=None if weights is None else weights[part],
                                 minlength=length)
        table = joint.reshape(na, nb)
        a_counts, b_counts = table.sum(axis=1), table.sum(axis=0)
        nonzero = np.flatnonzero(joint)
        counts = joint[nonzero]
    else:
        key = index_a(a, np.empty(a.size, dtype=np.intp))
        key += index_b(b, np.empty(b.size, dtype=np.intp))
        nonzero, inverse = np.unique(key, return_inverse=True)
        counts = np.bincount(inverse.reshape(-1), weights=weights, minlength=nonzero.size)
        a_counts = np.bincount(nonzero // nb, weights=counts, minlength=na)
        b_counts = np.bincount(nonzero % nb, weights=counts, minlength=nb)
    return PairCounts(
        Histogram(ids_a, _as_count_dtype(a_counts, weighted)),
        Histogram(ids_b, _as_count_dtype(b_counts, weighted)),
        (nonzero // nb).astype(np.intp), (nonzero % nb).astype(np.intp),
        _as_count_dtype(counts, weighted))


def merge_counts(ids_a: np.ndarray, counts_a: np.ndarray, ids_b: np.ndarray,
                 counts_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum two sparse histograms (sorted unique ids + counts) into one (float64 counts)."""
    if ids_a.size == 0:
        return ids_b.copy(), counts_b.astype(np.float64)
    if ids_b.size == 0:
        return ids_a, counts_a.astype(np.float64)
    ids, inverse = np.unique(np.concatenate([ids_a, ids_b]), return_inverse=True)
    sums = np.bincount(inverse.reshape(-1), weights=np.concatenate([counts_a, counts_b]),
                       minlength=ids.size)
    return ids, sums
