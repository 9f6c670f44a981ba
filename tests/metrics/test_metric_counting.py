"""The vectorised histograms behind the metrics, against np.unique on combined ids, on every
code path (run-length compression, look-up table vs sorted ids, dense vs sparse joint)."""
from __future__ import annotations

import numpy as np
import pytest

from deeplab_zoo.metrics._counting import histogram, merge_counts, pair_counts


def _blocky(rng, shape, values, noise=0.02):
    cells = rng.choice(values, size=(shape[0] // 16 + 1, shape[1] // 16 + 1))
    out = np.repeat(np.repeat(cells, 16, axis=0), 16, axis=1)[:shape[0], :shape[1]].copy()
    mask = rng.random(shape) < noise
    out[mask] = rng.choice(values, size=int(mask.sum()))
    return out.reshape(-1)


def _reference(a, b, weights):
    order = np.lexsort((b, a))
    sa, sb = a[order], b[order]
    starts = np.flatnonzero(np.r_[True, (sa[1:] != sa[:-1]) | (sb[1:] != sb[:-1])])
    w = np.ones(a.size, np.int64) if weights is None else weights[order]
    return sa[starts], sb[starts], np.add.reduceat(w, starts)


CASES = {
    "blocky-lut": lambda rng: (_blocky(rng, (256, 320), np.arange(40) * 1000 + 7),
                               _blocky(rng, (256, 320), np.arange(30) * 1000)),
    "blocky-huge-ids": lambda rng: (_blocky(rng, (256, 320), np.arange(40) * 2**40),
                                    _blocky(rng, (256, 320), np.arange(30) * 2**33 + 5)),
    "noise-sparse-joint": lambda rng: (rng.integers(0, 2100, size=100_000),
                                       rng.integers(0, 2100, size=100_000)),
    "small": lambda rng: (rng.integers(0, 5, size=50), rng.integers(0, 4, size=50)),
}


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("case", list(CASES))
def test_pair_counts_match_unique(case, weighted):
    rng = np.random.default_rng(0)
    a, b = CASES[case](rng)
    weights = rng.choice([0.5, 1.0, 2.0], size=a.size) if weighted else None
    pairs = pair_counts(a, b, weights)
    ref_a, ref_b, ref_counts = _reference(a, b, weights)
    np.testing.assert_array_equal(pairs.a.ids[pairs.a_index], ref_a)
    np.testing.assert_array_equal(pairs.b.ids[pairs.b_index], ref_b)
    if weighted:
        np.testing.assert_allclose(pairs.counts, ref_counts, rtol=1e-12)
    else:
        assert pairs.counts.dtype == np.int64
        np.testing.assert_array_equal(pairs.counts, ref_counts)
    for values, marginal in ((a, pairs.a), (b, pairs.b)):
        ids, inverse = np.unique(values, return_inverse=True)
        np.testing.assert_array_equal(marginal.ids, ids)
        expected = np.bincount(inverse.reshape(-1), weights=weights)
        np.testing.assert_allclose(marginal.counts, expected, rtol=1e-12)
        hist = histogram(values, weights)
        np.testing.assert_array_equal(hist.ids, ids)
        np.testing.assert_allclose(hist.counts, expected, rtol=1e-12)
        assert hist.counts.dtype == (np.float64 if weighted else np.int64)


def test_empty_and_merge():
    empty = pair_counts(np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert empty.counts.size == 0 and empty.a.ids.size == 0
    ids, counts = merge_counts(np.array([1, 5]), np.array([2.0, 1.0]), np.array([5, 9]),
                               np.array([3.0, 4.0]))
    assert ids.tolist() == [1, 5, 9] and counts.tolist() == [2.0, 4.0, 4.0]
