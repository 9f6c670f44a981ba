"""Native position-sensitive axial attention == the pure-PyTorch reference.

The native op fuses the attention core (similarities, softmax, retrieval) and applies the
batch norms as DeepLab2 does (the similarity norm as a per-term, per-head affine map with
batch statistics from `similarity_moments`, the retrieved-term norm in PyTorch). Results
are not bit-identical (different summation order, FMAs); they are held to float rounding:
float32 outputs within 2e-6 and gradients within 5e-6 of the reference (relative to the
largest value; measured ~7e-7 and ~2e-6, the reference's own distance to float64 being
~6e-7 / ~9e-7), float64 to ~1e-12, and gradcheck in float64 for both backends.

The extension is built once per session (into <repo>/build/ops, cached between runs);
without a C++ compiler / ninja the native tests skip and only the fallback is tested.
"""
from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest
import torch

from deeplab_zoo import ops
from deeplab_zoo.layers.axial_attention import (
    AxialAttention2D,
    GlobalAttention2D,
    MultiAxisBatchNorm,
    PositionSensitiveAxialAttention,
    axial_attention_reference,
)
from deeplab_zoo.ops import _extension
from deeplab_zoo.ops import axial as axial_ops

FWD_TOL = 2e-6
GRAD_TOL = 5e-6
DOUBLE_TOL = 1e-12


# --- fixtures / helpers ----------------------------------------------------------------------

def _inputs(batch: int, heads: int, length: int, keys: int, dk: int, dv: int, *, seed: int,
            rpe: tuple[bool, bool, bool] = (True, True, True), dtype=torch.float32,
            device: str = "cpu") -> list[torch.Tensor | None]:
    """query, key, value, query_rpe, key_rpe, value_rpe (leaf tensors requiring grad)."""
    gen = torch.Generator().manual_seed(seed)
    shapes = [(batch, heads, length, dk), (batch, heads, keys, dk), (batch, heads, keys, dv),
              (length, keys, dk), (length, keys, dk), (length, keys, dv)]
    used = (True, True, True, *rpe)
    out = []
    for shape, use in zip(shapes, used):
        if not use:
            out.append(None)
            continue
        # A per-head offset so that the similarity terms have non-zero means.
        t = torch.randn(shape, generator=gen, dtype=torch.float64) + 0.3
        out.append(t.to(dtype=dtype, device=device).requires_grad_())
    return out


def _norms(heads: int, dv: int, terms: int, retrieved: int, *, seed: int,
           training: bool) -> tuple[MultiAxisBatchNorm, MultiAxisBatchNorm]:
    gen = torch.Generator().manual_seed(seed)
    sim = MultiAxisBatchNorm((terms, 1, heads, 1, 1), eps=1e-3, momentum=0.1)
    out = MultiAxisBatchNorm((retrieved, 1, heads, 1, dv), eps=1e-3, momentum=0.1)
    with torch.no_grad():
        for norm in (sim, out):
            norm.weight.copy_(torch.rand(norm.param_shape, generator=gen) + 0.5)
            norm.bias.copy_(torch.randn(norm.param_shape, generator=gen) * 0.1)
            norm.running_mean.copy_(torch.randn(norm.param_shape, generator=gen))
            norm.running_var.copy_(torch.rand(norm.param_shape, generator=gen) * 4 + 1)
    return sim.train(training), out.train(training)


def _close(a: torch.Tensor, b: torch.Tensor, tol: float, what: str = "") -> None:
    """max |a - b| <= tol * max |b| (+ tol absolute, for tensors that are ~0)."""
    assert a.shape == b.shape and a.dtype == b.dtype, (what, a.shape, b.shape)
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    err = (a - b).abs().max().item() if a.numel() else 0.0
    scale = b.abs().max().item() if b.numel() else 0.0
    assert err <= tol * scale + tol, f"{what}: max error {err:.3g} vs max value {scale:.3g}"


def _run(backend: str, tensors, *, flags: dict, norms=None, grad_seed: int = 7,
         device: str = "cpu"):
    """Output and gradients (inputs, then norm weights / biases) of one backend; the inputs
    and norms are copied so that both backends see the same state."""
    inputs = [None if t is None else t.detach().clone().requires_grad_() for t in tensors]
    sim, out_norm = (None, None) if norms is None else [copy.deepcopy(n) for n in norms]
    out = ops.axial_attention(*inputs, similarity_norm=sim, output_norm=out_norm,
                              backend=backend, **flags)
    gen = torch.Generator().manual_seed(grad_seed)
    grad = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out)
    params = [t for t in inputs if t is not None]
    if sim is not None:
        params += [sim.weight, sim.bias, out_norm.weight, out_norm.bias]
    grads = torch.autograd.grad(out, params, grad, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    return out, grads, (sim, out_norm)


def _compare(tensors, *, flags: dict, norms=None, device: str = "cpu",
             fwd_tol: float = FWD_TOL, grad_tol: float = GRAD_TOL) -> None:
    ref, ref_grads, ref_norms = _run("reference", tensors, flags=flags, norms=norms)
    tensors_dev = [None if t is None else t.detach().to(device) for t in tensors]
    norms_dev = None if norms is None else [copy.deepcopy(n).to(device) for n in norms]
    nat, nat_grads, nat_norms = _run("native", tensors_dev, flags=flags, norms=norms_dev)
    _close(nat, ref, fwd_tol, "output")
    shift_grad = None
    if norms is not None and flags.get("activation", "softmax") == "softmax":
        # The similarity shift's gradient is 0 under softmax (a constant per row): both
        # are float noise, held to the scale of the similarity weight's gradient.
        shift_grad = sum(t is not None for t in tensors) + 1
        scale = ref_grads[shift_grad - 1].abs().max().item()
        for g in (nat_grads[shift_grad], ref_grads[shift_grad]):
            assert g.abs().max().item() <= 1e-5 * scale + 1e-6
    for index, (a, b) in enumerate(zip(nat_grads, ref_grads)):
        if index != shift_grad:
            _close(a, b, grad_tol, f"gradient {index}")
    if norms is not None:
        for a, b in zip(nat_norms, ref_norms):
            _close(a.running_mean, b.running_mean, fwd_tol, "running_mean")
            _close(a.running_var, b.running_var, fwd_tol, "running_var")
            assert int(a.num_batches_tracked) == int(b.num_batches_tracked)


FULL = dict(use_content_similarity=True, retrieve_value_content=True, activation="softmax")


# --- equality with the reference ---------------------------------------------------------------

# (batch, heads, L, M, dk, dv): Axial-ResNet-like rows / columns, odd sizes, L != M,
# depths that are not multiples of the vector width, many sequences.
SHAPES = [
    (6, 8, 17, 17, 16, 32),
    (5, 3, 9, 9, 8, 16),
    (3, 2, 13, 7, 5, 3),
    (2, 4, 7, 19, 33, 17),
    (67, 2, 5, 5, 4, 8),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_matches_reference_with_batch_norms(native, devices, shape, training):
    batch, heads, length, keys, dk, dv = shape
    for device in devices:
        tensors = _inputs(batch, heads, length, keys, dk, dv, seed=hash(shape) % 1000)
        norms = _norms(heads, dv, 3, 2, seed=1, training=training)
        _compare(tensors, flags=FULL, norms=norms, device=device)


@pytest.mark.parametrize("rpe", [(True, True, True), (False, False, False), (True, False, True),
                                 (False, True, False), (False, False, True)])
@pytest.mark.parametrize("content", [True, False])
@pytest.mark.parametrize("retrieve_content", [True, False])
@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_every_term_combination(native, devices, rpe, content, retrieve_content, activation):
    if not (content or rpe[0] or rpe[1]) or not (retrieve_content or rpe[2]):
        pytest.skip("the reference rejects this combination (see test_validation_errors)")
    flags = dict(use_content_similarity=content, retrieve_value_content=retrieve_content,
                 activation=activation)
    tensors = _inputs(4, 2, 6, 7, 5, 6, seed=3, rpe=rpe)
    terms = int(content) + int(rpe[0]) + int(rpe[1])
    for device in devices:
        norms = _norms(2, 6, terms, int(retrieve_content) + int(rpe[2]), seed=2, training=True)
        _compare(tensors, flags=flags, norms=norms, device=device)
        _compare(tensors, flags=flags, norms=None, device=device)


def test_axial_resnet_row_shape(native):
    """A stride-16 Axial-ResNet-L width-axis layer of a 257x257 input (17 x 17 map)."""
    tensors = _inputs(17, 8, 17, 17, 32, 64, seed=11)
    _compare(tensors, flags=FULL, norms=_norms(8, 64, 3, 2, seed=4, training=True))


def test_length_one_and_single_sequence(native, devices):
    for shape in [(1, 1, 1, 1, 4, 4), (3, 2, 1, 1, 4, 4), (1, 1, 5, 1, 3, 2), (1, 1, 1, 6, 3, 2)]:
        tensors = _inputs(*shape, seed=5)
        for device in devices:
            # (batch norm in training needs more than one value per channel)
            _compare(tensors, flags=FULL, norms=_norms(shape[1], shape[5], 3, 2, seed=3,
                                                       training=False), device=device)
            _compare(tensors, flags=FULL, norms=None, device=device)


def test_float64_matches_reference_to_rounding(native):
    tensors = _inputs(5, 3, 9, 11, 6, 5, seed=8, dtype=torch.float64)
    for training in (True, False):
        norms = [n.double() for n in _norms(3, 5, 3, 2, seed=5, training=training)]
        _compare(tensors, flags=FULL, norms=norms, fwd_tol=DOUBLE_TOL, grad_tol=DOUBLE_TOL)


def test_non_contiguous_inputs(native):
    batch, heads, length, dk, dv = 4, 3, 6, 5, 7
    gen = torch.Generator().manual_seed(0)
    # Transposed / sliced views, as the layers' permutes produce.
    q = torch.randn(batch, length, heads, dk, generator=gen).transpose(1, 2)
    k = torch.randn(batch, heads, dk, length, generator=gen).transpose(2, 3)
    v = torch.randn(batch, heads, length, 2 * dv, generator=gen)[..., ::2]
    rq = torch.randn(length, length, dk, generator=gen).transpose(0, 1)
    rk = torch.randn(length, dk, length, generator=gen).transpose(1, 2)
    rv = torch.randn(length, length, dv + 3, generator=gen)[..., 3:]
    assert not any(t.is_contiguous() for t in (q, k, v, rq, rk, rv))
    tensors = [t.requires_grad_() for t in (q, k, v, rq, rk, rv)]
    ref, ref_grads, _ = _run("reference", tensors, flags=FULL)
    nat, nat_grads, _ = _run("native", tensors, flags=FULL)
    _close(nat, ref, FWD_TOL, "output")
    for a, b in zip(nat_grads, ref_grads):
        _close(a, b, GRAD_TOL, "gradient")


def test_many_columns(native):
    """Height-axis attention of a wide map: many short sequences."""
    tensors = _inputs(513, 2, 3, 3, 4, 4, seed=9)
    _compare(tensors, flags=FULL, norms=_norms(2, 4, 3, 2, seed=6, training=True))


def test_empty_batch(native):
    tensors = _inputs(0, 2, 5, 5, 3, 4, seed=1)
    out = ops.axial_attention(*tensors, backend="native")
    assert out.shape == (0, 2, 5, 4)
    out.sum().backward()
    assert tensors[0].grad.shape == tensors[0].shape


def test_threads_do_not_change_results_beyond_rounding(native):
    tensors = _inputs(37, 2, 9, 9, 8, 8, seed=12)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one, one_grads, _ = _run("native", tensors, flags=FULL)
        torch.set_num_threads(max(2, threads))
        many, many_grads, _ = _run("native", tensors, flags=FULL)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, many)  # the forward splits work by sequences only
    for a, b in zip(many_grads, one_grads):
        _close(a, b, GRAD_TOL, "gradient")


# --- gradcheck -----------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_gradcheck_op(native, backend, activation):
    """The fused op with explicit scale / shift inputs (native), and the reference."""
    tensors = _inputs(2, 2, 4, 5, 3, 2, seed=13, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    scale = (torch.rand(3, 2, generator=gen, dtype=torch.float64) + 0.5).requires_grad_()
    shift = torch.randn(3, 2, generator=gen, dtype=torch.float64).requires_grad_()
    flags = dict(FULL, activation=activation)

    def fn(q, k, v, rq, rk, rv, s, b):
        if backend == "native":
            return tuple(ops.axial_attention_terms(q, k, v, rq, rk, rv, s, b, **flags))

        def norm(terms):
            return sum(t * s[i].view(1, -1, 1, 1) + b[i].view(1, -1, 1, 1)
                       for i, t in enumerate(terms))

        return axial_attention_reference(q, k, v, rq, rk, rv, similarity_norm=norm, **flags)

    assert torch.autograd.gradcheck(fn, (*tensors, scale, shift))


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_gradcheck_with_training_batch_norms(native, backend):
    """Through the batch statistics of both norms (the similarity moments included)."""
    tensors = _inputs(3, 2, 4, 4, 3, 2, seed=14, dtype=torch.float64)
    sim, out = (n.double() for n in _norms(2, 2, 3, 2, seed=7, training=True))

    def fn(*inputs):
        return ops.axial_attention(*inputs, similarity_norm=sim, output_norm=out,
                                   backend=backend, **FULL)

    assert torch.autograd.gradcheck(fn, tuple(tensors))


def test_similarity_moments_match_materialised_terms(native):
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(7, 3, 9, 5, generator=gen, dtype=torch.float64) * 2 + 3  # large means
    k = torch.randn(7, 3, 11, 5, generator=gen, dtype=torch.float64) - 2
    rq = torch.randn(9, 11, 5, generator=gen, dtype=torch.float64) + 1.5
    rk = torch.randn(9, 11, 5, generator=gen, dtype=torch.float64) - 0.7
    terms = [torch.einsum("bhld,bhmd->bhlm", q, k), torch.einsum("bhld,lmd->bhlm", q, rq),
             torch.einsum("bhmd,lmd->bhlm", k, rk)]
    var, mean = zip(*[torch.var_mean(t, dim=(0, 2, 3), correction=0) for t in terms])
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
        got_mean, got_var, count = ops.similarity_moments(
            *(t.to(dtype) for t in (q, k, rq, rk)))
        assert count == 7 * 9 * 11
        std = torch.stack(var).sqrt()
        assert ((got_mean.double() - torch.stack(mean)).abs() / std).max() < tol
        assert ((got_var.double() - torch.stack(var)).abs() / torch.stack(var)).max() < tol


def test_fused_normalize_sum_equals_normalize_sum():
    """Output, gradients (terms, weight, bias) and running statistics agree with the
    plain per-term norm, and each term's gradient is laid out like the term."""
    for training in (True, False):
        norm = _norms(3, 4, 3, 2, seed=0, training=training)[1]
        fused = copy.deepcopy(norm)
        gen = torch.Generator().manual_seed(1)
        storage = torch.randn(2, 50, 130, 3, 4, generator=gen)  # [R, B, L, H, dv]
        grad = torch.randn(50, 3, 130, 4, generator=gen)
        results = []
        for module, fn in ((fused, fused.fused_normalize_sum), (norm, norm.normalize_sum)):
            leaf = storage.clone().requires_grad_()
            terms = [t.transpose(1, 2) for t in leaf]  # [B, H, L, dv] views
            out = fn(terms)
            out.backward(grad)
            results.append((out, leaf.grad, module.weight.grad, module.bias.grad))
        for name, got, want in zip(("output", "term grads", "weight grad", "bias grad"),
                                   *results):
            _close(got, want, 1e-5, name)
        _close(fused.running_var, norm.running_var, 1e-6, "running_var")
        _close(fused.running_mean, norm.running_mean, 1e-6, "running_mean")
        assert fused.num_batches_tracked == norm.num_batches_tracked


def test_fused_normalize_sum_gradcheck():
    norm = _norms(3, 4, 3, 2, seed=0, training=True)[1].double()
    weight, bias = (p.detach().clone().requires_grad_() for p in (norm.weight, norm.bias))
    del norm.weight, norm.bias  # plain tensors from here on, so gradients reach the inputs
    gen = torch.Generator().manual_seed(2)
    storage = torch.randn(2, 3, 5, 3, 4, generator=gen, dtype=torch.float64)

    def fn(storage, weight, bias):
        norm.weight, norm.bias = weight, bias
        return norm.fused_normalize_sum([t.transpose(1, 2) for t in storage])

    assert torch.autograd.gradcheck(fn, (storage.requires_grad_(), weight, bias))


# --- torch.library / torch.compile / torch.export ----------------------------------------------

def _op_args(device: str = "cpu", dtype=torch.float64, *, grad: bool = True) -> tuple:
    tensors = _inputs(2, 3, 4, 5, 3, 2, seed=15, dtype=dtype, device=device)
    if not grad:
        tensors = [t.detach() for t in tensors]
    gen = torch.Generator().manual_seed(2)
    scale = torch.rand(3, 3, generator=gen, dtype=dtype).to(device).requires_grad_(grad)
    shift = torch.randn(3, 3, generator=gen, dtype=dtype).to(device).requires_grad_(grad)
    return (*tensors, scale, shift, True, True, "softmax")


def test_opcheck(native, devices):
    lib = torch.ops.deeplab_zoo
    for device in devices:
        args = _op_args(device)
        torch.library.opcheck(lib.axial_attention.default, args)
        content, rpe, stats = lib.axial_attention(*args)
        plain = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
        backward_args = (torch.randn_like(content), torch.randn_like(rpe), *plain[:8], stats,
                         *plain[8:])
        torch.library.opcheck(lib.axial_attention_backward.default, backward_args)
        # Optional encodings absent, sigmoid.
        q, k, v = args[:3]
        torch.library.opcheck(lib.axial_attention.default,
                              (q, k, v, None, None, None, args[6][:1], args[7][:1], True, True,
                               "sigmoid"))


def test_raw_op_rejects_bad_arguments(native):
    lib = torch.ops.deeplab_zoo
    q, k, v, rq, rk, rv, scale, shift, *flags = _op_args(grad=False)
    with pytest.raises(ValueError, match="similarity_scale"):
        lib.axial_attention(q, k, v, rq, rk, rv, scale[:2], shift, *flags)
    with pytest.raises(ValueError, match="query_rpe"):
        lib.axial_attention(q, k, v, rq[:, :2], rk, rv, scale, shift, *flags)
    with pytest.raises(ValueError, match="dtype"):
        lib.axial_attention(q, k.float(), v, rq, rk, rv, scale, shift, *flags)
    with pytest.raises(ValueError, match="float32 and float64"):
        lib.axial_attention(q.half(), k, v, rq, rk, rv, scale, shift, *flags)
    with pytest.raises(ValueError, match="activation"):
        lib.axial_attention(q, k, v, rq, rk, rv, scale, shift, True, True, "relu")
    with pytest.raises(ValueError, match="at least one similarity"):
        lib.axial_attention(q, k, v, None, None, rv, scale[:0], shift[:0], False, True,
                            "softmax")


def test_validation_errors_match_reference(native):
    q, k, v, rq, rk, rv = _inputs(2, 2, 3, 3, 2, 2, seed=0)
    cases = [(dict(use_content_similarity=False), (None, None, rv), "similarity"),
             (dict(retrieve_value_content=False), (rq, rk, None), "retrieve"),
             (dict(activation="relu"), (rq, rk, rv), "activation")]
    for kwargs, rpe, message in cases:
        for backend in ("native", "reference"):
            with pytest.raises(ValueError, match=message):
                ops.axial_attention(q, k, v, *rpe, backend=backend, **kwargs)
    with pytest.raises(ValueError, match="backend"):
        ops.axial_attention(q, k, v, backend="fast")


class _Layer(torch.nn.Module):
    def __init__(self, training_norms: bool):
        super().__init__()
        self.sim, self.out = _norms(3, 2, 3, 2, seed=3, training=training_norms)

    def forward(self, q, k, v, rq, rk, rv):
        return ops.axial_attention(q, k, v, rq, rk, rv, similarity_norm=self.sim,
                                   output_norm=self.out)


def test_torch_compile_and_export_trace_through_the_op(native):
    args = tuple(t.detach() for t in _inputs(2, 3, 4, 5, 3, 2, seed=16))
    module = _Layer(training_norms=False).eval()
    eager = module(*args)
    exported = torch.export.export(module, args)
    targets = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    assert "deeplab_zoo.axial_attention.default" in targets
    _close(exported.module()(*args), eager, 1e-6, "exported")
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True)
    _close(compiled(*args), eager, 1e-6, "compiled")


def test_torch_compile_forward_and_backward_in_training(native):
    module = _Layer(training_norms=True)
    reference = copy.deepcopy(module)
    inputs = _inputs(2, 3, 4, 5, 3, 2, seed=17)
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True)
    out = compiled(*inputs)
    grads = torch.autograd.grad(out.square().sum(), [t for t in inputs])
    plain = [t.detach().clone().requires_grad_() for t in inputs]
    expected = reference(*plain)
    expected_grads = torch.autograd.grad(expected.square().sum(), plain)
    _close(out, expected, 1e-6, "output")
    for a, b in zip(grads, expected_grads):
        _close(a, b, 1e-5, "gradient")


# --- the layers on the op, backend selection, fallback ----------------------------------------

def _missing_extension(monkeypatch) -> None:
    missing = _extension.ExtensionStatus(False, None, "native extension not built (test)")
    monkeypatch.setattr(_extension, "_status", missing)


def _layer_run(layer: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype
               ) -> list[torch.Tensor]:
    """Output, input gradient and parameter gradients (float64) of a copy of ``layer``."""
    layer = copy.deepcopy(layer).to(dtype)
    x = x.detach().to(dtype).requires_grad_()
    out = layer(x)
    out.square().sum().backward()
    return [t.detach().double() for t in (out, x.grad, *(p.grad for p in layer.parameters()))]


@pytest.mark.parametrize("training", [True, False])
def test_layers_run_the_op_and_are_as_accurate_as_the_reference(native, monkeypatch, training):
    """The layers (which call ops.axial_attention) on the native op vs on the reference:
    against the float64 reference, native float32 results are as close as the reference's
    own float32 results (these layer stacks amplify float32 rounding: the reference's input
    gradient of GlobalAttention2D in training is 1.4e-5 away from float64)."""
    torch.manual_seed(0)
    layers = [PositionSensitiveAxialAttention(6, axis="width", total_key_depth=8,
                                              total_value_depth=16, num_heads=2),
              AxialAttention2D(6, filters=8, num_heads=2, stride=2),
              GlobalAttention2D(6, filters=8, num_heads=2)]
    x = torch.randn(2, 6, 7, 9)
    for layer in layers:
        with torch.no_grad():  # non-trivial norm statistics
            for module in layer.modules():
                if hasattr(module, "running_var"):
                    module.running_var.uniform_(0.5, 3.0)
                    module.running_mean.normal_()
        layer.train(training)
        native_run = _layer_run(layer, x, torch.float32)
        with monkeypatch.context() as patch:
            _missing_extension(patch)
            assert ops.backend() == "reference"
            reference_run = _layer_run(layer, x, torch.float32)
            exact = _layer_run(layer, x, torch.float64)
        # output, input gradient, then all parameter gradients (relative to the largest)
        groups = [[0], [1], list(range(2, len(exact)))]
        for group in groups:
            scale = max(exact[i].abs().max().item() for i in group)
            ours = max((native_run[i] - exact[i]).abs().max().item() for i in group) / scale
            theirs = max((reference_run[i] - exact[i]).abs().max().item() for i in group) / scale
            assert ours <= 3 * theirs + 1e-6, (type(layer).__name__, group[0], ours, theirs)


def test_backend_selection(native):
    assert ops.backend() in ("native-cpu", "native-cuda")
    assert axial_ops.native_available("cpu")
    q, k, v, rq, rk, rv = _inputs(2, 2, 3, 3, 2, 2, seed=0)
    with pytest.raises(RuntimeError, match="CPU and CUDA tensors only"):
        ops.axial_attention(q.to("meta"), k.to("meta"), v.to("meta"), backend="native")
    with pytest.raises(RuntimeError, match="float32 and float64"):
        ops.axial_attention(q.half(), k.half(), v.half(), backend="native")
    # float16 with backend=None: the reference (which supports it).
    assert ops.axial_attention(q.half(), k.half(), v.half()).dtype == torch.float16

    def plain_sum(terms):
        return terms[0] + terms[1]

    with pytest.raises(RuntimeError, match="term_affine"):
        ops.axial_attention(q, k, v, rq, rk, rv, similarity_norm=plain_sum, backend="native")
    auto = ops.axial_attention(q, k, v, rq, rk, rv, similarity_norm=lambda t: sum(t))
    ref = axial_attention_reference(q, k, v, rq, rk, rv, similarity_norm=lambda t: sum(t))
    _close(auto, ref, 0.0, "callable similarity norm -> reference")


def test_fallback_without_extension(monkeypatch):
    _missing_extension(monkeypatch)
    assert ops.backend() == "reference"
    assert not axial_ops.native_available("cpu")
    q, k, v, rq, rk, rv = _inputs(2, 2, 3, 3, 2, 2, seed=0)
    out = ops.axial_attention(q, k, v, rq, rk, rv)
    _close(out, axial_attention_reference(q, k, v, rq, rk, rv), 0.0, "fallback")
    with pytest.raises(RuntimeError, match="not available: native extension not built"):
        ops.axial_attention(q, k, v, rq, rk, rv, backend="native")


# --- CUDA ----------------------------------------------------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_native_equals_reference(native):
    if not native.cuda:
        pytest.skip("extension built without CUDA kernels (rebuild on this machine)")
    for shape in [(6, 8, 17, 17, 16, 32), (3, 2, 13, 7, 5, 3), (2, 2, 200, 300, 8, 8)]:
        tensors = _inputs(*shape, seed=21)
        norms = _norms(shape[1], shape[5], 3, 2, seed=8, training=True)
        _compare(tensors, flags=FULL, norms=norms, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_gradcheck(native):
    if not native.cuda:
        pytest.skip("extension built without CUDA kernels (rebuild on this machine)")
    args = _op_args("cuda")
    assert torch.autograd.gradcheck(
        lambda *t: tuple(ops.axial_attention_terms(*t, **FULL)), args[:8])


def _cuda_root() -> Path | None:
    from deeplab_zoo.ops import build

    return build._cuda_root()


def test_cuda_kernels_compile(tmp_path):
    """Compile-only check of the CUDA kernels (no GPU needed)."""
    root = _cuda_root()
    if root is None:
        pytest.skip("nvcc / CUDA toolkit not found")
    source = _extension.CSRC_DIR / "axial_attention_cuda.cu"
    result = subprocess.run([str(root / "bin" / "nvcc"), str(source), "-std=c++17", "-O3",
                             "-I", str(_extension.CSRC_DIR), "-c", "-o",
                             str(tmp_path / "kernels.o"), "--fmad=false",
                             "-gencode=arch=compute_80,code=sm_80", "-Xcompiler", "-Wall",
                             "-Werror=all-warnings"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
