"""Axial attention: relative positions, DeepLab2's math (independent float64 loop
implementation), batch norm placement, strides, input sizes, tracing, attention blocks
and the Axial-ResNet backbones (feature_info, features_only, crop-size check)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import deeplab_zoo
from deeplab_zoo.backbones.axial_resnet import axial_resnet_s, check_input_size
from deeplab_zoo.backbones.resnet import BLOCK_TYPES
from deeplab_zoo.layers.attention_blocks import AxialBlock, GlobalBlock
from deeplab_zoo.layers.axial_attention import (
    AxialAttention2D,
    GlobalAttention2D,
    MultiAxisBatchNorm,
    PositionSensitiveAxialAttention,
)
from deeplab_zoo.layers.conv import batch_norm
from deeplab_zoo.layers.positional_encodings import (
    MAX_SPAN,
    RelativePositionalEncoding,
    relative_distance_index,
)

EPS = 1e-3


# ---------------------------------------------------------------------------------------
# Relative positional encodings


def test_relative_distance_index_global():
    index = relative_distance_index(5, 5)
    expected = np.arange(5)[None, :] - np.arange(5)[:, None] + MAX_SPAN - 1
    assert np.array_equal(index.numpy(), expected)


def test_relative_distance_index_with_flange_and_clip():
    # Keys centred on queries: flange 2 -> query i sits at key i + 2.
    index = relative_distance_index(3, 7).numpy()
    assert index[0, 2] == MAX_SPAN - 1 and index[2, 4] == MAX_SPAN - 1
    # Beyond MAX_SPAN the offsets clip to the table's first / last row (DeepLab2 warns).
    long = relative_distance_index(300, 300).numpy()
    assert long.min() == 0 and long.max() == 2 * MAX_SPAN - 2
    assert long[0, 299] == 2 * MAX_SPAN - 2 and long[299, 0] == 0
    with pytest.raises(ValueError):
        relative_distance_index(3, 6)


def test_relative_encoding_table_size_is_crop_independent():
    rpe = RelativePositionalEncoding(16)
    assert tuple(rpe.weight.shape) == (2 * 255 - 1, 16)
    assert tuple(rpe(7).shape) == (7, 7, 16)
    assert tuple(rpe(129).shape) == (129, 129, 16)


# ---------------------------------------------------------------------------------------
# Independent float64 implementation of DeepLab2's AxialAttention (per head, per sequence)


def _bn(x, mean, var, gamma, beta):
    return (x - mean) / np.sqrt(var + EPS) * gamma + beta


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _naive_axial_1d(seq: np.ndarray, layer: PositionSensitiveAxialAttention) -> np.ndarray:
    """``seq`` [L, C] -> [L, value_depth]: DeepLab2 ``AxialAttention.call`` for one sequence."""
    length = seq.shape[0]
    bn = layer.batch_norm_qkv
    qkv = _bn(seq @ _np(layer.qkv_kernel), _np(bn.running_mean), _np(bn.running_var),
              _np(bn.weight), _np(bn.bias))
    kd, vd, heads = layer.total_key_depth, layer.total_value_depth, layer.num_heads
    dk, dv = kd // heads, vd // heads
    q, k, v = qkv[:, :kd], qkv[:, kd:2 * kd], qkv[:, 2 * kd:]
    rel = np.array([[key - query + MAX_SPAN - 1 for key in range(length)]
                    for query in range(length)])
    sbn, obn = layer.batch_norm_similarity, layer.batch_norm_retrieved_output
    out = np.zeros((length, vd))
    for h in range(heads):
        qh, kh, vh = q[:, h * dk:(h + 1) * dk], k[:, h * dk:(h + 1) * dk], v[:, h * dv:(h + 1) * dv]
        terms = []
        if layer.use_content_similarity:
            terms.append(qh @ kh.T)
        if layer.query_rpe is not None:
            table = _np(layer.query_rpe.weight)
            terms.append(np.einsum("ld,lmd->lm", qh, table[rel]))
        if layer.key_rpe is not None:
            table = _np(layer.key_rpe.weight)
            terms.append(np.einsum("md,lmd->lm", kh, table[rel]))
        logits = sum(_bn(term, _np(sbn.running_mean)[t, 0, h, 0, 0],
                         _np(sbn.running_var)[t, 0, h, 0, 0], _np(sbn.weight)[t, 0, h, 0, 0],
                         _np(sbn.bias)[t, 0, h, 0, 0]) for t, term in enumerate(terms))
        weights = np.exp(logits - logits.max(1, keepdims=True))
        weights /= weights.sum(1, keepdims=True)
        retrieved = []
        if layer.retrieve_value_content:
            retrieved.append(weights @ vh)
        if layer.value_rpe is not None:
            table = _np(layer.value_rpe.weight)
            retrieved.append(np.einsum("lm,lmd->ld", weights, table[rel]))
        out[:, h * dv:(h + 1) * dv] = sum(
            _bn(r, _np(obn.running_mean)[t, 0, h, 0], _np(obn.running_var)[t, 0, h, 0],
                _np(obn.weight)[t, 0, h, 0], _np(obn.bias)[t, 0, h, 0])
            for t, r in enumerate(retrieved))
    return out


def _randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random (well-conditioned) parameters and batch-norm statistics, float64, eval."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith(("running_var", "batch_norm_qkv.weight")) or (
                    name.endswith("weight") and "batch_norm" in name):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
            else:
                tensor.copy_(0.3 * torch.randn(tensor.shape, generator=gen))
    return module.double().eval()


def _layer(axis: str = "height", **kwargs) -> PositionSensitiveAxialAttention:
    args = dict(total_key_depth=8, total_value_depth=16, num_heads=2,
                norm_layer=batch_norm(EPS))
    args.update(kwargs)
    return _randomize(PositionSensitiveAxialAttention(6, axis=axis, **args))


@pytest.mark.parametrize("axis", ["height", "width"])
@pytest.mark.parametrize("flags", [
    {},
    {"use_content_similarity": False},
    {"use_query_rpe_similarity": False, "retrieve_value_content": False},
    {"use_key_rpe_similarity": False, "retrieve_value_rpe": False},
])
def test_axial_attention_matches_deeplab2_math(axis, flags):
    layer = _layer(axis, **flags)
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    with torch.no_grad():
        ours = layer(x).numpy()
    assert ours.shape == (2, 16, 5, 7)
    xn = x.numpy()
    for n in range(2):
        if axis == "height":
            for w in range(7):
                ref = _naive_axial_1d(xn[n, :, :, w].T, layer)
                np.testing.assert_allclose(ours[n, :, :, w], ref.T, rtol=1e-10, atol=1e-10)
        else:
            for h in range(5):
                ref = _naive_axial_1d(xn[n, :, h, :].T, layer)
                np.testing.assert_allclose(ours[n, :, h, :], ref.T, rtol=1e-10, atol=1e-10)


def test_batch_norm_parameter_shapes_follow_deeplab2():
    layer = PositionSensitiveAxialAttention(2048, total_key_depth=1024, total_value_depth=2048)
    shapes = {k: tuple(v.shape) for k, v in layer.state_dict().items()}
    assert shapes["qkv_kernel"] == (2048, 4096)
    assert shapes["batch_norm_qkv.weight"] == (4096,)
    assert shapes["batch_norm_similarity.running_var"] == (3, 1, 8, 1, 1)
    assert shapes["batch_norm_retrieved_output.bias"] == (2, 1, 8, 1, 256)
    assert shapes["query_rpe.weight"] == (509, 128)
    assert shapes["value_rpe.weight"] == (509, 256)
    # eps / momentum come from the norm layer factory.
    custom = PositionSensitiveAxialAttention(8, total_key_depth=8, total_value_depth=8,
                                             norm_layer=batch_norm(1e-5, 0.9))
    assert custom.batch_norm_similarity.eps == 1e-5
    assert custom.batch_norm_similarity.momentum == pytest.approx(0.1)


def test_axial_attention_2d_height_then_width_with_stride():
    attention = _randomize(AxialAttention2D(6, filters=8, stride=2, key_expansion=1,
                                            value_expansion=2, num_heads=2,
                                            norm_layer=batch_norm(EPS)))
    x = torch.randn(1, 6, 7, 9, dtype=torch.float64)
    with torch.no_grad():
        ours = attention(x)
        expected = attention.height_axis(x)[:, :, ::2]
        expected = attention.width_axis(expected)[:, :, :, ::2]
    assert ours.shape == (1, 16, 4, 5)
    assert torch.equal(ours, expected)


def test_global_attention_is_content_attention_over_all_positions():
    attention = _randomize(GlobalAttention2D(6, filters=8, num_heads=2,
                                             double_global_attention=True,
                                             norm_layer=batch_norm(EPS)))
    keys = set(attention.state_dict())
    assert "global.qkv_kernel" in keys and "global2.qkv_kernel" in keys
    assert not any("rpe" in k for k in keys)
    assert tuple(attention.state_dict()["global.batch_norm_similarity.weight"].shape) == (
        1, 1, 2, 1, 1)
    x = torch.randn(1, 6, 3, 4, dtype=torch.float64)
    with torch.no_grad():
        ours = attention(x).numpy()
    seq = x.numpy()[0].reshape(6, 12).T  # row-major flattened positions
    first = _naive_axial_1d(seq, attention._modules["global"])
    ref = _naive_axial_1d(first, attention._modules["global2"])
    np.testing.assert_allclose(ours[0].reshape(16, 12), ref.T, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError):
        GlobalAttention2D(6, filters=8, use_query_rpe_similarity=True)


def test_multi_axis_batch_norm_training_statistics():
    norm = MultiAxisBatchNorm((2, 1, 3, 1, 1), eps=EPS, momentum=0.1)
    terms = [torch.randn(4, 3, 5, 6) * 3 + 1, torch.randn(4, 3, 5, 6)]
    out = norm.normalize_sum(terms)
    # Each term normalised per head over (batch, L, M), then summed.
    expected = sum((t - t.mean((0, 2, 3), keepdim=True))
                   / torch.sqrt(t.var((0, 2, 3), unbiased=False, keepdim=True) + EPS)
                   for t in terms)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(norm.running_mean[0].flatten(),
                               0.1 * terms[0].mean((0, 2, 3)), rtol=1e-5, atol=1e-6)
    assert int(norm.num_batches_tracked) == 1
    norm.eval()
    stacked = torch.stack(terms)
    torch.testing.assert_close(norm(stacked).sum(0), norm.normalize_sum(terms))


def test_any_input_size_up_to_query_shape():
    layer = _layer("width", query_shape=9)
    for size in ((3, 4), (5, 9), (1, 1)):
        x = torch.randn(1, 6, *size, dtype=torch.float64)
        assert layer(x).shape == (1, 16, *size)
    with pytest.raises(NotImplementedError, match="local attention"):
        layer(torch.randn(1, 6, 3, 10, dtype=torch.float64))
    unlimited = _layer("width", query_shape=None)
    assert unlimited(torch.randn(1, 6, 2, 300, dtype=torch.float64)).shape == (1, 16, 2, 300)


def test_attention_exports():
    # No data-dependent Python branches: torch.export captures the whole forward.
    attention = AxialAttention2D(8, filters=8, num_heads=2).eval()
    x = torch.randn(1, 8, 5, 6)
    with torch.no_grad():
        exported = torch.export.export(attention, (x,)).module()
        torch.testing.assert_close(exported(x), attention(x))


# ---------------------------------------------------------------------------------------
# Attention blocks and backbones


def test_attention_blocks_are_registered():
    assert BLOCK_TYPES["axial"] is AxialBlock
    assert BLOCK_TYPES["global"] is GlobalBlock


@pytest.mark.parametrize("block_cls", [AxialBlock, GlobalBlock])
def test_attention_block_structure(block_cls):
    block = block_cls(16, (32, 8, 64), stride=2, atrous_rate=2, num_heads=2).eval()
    names = {k.split(".")[0] for k in block.state_dict()}
    assert names == {"conv1_bn_act", "attention", "conv3_bn", "shortcut"}
    assert float(block.conv3_bn.batch_norm.weight.detach().abs().max()) == 0.0  # zero-init gamma
    assert block(torch.randn(1, 16, 7, 9)).shape == (1, 64, 4, 5)
    with pytest.raises(ValueError):
        AxialBlock(16, (32, 8, 64), double_global_attention=True)


@pytest.fixture(scope="module")
def axial_s():
    return deeplab_zoo.create_model("axial_resnet_s").eval()


def test_axial_resnet_s_feature_info(axial_s):
    info = axial_s.feature_info
    assert info.endpoints() == ["res1", "res2", "res3", "res4", "res5"]
    assert info.channels() == [64, 128, 256, 512, 1024]
    assert info.reduction() == [2, 4, 8, 16, 32]
    # Every block of every stage is an axial block.
    blocks = [getattr(getattr(axial_s, s), b) for s in axial_s.stage_names
              for b in getattr(axial_s, s).block_names]
    assert len(blocks) == 16 and all(isinstance(b, AxialBlock) for b in blocks)


def test_axial_resnet_s_features_only():
    model = deeplab_zoo.create_model("axial_resnet_s", features_only=True,
                                     out_indices=(1, 2, 3, 4)).eval()
    assert model.feature_info.channels() == [128, 256, 512, 1024]
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    with torch.no_grad():
        features = model(torch.randn(1, 3, 65, 97))
    assert [tuple(f.shape) for f in features] == [
        (1, 128, 17, 25), (1, 256, 9, 13), (1, 512, 5, 7), (1, 1024, 3, 4)]


def test_axial_resnet_crop_size_check(axial_s):
    # Attention starts at stride 2: 257 px -> 129 (global), 259 px -> 130 (local: DeepLab2
    # raises NotImplementedError when building for that crop).
    check_input_size(axial_s, (257, 257))
    with pytest.raises(NotImplementedError):
        check_input_size(axial_s, (259, 200))
    with pytest.raises(NotImplementedError):
        axial_resnet_s(crop_size=(513, 513))


def test_axial_swidernet_blocks():
    with torch.device("meta"):
        model = deeplab_zoo.create_model("axial_swidernet_1_1_1", output_stride=16)
    kinds = {s: [type(getattr(getattr(model, s), b)).__name__
                 for b in getattr(model, s).block_names] for s in model.stage_names}
    assert kinds["stage4"] == ["BasicBlock", "AxialBlock", "AxialBlock"]
    assert kinds["stage5"] == ["AxialBlock"] * 3
    attention = model.stage5.block1.attention.height_axis
    assert (attention.total_key_depth, attention.total_value_depth) == (1024, 2048)
    check_input_size(model, (1025, 2049))  # 65 x 129 at stride 16: global
    with pytest.raises(NotImplementedError):
        check_input_size(model, (1025, 2081))
