"""Relative positional encodings of Axial-DeepLab (``model/layers/positional_encodings.py``).

Position-sensitive axial attention adds learned relative positional encodings to
the queries, keys and values. Each encoding is a table of ``2 * MAX_SPAN - 1``
rows (one per relative offset ``-(MAX_SPAN - 1) .. MAX_SPAN - 1``), whatever the
input size, so checkpoints load at any crop. A query at position ``i`` and a key
at position ``j`` (keys centred on the queries, ``memory_flange`` extra keys on
each side) read row ``j - i + MAX_SPAN - 1``; offsets beyond the table are
clipped to its first / last row, as DeepLab2 does when a span exceeds ``MAX_SPAN``.

DeepLab2 fixes the query and key lengths when the layer is built (from the
training crop); here they are arguments of each call, so the same module serves
every input size.
"""
from __future__ import annotations

import torch
from torch import nn

#: Largest relative offset (+1) with its own embedding (DeepLab2's ``MAX_SPAN``).
MAX_SPAN = 255


def relative_distance_index(query_length: int, key_length: int, *, max_span: int = MAX_SPAN,
                            device: torch.device | str | None = None) -> torch.Tensor:
    """``[query_length, key_length]`` int64 rows of the relative encoding table.

    Keys are centred on the queries (``key_length = query_length + 2 * flange``);
    entry ``(i, j)`` is ``j - (i + flange) + max_span - 1``, clipped to
    ``[0, 2 * max_span - 2]``. The clip only bites when ``query_length + flange >
    max_span``, exactly where DeepLab2 clips.
    """
    if (key_length - query_length) % 2:
        raise ValueError(f"key_length - query_length must be even (= 2 * memory_flange), got "
                         f"key_length={key_length}, query_length={query_length}")
    flange = (key_length - query_length) // 2
    key_index = torch.arange(key_length, device=device)
    query_index = torch.arange(query_length, device=device) + flange
    distance = key_index[None, :] - query_index[:, None] + (max_span - 1)
    return distance.clamp(0, 2 * max_span - 2)


def truncated_normal_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """Keras' ``TruncatedNormal(stddev=std)`` init: values beyond ``2 * std`` re-drawn.

    One vectorised re-draw leaves ~0.2% of the values outside; those are clipped (an
    initialiser only; ``nn.init.trunc_normal_``'s inverse-CDF sampling is much slower
    on big kernels).
    """
    with torch.no_grad():
        tensor.normal_(0.0, std)
        redraw = torch.randn_like(tensor) * std
        tensor.copy_(torch.where(tensor.abs() > 2 * std, redraw, tensor))
        return tensor.clamp_(-2 * std, 2 * std)


class RelativePositionalEncoding(nn.Module):
    """A learned ``[2 * max_span - 1, depth]`` table gathered into ``[L, M, depth]``.

    ``weight`` is DeepLab2's ``embeddings`` variable (same layout). Calling the
    module with the query and key lengths returns the encoding of every
    query-key pair.
    """

    def __init__(self, depth: int, *, max_span: int = MAX_SPAN, initialization_std: float = 1.0):
        super().__init__()
        self.depth = depth
        self.max_span = max_span
        self.weight = nn.Parameter(torch.empty(2 * max_span - 1, depth))
        truncated_normal_(self.weight, initialization_std)

    def forward(self, query_length: int, key_length: int | None = None) -> torch.Tensor:
        """``[query_length, key_length, depth]`` encodings (``key_length`` defaults to the
        query length, i.e. global attention)."""
        if key_length is None:
            key_length = query_length
        index = relative_distance_index(query_length, key_length, max_span=self.max_span,
                                        device=self.weight.device)
        return self.weight[index]

    def extra_repr(self) -> str:
        return f"depth={self.depth}, max_span={self.max_span}"
