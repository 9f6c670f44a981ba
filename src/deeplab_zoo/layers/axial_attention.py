"""Position-sensitive axial attention of Axial-DeepLab (``model/layers/axial_layers.py``).

* :func:`axial_attention_reference` - the attention arithmetic alone (similarities,
  their batch norm, softmax, retrieval, its batch norm), in plain PyTorch. It is
  kept separate so a fused native kernel can replace it: the layers call
  :func:`deeplab_zoo.ops.axial_attention`, which runs the native op when the
  extension is built and this reference otherwise.
* :class:`PositionSensitiveAxialAttention` - DeepLab2's ``AxialAttention``: one 1-D
  multi-head attention along the height or width axis of an NCHW map (batched over
  the other axis), with relative positional encodings for queries, keys and values.
* :class:`AxialAttention2D` - height-axis then width-axis attention (DeepLab2's
  ``AxialAttention2D``), with the stride applied after each axis.
* :class:`GlobalAttention2D` - content-only attention over the flattened ``H*W``
  positions (DeepLab2's ``GlobalAttention2D``).

Batch norms sit where DeepLab2 puts them: on the projected queries/keys/values
(``batch_norm_qkv``), on each similarity term before they are summed
(``batch_norm_similarity``, statistics per term and head) and on each retrieved
output before they are summed (``batch_norm_retrieved_output``, per term, head and
channel). The last two keep DeepLab2's parameter shapes, e.g. ``[3, 1, heads, 1, 1]``
and ``[2, 1, heads, 1, value_depth_per_head]``, so checkpoints map one to one.

Input-size dependence: DeepLab2 builds each layer for the training crop. If the
attended length (the feature height or width where the layer runs) is at most
``query_shape`` (default 129) the attention is global over that length; longer
inputs would need local attention, which DeepLab2 never implemented
(``NotImplementedError``) - we raise the same. Nothing else depends on the crop:
the relative-position tables always have ``2 * 255 - 1`` rows and are indexed by
the actual length at every call, so any input size up to ``query_shape`` per axis
works, and equals what DeepLab2 computes when built at that size.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.axial import axial_attention as axial_attention_op
from .conv import NormLayer, default_norm_layer
from .positional_encodings import RelativePositionalEncoding, truncated_normal_

TermNorm = Callable[[Sequence[torch.Tensor]], torch.Tensor]

_AXES = ("height", "width")
_ATTENTION_ACTIVATIONS = ("softmax", "sigmoid")


def norm_layer_settings(norm_layer: NormLayer) -> tuple[float, float | None]:
    """``(eps, momentum)`` of the batch norms ``norm_layer`` builds (PyTorch convention)."""
    probe = norm_layer(1)
    return float(getattr(probe, "eps", 1e-3)), getattr(probe, "momentum", 0.01)


def _sum_of_products(x: torch.Tensor, y: torch.Tensor, dims: tuple[int, ...],
                     shift: torch.Tensor | None = None) -> torch.Tensor:
    """``(x * y).sum(dims, keepdim=True)`` (or ``((x - shift) ** 2).sum(...)`` with a shift)
    in slices along ``dims[0]``: temporaries of 1/8 of the operands, not their size."""
    axis = dims[0]
    step = max(1, -(-x.shape[axis] // 8))
    total = None
    for start in range(0, x.shape[axis], step):
        width = min(step, x.shape[axis] - start)
        if shift is None:
            product = x.narrow(axis, start, width) * y.narrow(axis, start, width)
        else:
            product = (x.narrow(axis, start, width) - shift).square_()
        part = product.sum(dims, keepdim=True)
        total = part if total is None else total.add_(part)
    return total


def _mean_var(x: torch.Tensor, dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and biased variance over ``dims`` (kept), two-pass: as exact as
    ``torch.var_mean`` and, on CPU, about twice as fast for these outer reductions."""
    mean = x.mean(dims, keepdim=True)
    count = x.numel() // mean.numel()
    return mean, _sum_of_products(x, x, dims, shift=mean).div_(count)


class _BatchNormSum(torch.autograd.Function):
    """``sum_t batch_norm_t(terms[t])`` with batch statistics (biased variance) over
    ``dims``; weight / bias ``[T, *param]``. Returns (sum, means [T, *param], variances
    [T, *param]); the statistics are for the running averages (not differentiable)."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                dims: tuple[int, ...], *terms: torch.Tensor):
        means, variances, invs = [], [], []
        out = shift = None
        for index, term in enumerate(terms):
            mean, var = _mean_var(term, dims)
            inv = torch.rsqrt(var + eps)
            scale = inv * weight[index]
            term_shift = bias[index] - mean * scale
            shift = term_shift if shift is None else shift + term_shift
            out = torch.mul(term, scale) if out is None else out.addcmul_(term, scale)
            means.append(mean)
            variances.append(var)
            invs.append(inv)
        out.add_(shift)
        ctx.save_for_backward(weight, *terms, *means, *invs)
        ctx.dims = dims
        ctx.count = terms[0].numel() // weight[0].numel()
        means, variances = torch.stack(means), torch.stack(variances)
        ctx.mark_non_differentiable(means, variances)
        return out, means, variances

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor, _grad_means: torch.Tensor,
                 _grad_variances: torch.Tensor):
        weight, *saved = ctx.saved_tensors
        num = len(saved) // 3
        terms, means, invs = saved[:num], saved[num:2 * num], saved[2 * num:]
        grad_sum = grad.sum(ctx.dims, keepdim=True)
        term_grads, weight_grads = [], []
        for index, term in enumerate(terms):
            mean, inv = means[index], invs[index]
            # sum(g * xhat) with xhat = (x - mean) * inv, without materialising xhat.
            grad_xhat = inv * (_sum_of_products(grad, term, ctx.dims) - mean * grad_sum)
            # dx = a g + b x + c: the batch-norm gradient, expanded so that it is one
            # output tensor (laid out like the term) written by two fused passes.
            a = weight[index] * inv
            b = -a * inv * grad_xhat / ctx.count
            c = -a * grad_sum / ctx.count - b * mean
            term_grad = torch.mul(term, b).addcmul_(grad, a).add_(c)
            term_grads.append(term_grad)
            weight_grads.append(grad_xhat)
        grad_weight = torch.stack(weight_grads).reshape(weight.shape)
        grad_bias = grad_sum.expand(len(terms), *grad_sum.shape).reshape(weight.shape)
        return grad_weight, grad_bias, None, None, *term_grads


class MultiAxisBatchNorm(nn.Module):
    """Batch norm with statistics per entry of ``param_shape`` (Keras ``axis=[...]``).

    Keras' ``BatchNormalization(axis=[0, 2])`` on a stacked ``[T, B, heads, L, M]``
    tensor keeps parameters of shape ``[T, 1, heads, 1, 1]`` and averages over the
    axes of size 1. Each slice ``t`` of the leading axis is normalised
    independently, so :meth:`normalize_sum` applies slice ``t``'s statistics to the
    ``t``-th of a list of tensors and sums the results, without stacking them.
    Parameters and buffers are named as ``nn.BatchNorm2d``'s.
    """

    def __init__(self, param_shape: Sequence[int], *, eps: float = 1e-3,
                 momentum: float | None = 0.01):
        super().__init__()
        self.param_shape = tuple(int(s) for s in param_shape)
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(self.param_shape))
        self.bias = nn.Parameter(torch.zeros(self.param_shape))
        self.register_buffer("running_mean", torch.zeros(self.param_shape))
        self.register_buffer("running_var", torch.ones(self.param_shape))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def _normalize(self, x: torch.Tensor, index: int) -> torch.Tensor:
        weight, bias = self.weight[index], self.bias[index]
        if x.dim() != weight.dim():
            raise ValueError(f"MultiAxisBatchNorm: term of shape {tuple(x.shape)} does not match "
                             f"parameters of shape {self.param_shape[1:]}")
        if self.training:
            dims = [d for d, size in enumerate(weight.shape) if size == 1]
            var, mean = torch.var_mean(x, dim=dims, keepdim=True, correction=0)
            self._update_running_stats(index, mean, var, x.numel() // weight.numel())
        else:
            mean, var = self.running_mean[index], self.running_var[index]
        # Same op order as tf.nn.batch_normalization (what Keras runs here).
        inv = torch.rsqrt(var + self.eps) * weight
        return x * inv + (bias - mean * inv)

    @torch.no_grad()
    def _update_running_stats(self, index: int, mean: torch.Tensor, var: torch.Tensor,
                              count: int) -> None:
        # momentum None: cumulative average, as nn.BatchNorm2d (no .item(): traceable).
        factor = (1.0 / (self.num_batches_tracked + 1).to(mean.dtype) if self.momentum is None
                  else self.momentum)
        unbiased = var * (count / max(count - 1, 1))
        self.running_mean[index].mul_(1 - factor).add_(mean * factor)
        self.running_var[index].mul_(1 - factor).add_(unbiased * factor)

    def normalize_sum(self, terms: Sequence[torch.Tensor]) -> torch.Tensor:
        """``sum_t norm_t(terms[t])`` = ``forward(stack(terms)).sum(0)``."""
        if len(terms) != self.param_shape[0]:
            raise ValueError(f"MultiAxisBatchNorm: expected {self.param_shape[0]} terms, "
                             f"got {len(terms)}")
        out = self._normalize(terms[0], 0)
        for index in range(1, len(terms)):
            out = out + self._normalize(terms[index], index)
        if self.training:
            self.num_batches_tracked.add_(1)
        return out

    def fused_normalize_sum(self, terms: Sequence[torch.Tensor]) -> torch.Tensor:
        """:meth:`normalize_sum` with a memory-lean autograd formula: the same up to float
        rounding. In training the forward writes one output (no per-term normalised
        tensors) and the backward keeps nothing but the terms (which the caller holds
        anyway) and per-channel statistics; each gradient is laid out like its term, so
        the fused axial attention op reads it without a copy. In eval mode the norm is an
        affine map and :meth:`normalize_sum` runs it."""
        if len(terms) != self.param_shape[0]:
            raise ValueError(f"MultiAxisBatchNorm: expected {self.param_shape[0]} terms, "
                             f"got {len(terms)}")
        shape = self.param_shape[1:]
        if any(term.shape != terms[0].shape for term in terms) or terms[0].dim() != len(shape):
            raise ValueError(f"MultiAxisBatchNorm: terms of shapes "
                             f"{[tuple(t.shape) for t in terms]} do not match parameters of "
                             f"shape {shape}")
        if not self.training:
            return self.normalize_sum(terms)
        dims = tuple(d for d, size in enumerate(shape) if size == 1)
        out, means, variances = _BatchNormSum.apply(self.weight, self.bias, self.eps, dims,
                                                    *terms)
        count = terms[0].numel() // math.prod(shape)
        for index in range(len(terms)):
            self._update_running_stats(index, means[index], variances[index], count)
        self.num_batches_tracked.add_(1)
        return out

    def term_affine(self, moments: Callable[[], tuple[torch.Tensor, torch.Tensor, int]]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, shift)`` of shape ``param_shape`` such that :meth:`normalize_sum` of
        the terms equals ``sum_t terms[t] * scale[t] + shift[t]``, for callers that apply
        the norm themselves (the fused axial attention op). In training ``moments()`` gives
        the batch ``(mean, var, count)`` (mean / biased variance with one value per
        parameter, count = values averaged per parameter); the running statistics are
        updated as in :meth:`normalize_sum`."""
        if self.training:
            mean, var, count = moments()
            mean = mean.reshape(self.param_shape)
            var = var.reshape(self.param_shape)
            for index in range(self.param_shape[0]):
                self._update_running_stats(index, mean[index], var[index], count)
            self.num_batches_tracked.add_(1)
        else:
            mean, var = self.running_mean, self.running_var
        inv = torch.rsqrt(var + self.eps) * self.weight
        return inv, self.bias - mean * inv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalises a stacked ``[T, ...]`` tensor."""
        out = torch.stack([self._normalize(x[t], t) for t in range(self.param_shape[0])])
        if self.training:
            self.num_batches_tracked.add_(1)
        return out

    def extra_repr(self) -> str:
        return f"{self.param_shape}, eps={self.eps}, momentum={self.momentum}"


def _sum(terms: Sequence[torch.Tensor]) -> torch.Tensor:
    out = terms[0]
    for term in terms[1:]:
        out = out + term
    return out


def axial_attention_reference(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                              query_rpe: torch.Tensor | None = None,
                              key_rpe: torch.Tensor | None = None,
                              value_rpe: torch.Tensor | None = None, *,
                              use_content_similarity: bool = True,
                              retrieve_value_content: bool = True,
                              similarity_norm: TermNorm | None = None,
                              output_norm: TermNorm | None = None,
                              activation: str = "softmax") -> torch.Tensor:
    """Position-sensitive multi-head attention along one axis (pure PyTorch).

    Args:
        query: ``[B, heads, L, dk]``; key ``[B, heads, M, dk]``; value ``[B, heads, M, dv]``.
        query_rpe / key_rpe: ``[L, M, dk]`` relative encodings (None: term unused);
            value_rpe: ``[L, M, dv]``.
        use_content_similarity: include the ``q . k`` term.
        retrieve_value_content: include the retrieved values (else only ``value_rpe``).
        similarity_norm: normalises the list of similarity terms (in the order
            content, query-rpe, key-rpe; only those used) and sums them; None sums.
        output_norm: the same for the retrieved terms (content, value-rpe).
        activation: ``'softmax'`` (over keys) or ``'sigmoid'``.

    Returns:
        ``[B, heads, L, dv]``.
    """
    similarities = []
    if use_content_similarity:
        similarities.append(torch.einsum("bhld,bhmd->bhlm", query, key))
    if query_rpe is not None:
        similarities.append(torch.einsum("bhld,lmd->bhlm", query, query_rpe))
    if key_rpe is not None:
        similarities.append(torch.einsum("bhmd,lmd->bhlm", key, key_rpe))
    if not similarities:
        raise ValueError("axial attention needs at least one similarity term")
    logits = (similarity_norm or _sum)(similarities)
    if activation == "softmax":
        weights = torch.softmax(logits, dim=-1)
    elif activation == "sigmoid":
        weights = torch.sigmoid(logits)
    else:
        raise ValueError(f"attention activation must be one of {_ATTENTION_ACTIVATIONS}, "
                         f"got {activation!r}")
    retrieved = []
    if retrieve_value_content:
        retrieved.append(torch.einsum("bhlm,bhmd->bhld", weights, value))
    if value_rpe is not None:
        retrieved.append(torch.einsum("bhlm,lmd->bhld", weights, value_rpe))
    if not retrieved:
        raise ValueError("axial attention must retrieve value content or value rpe")
    return (output_norm or _sum)(retrieved)


class PositionSensitiveAxialAttention(nn.Module):
    """Multi-head position-sensitive attention along one axis of an NCHW map.

    DeepLab2's ``AxialAttention``: ``qkv = BN(x @ qkv_kernel)`` split into queries,
    keys (``total_key_depth`` channels each) and values (``total_value_depth``),
    ``num_heads`` heads, similarities ``q.k``, ``q.r_q``, ``k.r_k`` (each batch-normed,
    then summed), softmax over keys, retrieved ``a.v`` and ``a.r_v`` (each
    batch-normed, then summed). ``axis='height'`` attends along H (every column is a
    sequence), ``'width'`` along W. Output: ``[N, total_value_depth, H, W]``, channels
    ordered head-major as DeepLab2's.

    ``qkv_kernel`` keeps DeepLab2's ``[in_channels, 2 * key + value]`` layout.
    ``query_shape`` is the longest length attended globally (None: no limit);
    ``memory_flange`` would be the half-span of local attention, which DeepLab2 (and
    so this module) does not implement.
    """

    def __init__(self, in_channels: int, *, axis: str = "height", query_shape: int | None = 129,
                 memory_flange: int = 32, total_key_depth: int = 512,
                 total_value_depth: int = 1024, num_heads: int = 8,
                 use_query_rpe_similarity: bool = True, use_key_rpe_similarity: bool = True,
                 use_content_similarity: bool = True, retrieve_value_rpe: bool = True,
                 retrieve_value_content: bool = True,
                 initialization_std_for_query_key_rpe: float = 1.0,
                 initialization_std_for_value_rpe: float = 1.0,
                 self_attention_activation: str = "softmax",
                 norm_layer: NormLayer = default_norm_layer):
        super().__init__()
        if axis not in _AXES:
            raise ValueError(f"axis must be one of {_AXES}, got {axis!r}")
        if not (use_content_similarity or use_key_rpe_similarity or use_query_rpe_similarity):
            raise ValueError("Should use at least one similarity to compute attention.")
        if not (retrieve_value_content or retrieve_value_rpe):
            raise ValueError("Should retrieve at least one of content or rpe.")
        if total_key_depth % num_heads or total_value_depth % num_heads:
            raise ValueError(f"total_key_depth ({total_key_depth}) and total_value_depth "
                             f"({total_value_depth}) must be divisible by num_heads ({num_heads})")
        activation = self_attention_activation.lower()
        if activation not in _ATTENTION_ACTIVATIONS:
            raise ValueError(f"self_attention_activation must be one of "
                             f"{_ATTENTION_ACTIVATIONS}, got {self_attention_activation!r}")
        self.axis = axis
        self.query_shape = query_shape
        self.memory_flange = memory_flange
        self.in_channels = in_channels
        self.total_key_depth = total_key_depth
        self.total_value_depth = total_value_depth
        self.num_heads = num_heads
        self.key_depth_per_head = total_key_depth // num_heads
        self.value_depth_per_head = total_value_depth // num_heads
        self.use_content_similarity = use_content_similarity
        self.retrieve_value_content = retrieve_value_content
        self.activation = activation
        self.out_channels = total_value_depth

        qkv_channels = 2 * total_key_depth + total_value_depth
        self.qkv_kernel = nn.Parameter(torch.empty(in_channels, qkv_channels))
        truncated_normal_(self.qkv_kernel, in_channels ** -0.5)
        self.batch_norm_qkv = norm_layer(qkv_channels)

        eps, momentum = norm_layer_settings(norm_layer)
        num_similarities = (int(use_content_similarity) + int(use_query_rpe_similarity)
                            + int(use_key_rpe_similarity))
        num_retrieved = int(retrieve_value_content) + int(retrieve_value_rpe)
        self.batch_norm_similarity = MultiAxisBatchNorm(
            (num_similarities, 1, num_heads, 1, 1), eps=eps, momentum=momentum)
        self.batch_norm_retrieved_output = MultiAxisBatchNorm(
            (num_retrieved, 1, num_heads, 1, self.value_depth_per_head), eps=eps,
            momentum=momentum)

        def rpe(depth: int, std: float, used: bool) -> RelativePositionalEncoding | None:
            return RelativePositionalEncoding(depth, initialization_std=std) if used else None

        self.query_rpe = rpe(self.key_depth_per_head, initialization_std_for_query_key_rpe,
                             use_query_rpe_similarity)
        self.key_rpe = rpe(self.key_depth_per_head, initialization_std_for_query_key_rpe,
                           use_key_rpe_similarity)
        self.value_rpe = rpe(self.value_depth_per_head, initialization_std_for_value_rpe,
                             retrieve_value_rpe)

    def check_length(self, length: int) -> None:
        """Raises where DeepLab2 would need (unimplemented) local attention."""
        if self.query_shape is not None and length > self.query_shape:
            raise NotImplementedError(
                f"axial attention along the {self.axis} of a feature map of length {length} > "
                f"query_shape {self.query_shape} would be local attention, which DeepLab2 does "
                f"not implement; use a smaller input or a larger query_shape")

    def _to_sequences(self, t: torch.Tensor, depth: int) -> torch.Tensor:
        """``[N, heads * depth, H, W]`` -> ``[N * W, heads, H, depth]`` (height) or
        ``[N * H, heads, W, depth]`` (width)."""
        n, _, h, w = t.shape
        t = t.reshape(n, self.num_heads, depth, h, w)
        if self.axis == "height":
            return t.permute(0, 4, 1, 3, 2).reshape(n * w, self.num_heads, h, depth)
        return t.permute(0, 3, 1, 4, 2).reshape(n * h, self.num_heads, w, depth)

    def _from_sequences(self, t: torch.Tensor, n: int, h: int, w: int) -> torch.Tensor:
        depth = self.value_depth_per_head
        if self.axis == "height":
            t = t.reshape(n, w, self.num_heads, h, depth).permute(0, 2, 4, 3, 1)
        else:
            t = t.reshape(n, h, self.num_heads, w, depth).permute(0, 2, 4, 1, 3)
        return t.reshape(n, self.total_value_depth, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, in_channels, H, W]`` -> ``[N, total_value_depth, H, W]``."""
        n, _, h, w = x.shape
        length = h if self.axis == "height" else w
        self.check_length(length)
        qkv = F.conv2d(x, self.qkv_kernel.t()[:, :, None, None])
        qkv = self.batch_norm_qkv(qkv)
        query, key, value = torch.split(
            qkv, [self.total_key_depth, self.total_key_depth, self.total_value_depth], dim=1)
        query = self._to_sequences(query, self.key_depth_per_head)
        key = self._to_sequences(key, self.key_depth_per_head)
        value = self._to_sequences(value, self.value_depth_per_head)
        # The fused native op when the extension is built, else axial_attention_reference.
        out = axial_attention_op(
            query, key, value,
            None if self.query_rpe is None else self.query_rpe(length),
            None if self.key_rpe is None else self.key_rpe(length),
            None if self.value_rpe is None else self.value_rpe(length),
            use_content_similarity=self.use_content_similarity,
            retrieve_value_content=self.retrieve_value_content,
            similarity_norm=self.batch_norm_similarity,
            output_norm=self.batch_norm_retrieved_output,
            activation=self.activation)
        return self._from_sequences(out, n, h, w)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, axis={self.axis}, key={self.total_key_depth}, "
                f"value={self.total_value_depth}, heads={self.num_heads}, "
                f"query_shape={self.query_shape}")


def _pair(value: int | Sequence[int] | None) -> tuple[int | None, int | None]:
    if value is None or isinstance(value, int):
        return value, value
    first, second = value
    return first, second


class AxialAttention2D(nn.Module):
    """Height-axis attention, then width-axis attention (DeepLab2 ``AxialAttention2D``).

    Key / value depths are ``round(filters * key_expansion)`` /
    ``round(filters * value_expansion)``. With ``stride > 1`` the rows are subsampled
    after the height-axis attention and the columns after the width-axis one.
    ``query_shape`` / ``memory_flange`` are (height, width) pairs (or one int for
    both); other keyword arguments go to both :class:`PositionSensitiveAxialAttention`.
    """

    def __init__(self, in_channels: int, *, filters: int = 512, stride: int = 1,
                 key_expansion: float = 1, value_expansion: float = 2,
                 query_shape: int | Sequence[int] | None = (129, 129),
                 memory_flange: int | Sequence[int] = (32, 32),
                 norm_layer: NormLayer = default_norm_layer, **kwargs):
        super().__init__()
        key_depth = int(round(filters * key_expansion))
        value_depth = int(round(filters * value_expansion))
        query_h, query_w = _pair(query_shape)
        flange_h, flange_w = _pair(memory_flange)
        self.stride = stride
        self.out_channels = value_depth
        self.height_axis = PositionSensitiveAxialAttention(
            in_channels, axis="height", query_shape=query_h, memory_flange=flange_h,
            total_key_depth=key_depth, total_value_depth=value_depth, norm_layer=norm_layer,
            **kwargs)
        self.width_axis = PositionSensitiveAxialAttention(
            value_depth, axis="width", query_shape=query_w, memory_flange=flange_w,
            total_key_depth=key_depth, total_value_depth=value_depth, norm_layer=norm_layer,
            **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.height_axis(x)
        if self.stride > 1:
            x = x[:, :, ::self.stride, :]
        x = self.width_axis(x)
        if self.stride > 1:
            x = x[:, :, :, ::self.stride]
        return x


_RPE_FLAGS = ("use_query_rpe_similarity", "use_key_rpe_similarity", "retrieve_value_rpe")


class GlobalAttention2D(nn.Module):
    """Content-only attention over all ``H * W`` positions (DeepLab2 ``GlobalAttention2D``).

    Implemented as a :class:`PositionSensitiveAxialAttention` (module ``global``,
    plus ``global2`` with ``double_global_attention``) over the row-major flattened
    map, without relative positional encodings. ``query_shape`` and
    ``memory_flange`` are accepted (DeepLab2 passes the same layer config to both
    kinds) and ignored. The stride subsamples the output.
    """

    def __init__(self, in_channels: int, *, filters: int = 512, stride: int = 1,
                 key_expansion: float = 1, value_expansion: float = 2,
                 query_shape: int | Sequence[int] | None = None,
                 memory_flange: int | Sequence[int] | None = None,
                 double_global_attention: bool = False,
                 norm_layer: NormLayer = default_norm_layer, **kwargs):
        super().__init__()
        del query_shape, memory_flange
        if any(kwargs.get(flag, False) for flag in _RPE_FLAGS):
            raise ValueError("GlobalAttention2D does not support relative positional encodings.")
        for flag in _RPE_FLAGS:
            kwargs[flag] = False
        key_depth = int(round(filters * key_expansion))
        value_depth = int(round(filters * value_expansion))
        self.stride = stride
        self.out_channels = value_depth
        self.names = ["global"] + (["global2"] if double_global_attention else [])
        channels = in_channels
        for name in self.names:
            # ``global`` is a Python keyword, hence add_module / _modules.
            self.add_module(name, PositionSensitiveAxialAttention(
                channels, axis="height", query_shape=None, total_key_depth=key_depth,
                total_value_depth=value_depth, norm_layer=norm_layer, **kwargs))
            channels = value_depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x = x.reshape(n, c, h * w, 1)
        for name in self.names:
            x = self._modules[name](x)
        x = x.reshape(n, self.out_channels, h, w)
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        return x
