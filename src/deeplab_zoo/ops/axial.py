"""Position-sensitive axial attention on the native op, with the pure-PyTorch fallback.

Native op (``torch.ops.deeplab_zoo``, compiled from ``csrc/axial_attention*``; CPU kernel,
CUDA kernel, fake kernel for torch.compile / torch.export, autograd through a native
backward op):

- ``axial_attention(Tensor query, Tensor key, Tensor value, Tensor? query_rpe,
  Tensor? key_rpe, Tensor? value_rpe, Tensor similarity_scale, Tensor similarity_shift,
  bool use_content_similarity, bool retrieve_value_content, str activation)
  -> (Tensor retrieved_content, Tensor retrieved_rpe, Tensor softmax_stats)``: query
  ``[B, heads, L, dk]``, key
  ``[B, heads, M, dk]``, value ``[B, heads, M, dv]``, relative encodings ``[L, M, dk]`` /
  ``[L, M, dk]`` / ``[L, M, dv]``; similarity scale / shift ``[T, heads]`` (T = number of
  similarity terms used, in the order content, query-rpe, key-rpe). Computes
  ``logit = sum_t (S_t * scale[t] + shift[t])`` with ``S_c = q.k``, ``S_q = q.r_q``,
  ``S_k = k.r_k``, the softmax (or sigmoid) over keys and the retrieved terms
  ``sum_m p v_m`` / ``sum_m p r_v[l, m]``, each ``[B, L, heads, dv]`` (query-major, so
  that their batch norm per head and channel is a plain ``[B * L, heads * dv]`` batch
  norm without a copy; an unused term is an empty ``[0]`` tensor); ``softmax_stats``
  ``[2, B, heads, L]`` (row max and sum of exponentials) is what the backward needs.
  float32 / float64.
- ``axial_attention_backward(Tensor grad_content, Tensor grad_rpe, <the forward's inputs>,
  Tensor softmax_stats, <flags>)``: the gradients of all tensor inputs (empty tensors for
  absent encodings); it recomputes the similarities and probabilities row by row from the
  inputs and the row statistics (the forward's outputs are not needed).

The op boundary: DeepLab2 batch-normalises each similarity term per head (statistics over
batch, queries and keys) and each retrieved term per head and channel. Both norms stay
in PyTorch, around the op: the similarity norm enters the op as a per-term, per-head
affine map (in training its batch statistics come from `similarity_moments`, closed-form
moments from small Gram matrices, so no ``[B, heads, L, M]`` tensor is ever built), the
retrieved terms are returned separately and normalised by the caller's norm. The fused
op therefore never stores the similarities or the attention weights; forward and
backward memory are O(inputs + outputs).

`axial_attention` has the signature of the reference
(`deeplab_zoo.layers.axial_attention.axial_attention_reference`) plus ``backend``: None
(native when the extension is loaded, has kernels for the device and the inputs are
float32 / float64, else the reference), ``"native"`` (raise if unavailable) or
``"reference"``. ``similarity_norm`` / ``output_norm`` are callables on the list of terms
(the reference's contract) or norm modules with ``normalize_sum`` (e.g.
`~deeplab_zoo.layers.axial_attention.MultiAxisBatchNorm`); the native path needs the
similarity norm to also provide ``term_affine(moments) -> (scale, shift)``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from . import _extension

__all__ = [
    "axial_attention",
    "axial_attention_terms",
    "native_available",
    "register_fakes",
    "similarity_moments",
]

TermNorm = Callable[[Sequence[torch.Tensor]], torch.Tensor]
Moments = tuple[torch.Tensor, torch.Tensor, int]

_OPS = ("axial_attention", "axial_attention_backward")
_DISPATCH_KEYS = {"cpu": "CPU", "cuda": "CUDA"}
_ACTIVATIONS = ("softmax", "sigmoid")
_NATIVE_DTYPES = (torch.float32, torch.float64)
_fakes_registered = False


def native_available(device: torch.device | str = "cpu") -> bool:
    """Whether the native axial attention op can run on ``device``."""
    key = _DISPATCH_KEYS.get(torch.device(device).type)
    return (key is not None and _extension.status().loaded
            and all(_extension.has_kernel(op, key) for op in _OPS))


# --- batch statistics of the similarity terms ---------------------------------------------

def similarity_moments(query: torch.Tensor, key: torch.Tensor,
                       query_rpe: torch.Tensor | None = None,
                       key_rpe: torch.Tensor | None = None, *,
                       use_content_similarity: bool = True) -> Moments:
    """Per-head mean and (biased) variance of each similarity term over (batch, L, M).

    The statistics ``torch.var_mean(S_t, dim=(0, 2, 3), correction=0)`` of the terms
    ``S_c = q.k``, ``S_q = q.r_q``, ``S_k = k.r_k`` (those used, in that order), in closed
    form from ``[depth, depth]`` Gram matrices: nothing of size ``[B, heads, L, M]`` is
    built, the cost is O(B * heads * (L + M) * depth**2). Each factor is split into its
    mean over the axis the term sums over and the centred rest, so the variance is a sum
    of non-negative parts (no cancellation between E[S**2] and E[S]**2): float32 results
    agree with ``var_mean`` of the materialised terms to a few 1e-7. Differentiable, with a
    hand-written backward that keeps nothing but the inputs between forward and backward.

    Returns:
        (mean [T, heads], var [T, heads], count = B * L * M).
    """
    if not (use_content_similarity or query_rpe is not None or key_rpe is not None):
        raise ValueError("axial attention needs at least one similarity term")
    mean, var = _SimilarityMoments.apply(query, key, query_rpe, key_rpe, use_content_similarity)
    return mean, var, query.shape[0] * query.shape[2] * key.shape[2]


def _dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x * y).sum(-1)


def _content_stats(query: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per sequence: q = qm + qc_l, k = km + kc_m; Gram matrices of the centred parts."""
    qm, km = query.mean(2, keepdim=True), key.mean(2, keepdim=True)  # [B, H, 1, d]
    qc = query - qm
    gram_q = qc.transpose(-1, -2) @ qc  # [B, H, d, d]
    del qc
    kc = key - km
    gram_k = kc.transpose(-1, -2) @ kc
    del kc
    a = _dot(qm, km)[..., 0]  # [B, H]
    return qm, km, gram_q, gram_k, a, a.mean(0)


def _content_moments(query: torch.Tensor, key: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    # sum_lm S**2 = L M A**2 + L qm' Gk qm + M km' Gq km + <Gq, Gk> (per sequence)
    length, keys = query.shape[2], key.shape[2]
    qm, km, gram_q, gram_k, a, mean = _content_stats(query, key)
    spread = (_dot(qm @ gram_k, qm)[..., 0] / keys + _dot(km @ gram_q, km)[..., 0] / length
              + (gram_q * gram_k).sum((-2, -1)) / (length * keys))
    return mean, ((a - mean) ** 2 + spread).mean(0)


def _content_moments_backward(query: torch.Tensor, key: torch.Tensor, grad_mean: torch.Tensor,
                              grad_var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # d mean / d q_l = km M / N; d var / d q_l = 2 / N sum_m (S_lm - mean) k_m
    #   = 2 / N (Gk q_l + M km (q_l . km - mean)); the same for k with the roles exchanged.
    # (In place, so that the only temporaries are the two results.)
    batch, _, length, _ = query.shape
    keys = key.shape[2]
    count = batch * length * keys
    qm, km, gram_q, gram_k, _, mean = _content_stats(query, key)
    gm = grad_mean.view(1, -1, 1, 1) / count
    gv = 2 * grad_var.view(1, -1, 1, 1) / count
    mean = mean.view(1, -1, 1, 1)
    grads = []
    for x, other_mean, gram, other in ((query, km, gram_k, keys), (key, qm, gram_q, length)):
        grad = x @ gram
        grad.addcmul_(other_mean, x @ other_mean.transpose(-1, -2) - mean, value=other)
        grads.append(grad.mul_(gv).add_(gm * other * other_mean))
    return grads[0], grads[1]


def _rpe_stats(x: torch.Tensor, rpe: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Terms S[b, h, l, m] = x[b, h, l] . rpe[l, m] (x [B, H, L, d], rpe [L, M, d]); per l:
    x_bl = xm_l + xc_bl (mean over b), r_lm = rm_l + rc_lm (mean over m)."""
    xm = x.mean(0)  # [H, L, d]
    rm = rpe.mean(1)  # [L, d]
    rc = rpe - rm[:, None]
    gram_c = rc.transpose(1, 2) @ rc  # [L, d, d]
    a = _dot(xm, rm)  # [H, L]
    return xm, rm, gram_c, a, a.mean(1)


def _per_query(x: torch.Tensor, head: int) -> torch.Tensor:
    """x[:, head] as [L, B, d] (a view)."""
    return x[:, head].transpose(0, 1)


def _rpe_moments(x: torch.Tensor, rpe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # sum_bm S**2 = B M A_l**2 + B xm_l' Rc_l xm_l + sum_b xc_bl' R_l xc_bl (R = sum_m r r');
    # one head at a time, so that temporaries are 1 / heads of x.
    batch, heads, length, _ = x.shape
    keys = rpe.shape[1]
    xm, rm, gram_c, a, mean = _rpe_stats(x, rpe)
    gram = rpe.transpose(1, 2) @ rpe  # [L, d, d]
    spread_b = []
    for h in range(heads):
        xc = _per_query(x, h) - xm[h, :, None]  # [L, B, d]
        spread_b.append(_dot(xc @ gram, xc).sum())
    spread_b = torch.stack(spread_b) / (batch * length * keys)
    spread_l = _dot(torch.einsum("hld,lde->hle", xm, gram_c), xm) / keys  # [H, L]
    return mean, ((a - mean[:, None]) ** 2 + spread_l).mean(1) + spread_b


def _rpe_moments_backward(x: torch.Tensor, rpe: torch.Tensor, grad_mean: torch.Tensor,
                          grad_var: torch.Tensor, grad_x: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    # d var / d x_bl = 2 / N (Rc_l x_bl + M rm_l (x_bl . rm_l - mean));
    # d var / d r_lm = 2 / N sum_h (Cc_hl r_lm + B xm_hl (xm_hl . r_lm - mean_h)),
    # Cc_hl = sum_b xc xc'; d mean / d x_bl = M rm_l / N, d mean / d r_lm = B xm_hl / N.
    # One head at a time (temporaries 1 / heads of x).
    batch, heads, length, _ = x.shape
    keys = rpe.shape[1]
    count = batch * length * keys
    xm, rm, gram_c, _, mean = _rpe_stats(x, rpe)
    gm, gv = grad_mean / count, 2 * grad_var / count  # [H]
    # Accumulates into grad_x when given (one buffer less at the backward's peak).
    accumulate = grad_x is not None
    grad_x = torch.empty_like(x) if grad_x is None else grad_x
    gram_x = rpe.new_zeros(gram_c.shape)  # sum_h gv_h Cc_hl
    for h in range(heads):
        xh = _per_query(x, h)  # [L, B, d]
        out = xh @ gram_c
        out.addcmul_(rm[:, None], _dot(xh, rm[:, None])[..., None] - mean[h], value=keys)
        out.mul_(gv[h]).add_(rm[:, None] * (gm[h] * keys))
        if accumulate:
            _per_query(grad_x, h).add_(out)
        else:
            _per_query(grad_x, h).copy_(out)
        del out
        xc = xh - xm[h, :, None]
        gram_x.add_((xc.transpose(1, 2) @ xc) * gv[h])
    weights = gv.view(-1, 1, 1) * (torch.einsum("hld,lmd->hlm", xm, rpe) - mean.view(-1, 1, 1))
    grad_r = (torch.einsum("lde,lme->lmd", gram_x, rpe)
              + batch * torch.einsum("hlm,hld->lmd", weights, xm)
              + batch * torch.einsum("h,hld->ld", gm, xm)[:, None])
    return grad_x, grad_r


class _SimilarityMoments(torch.autograd.Function):
    """(mean [T, H], var [T, H]) of the similarity terms; see `similarity_moments`."""

    @staticmethod
    def forward(ctx: Any, query: torch.Tensor, key: torch.Tensor,
                query_rpe: torch.Tensor | None, key_rpe: torch.Tensor | None,
                use_content: bool) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.use_content = use_content
        ctx.save_for_backward(query, key, query_rpe, key_rpe)
        moments = []
        if use_content:
            moments.append(_content_moments(query, key))
        if query_rpe is not None:
            moments.append(_rpe_moments(query, query_rpe))
        if key_rpe is not None:
            # S_k[b, h, l, m] = k[b, h, m] . r[l, m]: the query-rpe case with L and M exchanged.
            moments.append(_rpe_moments(key, key_rpe.transpose(0, 1)))
        means, variances = zip(*moments)
        return torch.stack(means), torch.stack(variances)

    @staticmethod
    def backward(ctx: Any, grad_mean: torch.Tensor | None, grad_var: torch.Tensor | None
                 ) -> tuple[torch.Tensor | None, ...]:
        query, key, query_rpe, key_rpe = ctx.saved_tensors
        terms = int(ctx.use_content) + int(query_rpe is not None) + int(key_rpe is not None)
        shape = (terms, query.shape[1])
        grad_mean = query.new_zeros(shape) if grad_mean is None else grad_mean
        grad_var = query.new_zeros(shape) if grad_var is None else grad_var
        grad_q = grad_k = grad_rq = grad_rk = None
        t = 0
        if ctx.use_content:
            grad_q, grad_k = _content_moments_backward(query, key, grad_mean[t], grad_var[t])
            t += 1
        if query_rpe is not None:
            grad_q, grad_rq = _rpe_moments_backward(query, query_rpe, grad_mean[t], grad_var[t],
                                                    grad_q)
            t += 1
        if key_rpe is not None:
            grad_k, grad_rk = _rpe_moments_backward(key, key_rpe.transpose(0, 1), grad_mean[t],
                                                    grad_var[t], grad_k)
            grad_rk = grad_rk.transpose(0, 1)
        return grad_q, grad_k, grad_rq, grad_rk, None


# --- entry points ---------------------------------------------------------------------------

def _sum(terms: Sequence[torch.Tensor]) -> torch.Tensor:
    out = terms[0]
    for term in terms[1:]:
        out = out + term
    return out


def _as_term_norm(norm: Any) -> TermNorm | None:
    if norm is None:
        return None
    return getattr(norm, "normalize_sum", norm)


def _check_flags(use_content_similarity: bool, query_rpe: torch.Tensor | None,
                 key_rpe: torch.Tensor | None, retrieve_value_content: bool,
                 value_rpe: torch.Tensor | None, activation: str) -> None:
    if not (use_content_similarity or query_rpe is not None or key_rpe is not None):
        raise ValueError("axial attention needs at least one similarity term")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"attention activation must be one of {_ACTIVATIONS}, "
                         f"got {activation!r}")
    if not (retrieve_value_content or value_rpe is not None):
        raise ValueError("axial attention must retrieve value content or value rpe")


@torch.compiler.assume_constant_result
def _device_problem(device_type: str) -> str:
    """Why the native op cannot run tensors of ``device_type`` ('' if it can); a constant
    for torch.compile (the extension's state does not change while a graph runs)."""
    status = _extension.status()
    if not status.loaded:
        return f"the deeplab_zoo extension is not available: {status.reason}"
    if native_available(device_type):
        return ""
    if device_type == "cuda":
        return ("the deeplab_zoo extension was built without CUDA kernels; rebuild it with "
                "`python -m deeplab_zoo.ops.build` where nvcc is available")
    return f"the native op has kernels for CPU and CUDA tensors only, got {device_type}"


def _native_problem(tensors: Sequence[torch.Tensor], similarity_norm: Any) -> str:
    """Why the native op cannot run these inputs ('' if it can)."""
    device = tensors[0].device
    problem = _device_problem(device.type)
    if problem:
        return problem
    dtype = tensors[0].dtype
    if dtype not in _NATIVE_DTYPES:
        return f"the native op supports float32 and float64, got {dtype}"
    for t in tensors[1:]:
        if t.dtype != dtype or t.device != device:
            return (f"inputs must share dtype and device, got {t.dtype} on {t.device} and "
                    f"{dtype} on {device}")
    if similarity_norm is not None and not hasattr(similarity_norm, "term_affine"):
        return ("the similarity norm is an arbitrary callable; the native op needs one with "
                "term_affine() (e.g. MultiAxisBatchNorm)")
    return ""


def similarity_affine(similarity_norm: Any, query: torch.Tensor, key: torch.Tensor,
                      query_rpe: torch.Tensor | None, key_rpe: torch.Tensor | None, *,
                      use_content_similarity: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` ``[T, heads]`` with which the op applies ``similarity_norm``
    (None: the plain sum). In training the norm takes the batch statistics from
    `similarity_moments` (and updates its running statistics)."""
    terms = int(use_content_similarity) + int(query_rpe is not None) + int(key_rpe is not None)
    heads = query.shape[1]
    if similarity_norm is None:
        return query.new_ones(terms, heads), query.new_zeros(terms, heads)

    def moments() -> Moments:
        return similarity_moments(query, key, query_rpe, key_rpe,
                                  use_content_similarity=use_content_similarity)

    scale, shift = similarity_norm.term_affine(moments)
    if scale.numel() != terms * heads or shift.numel() != terms * heads:
        raise ValueError(f"similarity norm gives scale / shift of shapes {tuple(scale.shape)} / "
                         f"{tuple(shift.shape)}, expected {terms * heads} values "
                         f"([{terms} terms, {heads} heads])")
    return (scale.reshape(terms, heads).to(query.dtype),
            shift.reshape(terms, heads).to(query.dtype))


def axial_attention_terms(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          query_rpe: torch.Tensor | None, key_rpe: torch.Tensor | None,
                          value_rpe: torch.Tensor | None, similarity_scale: torch.Tensor,
                          similarity_shift: torch.Tensor, *, use_content_similarity: bool = True,
                          retrieve_value_content: bool = True,
                          activation: str = "softmax") -> list[torch.Tensor]:
    """The native op (differentiable): the retrieved terms (content, value-rpe; those
    used), each ``[B, heads, L, dv]`` (a view of ``[B, L, heads, dv]`` memory)."""
    content, rpe, _ = torch.ops.deeplab_zoo.axial_attention(
        query, key, value, query_rpe, key_rpe, value_rpe, similarity_scale, similarity_shift,
        use_content_similarity, retrieve_value_content, activation)
    terms = [content] if retrieve_value_content else []
    if value_rpe is not None:
        terms.append(rpe)
    return [term.transpose(1, 2) for term in terms]


def axial_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    query_rpe: torch.Tensor | None = None, key_rpe: torch.Tensor | None = None,
                    value_rpe: torch.Tensor | None = None, *,
                    use_content_similarity: bool = True, retrieve_value_content: bool = True,
                    similarity_norm: Any = None, output_norm: Any = None,
                    activation: str = "softmax", backend: str | None = None) -> torch.Tensor:
    """Position-sensitive multi-head attention along one axis.

    Args:
        query: ``[B, heads, L, dk]``; key ``[B, heads, M, dk]``; value ``[B, heads, M, dv]``.
        query_rpe / key_rpe: ``[L, M, dk]`` relative encodings (None: term unused);
            value_rpe: ``[L, M, dv]``.
        use_content_similarity: include the ``q . k`` term.
        retrieve_value_content: include the retrieved values (else only ``value_rpe``).
        similarity_norm: normalises the similarity terms (content, query-rpe, key-rpe;
            those used) and sums them: a callable on the list of terms, or a norm module
            with ``normalize_sum`` (and ``term_affine`` for the native op); None sums.
        output_norm: the same for the retrieved terms (content, value-rpe).
        activation: ``'softmax'`` (over keys) or ``'sigmoid'``.
        backend: None (fastest available), ``"native"`` or ``"reference"``.

    Returns:
        ``[B, heads, L, dv]``.
    """
    if backend not in (None, "native", "reference"):
        raise ValueError(f"backend must be None, 'native' or 'reference', got {backend!r}")
    _check_flags(use_content_similarity, query_rpe, key_rpe, retrieve_value_content, value_rpe,
                 activation)
    problem = "reference requested"
    if backend != "reference":
        tensors = [t for t in (query, key, value, query_rpe, key_rpe, value_rpe)
                   if t is not None]
        problem = _native_problem(tensors, similarity_norm)
        if problem and backend == "native":
            raise RuntimeError(f"backend='native' but {problem}; use backend='reference'")
    if problem:
        from ..layers.axial_attention import axial_attention_reference

        return axial_attention_reference(
            query, key, value, query_rpe, key_rpe, value_rpe,
            use_content_similarity=use_content_similarity,
            retrieve_value_content=retrieve_value_content,
            similarity_norm=_as_term_norm(similarity_norm),
            output_norm=_as_term_norm(output_norm), activation=activation)
    scale, shift = similarity_affine(similarity_norm, query, key, query_rpe, key_rpe,
                                     use_content_similarity=use_content_similarity)
    terms = axial_attention_terms(
        query, key, value, query_rpe, key_rpe, value_rpe, scale, shift,
        use_content_similarity=use_content_similarity,
        retrieve_value_content=retrieve_value_content, activation=activation)
    if output_norm is None:
        return _sum(terms)
    fused = getattr(output_norm, "fused_normalize_sum", None)
    return fused(terms) if fused is not None else _as_term_norm(output_norm)(terms)


# --- fake (meta) kernels and autograd ---------------------------------------------------------

def _setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
    (query, key, value, query_rpe, key_rpe, value_rpe, scale, shift, use_content,
     retrieve_content, activation) = inputs
    content, rpe, stats = output
    # Not the outputs: the backward needs only the inputs and the row statistics.
    ctx.save_for_backward(query, key, value, query_rpe, key_rpe, value_rpe, scale, shift,
                          stats)
    ctx.shapes = (content.shape, rpe.shape)
    ctx.flags = (use_content, retrieve_content, activation)
    ctx.mark_non_differentiable(stats)


def _backward(ctx: Any, grad_content: torch.Tensor | None, grad_rpe: torch.Tensor | None,
              _grad_stats: Any) -> tuple:
    query, key, value, query_rpe, key_rpe, value_rpe, scale, shift, stats = ctx.saved_tensors
    content_shape, rpe_shape = ctx.shapes
    grads = torch.ops.deeplab_zoo.axial_attention_backward(
        query.new_zeros(content_shape) if grad_content is None else grad_content,
        query.new_zeros(rpe_shape) if grad_rpe is None else grad_rpe,
        query, key, value, query_rpe, key_rpe, value_rpe, scale, shift, stats, *ctx.flags)
    grad_q, grad_k, grad_v, grad_rq, grad_rk, grad_rv, grad_scale, grad_shift = grads
    return (grad_q, grad_k, grad_v,
            None if query_rpe is None else grad_rq,
            None if key_rpe is None else grad_rk,
            None if value_rpe is None else grad_rv,
            grad_scale, grad_shift, None, None, None)


def register_fakes() -> None:
    """Registers the fake kernels (shape / dtype only) and the autograd formula of the ops;
    idempotent. Called when the extension is loaded."""
    global _fakes_registered
    if _fakes_registered:
        return
    _fakes_registered = True

    def check(condition: bool, message: str) -> None:
        torch._check(condition, lambda: message)

    def check_inputs(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> None:
        check(query.dim() == 4 and key.dim() == 4 and value.dim() == 4,
              "query, key and value must be [B, heads, length, depth] tensors")
        check(query.dtype in _NATIVE_DTYPES and key.dtype == query.dtype
              and value.dtype == query.dtype, "axial_attention takes float32 or float64 inputs "
              "of one dtype")

    @torch.library.register_fake("deeplab_zoo::axial_attention")
    def _axial_attention_fake(query, key, value, query_rpe, key_rpe, value_rpe,
                              similarity_scale, similarity_shift, use_content_similarity,
                              retrieve_value_content, activation):
        check_inputs(query, key, value)
        batch, heads, length, _ = query.shape
        shape = (batch, length, heads, value.shape[3])
        return (query.new_empty(shape if retrieve_value_content else (0,)),
                query.new_empty(shape if value_rpe is not None else (0,)),
                query.new_empty((2, batch, heads, length)))

    @torch.library.register_fake("deeplab_zoo::axial_attention_backward")
    def _axial_attention_backward_fake(grad_content, grad_rpe, query, key, value, query_rpe,
                                       key_rpe, value_rpe, similarity_scale, similarity_shift,
                                       softmax_stats, use_content_similarity,
                                       retrieve_value_content, activation):
        check_inputs(query, key, value)

        def like(t: torch.Tensor | None) -> torch.Tensor:
            return query.new_empty((0,)) if t is None else torch.empty_like(
                t, memory_format=torch.contiguous_format)

        return (like(query), like(key), like(value), like(query_rpe), like(key_rpe),
                like(value_rpe), like(similarity_scale), like(similarity_shift))

    torch.library.register_autograd("deeplab_zoo::axial_attention", _backward,
                                    setup_context=_setup_context)
