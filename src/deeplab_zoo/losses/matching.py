"""Minimum-cost bipartite matching (the linear sum assignment problem).

MaX-DeepLab matches ground-truth masks to predicted mask slots with the Hungarian
algorithm (DeepLab2 ``matchers_ops.hungarian_matching``, on square matrices padded by
``nonsquare_hungarian_matching``). Here: the O(n^3) shortest-augmenting-path form of
the Hungarian algorithm (Kuhn-Munkres with potentials), vectorised over columns in
NumPy; it runs on the host, as the assignment is not differentiable anyway. Any optimal
assignment is a valid result; when several exist, which one is returned can differ
from DeepLab2's TensorFlow implementation.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["hungarian_permutation", "linear_sum_assignment"]


def linear_sum_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)`` minimising ``cost[rows, cols].sum()`` over full matchings.

    ``cost`` is ``[n, m]``; ``min(n, m)`` pairs are returned, rows ascending (the same
    contract as ``scipy.optimize.linear_sum_assignment``).
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"cost must be a 2-D matrix, got shape {cost.shape}")
    if not np.isfinite(cost).all():
        raise ValueError("cost contains NaN or infinite values")
    transposed = cost.shape[0] > cost.shape[1]
    if transposed:
        cost = cost.T
    n, m = cost.shape
    # 1-based potentials / matching as in the classic formulation; column 0 is virtual.
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    row_of = np.zeros(m + 1, dtype=np.int64)  # row_of[j]: row matched to column j (0: none)
    way = np.zeros(m + 1, dtype=np.int64)
    for i in range(1, n + 1):
        row_of[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = row_of[j0]
            free = ~used
            free[0] = False
            reduced = cost[i0 - 1] - u[i0] - v[1:]
            better = free[1:] & (reduced < minv[1:])
            minv[1:][better] = reduced[better]
            way[1:][better] = j0
            candidates = np.where(free[1:], minv[1:], np.inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            u[row_of[used]] += delta
            v[used] -= delta
            minv[free] -= delta
            j0 = j1
            if row_of[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            row_of[j0] = row_of[j1]
            j0 = j1
    cols = np.nonzero(row_of[1:])[0]
    rows = row_of[1:][cols] - 1
    if transposed:
        rows, cols = cols, rows
    order = np.argsort(rows)
    return rows[order], cols[order]


def hungarian_permutation(weights: torch.Tensor) -> torch.Tensor:
    """``[B, n, n]`` costs -> ``[B, n, n]`` float 0/1 permutation matrices of minimum cost."""
    if weights.ndim != 3 or weights.shape[1] != weights.shape[2]:
        raise ValueError(f"weights must be [B, n, n], got {tuple(weights.shape)}")
    host = weights.detach().double().cpu().numpy()
    out = torch.zeros(weights.shape, dtype=torch.float32)
    for b in range(host.shape[0]):
        rows, cols = linear_sum_assignment(host[b])
        out[b, torch.from_numpy(rows), torch.from_numpy(cols)] = 1.0
    return out.to(weights.device)
