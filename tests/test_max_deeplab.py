"""MaX-DeepLab: dual-path layer, encoder (memory path, stacked decoder), meta-architecture,
registry entries (MaX-DeepLab, its backbones, kMaX axial-R50)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import deeplab_zoo
from deeplab_zoo.backbones.max_deeplab import (
    MAX_DEEPLAB_L,
    DualPathBlockGroup,
    MaXDeepLabEncoder,
    build_max_deeplab_encoder,
    plan_stacked_decoder,
)
from deeplab_zoo.backbones.resnet import plan_block_group
from deeplab_zoo.layers.dual_path_transformer import AttentionOperation, DualPathTransformerLayer
from deeplab_zoo.meta.max_deeplab import MaXDeepLab
from deeplab_zoo.registry import get_pretrained_cfg, list_models

RAW = {"semantic_logits", "pixel_space_normalized_feature", "pixel_space_mask_logits",
       "transformer_class_logits"}


@pytest.fixture(scope="module")
def max_s() -> MaXDeepLab:
    torch.manual_seed(0)
    return deeplab_zoo.create_model("max_deeplab_s", crop_size=(65, 65)).eval()


def _randomize_norms(module: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics / affine parameters (the defaults hide op-order bugs)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            for name in ("weight", "bias", "running_mean", "running_var"):
                t = getattr(m, name, None)
                if isinstance(m, (torch.nn.BatchNorm2d,)) or type(m).__name__ in (
                        "KerasAxesBatchNorm", "MultiAxisBatchNorm"):
                    if t is not None:
                        value = torch.rand(t.shape, generator=gen) * 0.5
                        t.copy_(value + (0.75 if name in ("weight", "running_var") else -0.25))


# --- registry ---------------------------------------------------------------------------

def test_registry_and_tags():
    assert {"max_deeplab_s", "max_deeplab_l"} <= set(list_models("max_deeplab_*"))
    assert {"max_deeplab_s_backbone", "max_deeplab_l_backbone",
            "panoptic_deeplab_max_deeplab_s_backbone_os16",
            "panoptic_deeplab_max_deeplab_l_backbone_os16",
            "kmax_deeplab_axial_r50"} <= set(list_models())
    default = get_pretrained_cfg("max_deeplab_s")
    assert default.tag == "coco" and default.crop_size == (641, 641)
    assert default.url.endswith("max_deeplab_s_os16_res641_400k_coco_train.tar.gz")
    assert default.metrics == {"pq": 47.0, "pq_thing": 51.3, "pq_stuff": 40.5}
    assert default.model_args["postprocess"] == {"thing_area_limit": 100, "stuff_area_limit": 1600}
    for steps in (100, 200, 400):
        for res in (641, 1025):
            cfg = get_pretrained_cfg(f"max_deeplab_s.coco_res{res}_{steps}k")
            assert cfg.crop_size == (res, res) and cfg.dataset == "coco"
            assert cfg.url.endswith(f"max_deeplab_s_os16_res{res}_{steps}k_coco_train.tar.gz")
        large = get_pretrained_cfg(f"max_deeplab_l.coco_res1025_{steps}k")
        assert large.model_args["postprocess"] == {"thing_area_limit": 256,
                                                   "stuff_area_limit": 4096}
    assert get_pretrained_cfg("max_deeplab_l").metrics["pq"] == 51.3
    backbone = get_pretrained_cfg("panoptic_deeplab_max_deeplab_l_backbone_os16")
    assert backbone.url.endswith("max_deeplab_l_backbone_os16_axial_deeplab_cityscapes_trainfine"
                                 ".tar.gz")
    assert backbone.metrics == {"pq": 66.3, "miou": 83.1, "ap": 38.09}
    kmax = get_pretrained_cfg("kmax_deeplab_axial_r50.coco")
    assert kmax.url.endswith("kmax_maxs_gelu_coco_train.tar.gz") and kmax.metrics["pq"] == 56.2
    assert get_pretrained_cfg("kmax_deeplab_axial_r50").url.endswith(
        "kmax_maxs_gelu_cityscapes_train.tar.gz")


# --- decoder schedule -------------------------------------------------------------------

def test_decoder_plan_max_s():
    plan = plan_stacked_decoder(output_stride=16, high_resolution_output_stride=4,
                                backbone_decoder_num_stacks=0, extra_decoder_num_stacks=0,
                                classification_mode=False)
    assert [(s.number, s.stride, s.original_resnet_input_stride) for s in plan] == \
        [(1, 8, 8), (2, 4, 4)]
    assert all(s.extra_group and not s.backbone_group for s in plan)
    assert plan[-1].high_resolution and plan[0].fuse_name == "decoder_stage1_extra_resized_fuse"
    assert plan_stacked_decoder(output_stride=16, high_resolution_output_stride=4,
                                backbone_decoder_num_stacks=0, extra_decoder_num_stacks=0,
                                classification_mode=True) == []


def test_decoder_plan_max_l():
    plan = plan_stacked_decoder(output_stride=16, high_resolution_output_stride=4,
                                backbone_decoder_num_stacks=1, extra_decoder_num_stacks=1,
                                classification_mode=False)
    assert [s.stride for s in plan] == [8, 4, 8, 16, 8, 4, 8, 16, 8, 4]
    assert [s.number for s in plan if s.backbone_group] == [1, 2, 3, 4]
    assert [s.number for s in plan if s.extra_group] == [4, 5, 6, 7, 8, 9, 10]
    assert [s.number for s in plan if s.completes_backbone] == [4]
    assert [s.number for s in plan if s.high_resolution] == [2, 6, 10]
    assert [s.original_resnet_input_stride for s in plan][3] == 32
    backbone = plan_stacked_decoder(output_stride=16, high_resolution_output_stride=4,
                                    backbone_decoder_num_stacks=1, extra_decoder_num_stacks=1,
                                    classification_mode=True)
    assert [s.number for s in backbone] == [1, 2, 3, 4]
    assert not any(s.extra_group or s.high_resolution for s in backbone)


# --- dual-path layer ------------------------------------------------------------------------

def test_attention_operation_matches_naive():
    torch.manual_seed(0)
    op = AttentionOperation(4, 8).eval()
    _randomize_norms(op)
    q, k, v = torch.randn(2, 4, 5, 6), torch.randn(2, 4, 7, 6), torch.randn(2, 4, 7, 8)
    with torch.no_grad():
        out = op(q, k, v)
        bn = op.batch_norm_similarity
        logits = (q @ k.transpose(-1, -2) - bn.running_mean.view(1, 4, 1, 1)) / torch.sqrt(
            bn.running_var.view(1, 4, 1, 1) + bn.eps) * bn.weight.view(1, 4, 1, 1) + \
            bn.bias.view(1, 4, 1, 1)
        retrieved = torch.softmax(logits, -1) @ v  # [2, 4, 5, 8]
        bn = op.batch_norm_retrieved_value
        retrieved = (retrieved - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * \
            bn.weight + bn.bias
        expected = torch.relu(retrieved).permute(0, 1, 3, 2).reshape(2, 32, 5)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_dual_path_layer_is_identity_on_pixels_at_init():
    torch.manual_seed(0)
    layer = DualPathTransformerLayer(32, 16, filters=16, feed_forward_network_channels=24).eval()
    pixel, memory = torch.randn(2, 32, 5, 7), torch.randn(2, 16, 10)
    with torch.no_grad():
        new_pixel, new_memory = layer(pixel, memory)
    # Residual branches end in zero-gamma batch norms (DeepLab2's initialisation).
    torch.testing.assert_close(new_pixel, pixel)
    torch.testing.assert_close(new_memory, torch.relu(memory))


def test_dual_path_layer_variants_and_gradients():
    torch.manual_seed(0)
    layer = DualPathTransformerLayer(32, 16, filters=16, feed_forward_network_channels=0,
                                     use_pixel2memory_feedback_attention=False,
                                     use_memory_self_attention=False)
    names = {n.split(".")[0] for n, _ in layer.named_parameters()}
    assert "memory_query_conv_bn" in names and "pixel_kv_conv_bn" in names
    assert not {"memory_qkv_conv_bn", "pixel_qkv_conv_bn", "pixel_conv3_bn",
                "memory_ffn_conv1_bn_act"} & names
    _randomize_norms(layer)
    pixel, memory = torch.randn(2, 32, 3, 4), torch.randn(2, 16, 6, requires_grad=True)
    new_pixel, new_memory = layer(pixel, memory)
    assert torch.equal(new_pixel, pixel) and new_memory.shape == (2, 16, 6)
    new_memory.sum().backward()
    assert memory.grad is not None
    with pytest.raises(ValueError, match="num_heads"):
        DualPathTransformerLayer(32, 16, filters=12)


def test_dual_path_group_needs_memory():
    specs = plan_block_group(filters=8, num_blocks=2, original_resnet_stride=1,
                             original_resnet_input_stride=32, output_stride=16,
                             backbone_type="resnet_beta")
    group = DualPathBlockGroup(32, specs, transformer_filters=16, memory_channels=16)
    assert group.transformer_names == {"block1": "block1_transformer",
                                       "block2": "block2_transformer"}
    with pytest.raises(ValueError, match="memory"):
        group(torch.randn(1, 32, 3, 3))
    x, memory = group.eval()(torch.randn(1, 32, 3, 3), torch.randn(1, 16, 4))
    assert x.shape == (1, 32, 3, 3) and memory.shape == (1, 16, 4)


# --- encoder ------------------------------------------------------------------------------

def test_small_max_l_encoder_endpoints():
    """MaX-L's layout (stacked decoders, transformers from stride 16) at a small width."""
    torch.manual_seed(0)
    encoder = build_max_deeplab_encoder(
        MAX_DEEPLAB_L, width_multiplier=0.125, stem_width_multiplier=0.25,
        memory_channels=32, global_feed_forward_network_channels=24, num_mask_slots=5,
        max_num_mask_slots=7, transformer_config={"feed_forward_network_channels": 16},
        base_transformer_expansion=0.25).eval()
    assert isinstance(encoder, MaXDeepLabEncoder)
    assert encoder.stage5_extra is None
    assert "decoder_stage4" in encoder._modules and "decoder_stage4_extra" in encoder._modules
    assert encoder.decoder_stage4.transformer_names and encoder.stage4.transformer_names
    assert not encoder.decoder_stage5_extra.transformer_names  # stride 8
    with torch.no_grad():
        endpoints = encoder(torch.randn(2, 3, 33, 33))
    assert endpoints["transformer_class_feature"].shape == (2, 24, 5)
    assert endpoints["feature_panoptic"].shape == (2, 32, 9, 9)  # stride 4, 4 * 64 / 8 ch
    assert endpoints["feature_semantic"].shape == (2, 32, 9, 9)
    assert endpoints["backbone_output"].shape == (2, 256, 3, 3)  # after decoder_stage4
    assert not torch.equal(endpoints["feature_semantic"], endpoints["feature_panoptic"])
    assert (endpoints["feature_panoptic"] >= 0).all()  # activated, as DeepLab2's


def test_max_l_backbone_on_meta_device():
    with torch.device("meta"):
        backbone = deeplab_zoo.create_model("max_deeplab_l_backbone")
    assert backbone.memory_feature is None and backbone.class_feature_extra is None
    assert [s.number for s in backbone.decoder_plan] == [1, 2, 3, 4]
    assert backbone.decoder_stage3_resized_fuse.kinds == ("strided", "identity", "identity")
    assert [spec.endpoint for spec in backbone.feature_specs] == [f"res{i}" for i in range(1, 6)]


def test_crop_size_checks_attention_span():
    with torch.device("meta"):
        deeplab_zoo.create_model("max_deeplab_s", crop_size=(2049, 2049))
        with pytest.raises(NotImplementedError, match="query_shape"):
            deeplab_zoo.create_model("max_deeplab_s", crop_size=(2081, 65))
        with pytest.raises(NotImplementedError, match="query_shape"):
            deeplab_zoo.create_model("max_deeplab_s_backbone", crop_size=(65, 2081))


# --- meta-architecture -------------------------------------------------------------------

def test_max_s_outputs(max_s):
    assert max_s.config.crop_size == (65, 65)
    assert max_s.predictor.has_semantic_decoder
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        out = max_s(x)
    assert set(out) == RAW
    assert out["semantic_logits"].shape == (1, 134, 17, 17)  # auxiliary decoder, stride 4
    assert out["pixel_space_normalized_feature"].shape == (1, 128, 17, 17)
    assert out["pixel_space_mask_logits"].shape == (1, 128, 17, 17)
    assert out["transformer_class_logits"].shape == (1, 128, 134)
    norms = out["pixel_space_normalized_feature"].norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))
    maps = max_s.postprocess(out)
    for key in ("panoptic_pred", "semantic_pred", "instance_pred"):
        assert maps[key].shape == (1, 65, 65) and maps[key].dtype == torch.int32
    assert max_s.postprocess(out, output_size=(30, 40))["panoptic_pred"].shape == (1, 30, 40)
    assert max_s.postprocess_config.mode == "pixelwise"
    assert max_s.postprocess_config.thing_area_limit == 100


def test_max_s_memory_is_per_batch_and_trainable(max_s):
    max_s.train()
    try:
        out = max_s(torch.randn(2, 3, 33, 33))
    finally:
        max_s.eval()
    assert out["transformer_class_logits"].shape == (2, 128, 134)
    out["transformer_class_logits"].sum().backward()
    assert max_s.encoder.memory_feature.grad is not None
    max_s.zero_grad(set_to_none=True)


def test_predict_any_size(max_s):
    image = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    prediction = max_s.predict(image)
    assert prediction.panoptic.shape == (50, 70) and prediction.semantic.shape == (50, 70)
    assert prediction.label_divisor == 256


def test_trace(max_s):
    x = torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        traced = torch.jit.trace(max_s, x, strict=False, check_trace=False)
        expected = max_s(x)
        got = traced(x)
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value)


def test_tags_set_postprocessing():
    with torch.device("meta"):
        model = deeplab_zoo.create_model("max_deeplab_s.coco_res1025_100k")
    assert model.config.crop_size == (1025, 1025)
    assert model.postprocess_config.stuff_area_limit == 4096
    assert model.encoder.decoder_stage1_extra.block1.drop_path.keep_prob == 1.0  # stride 8
    # Linear schedule by the block's input stride (DeepLab2): 16 -> 0.85, then 32 -> 0.8.
    assert model.encoder.stage5.block1_transformer.drop_path_ffn.keep_prob == \
        pytest.approx(0.85)
    assert model.encoder.stage5.block2_transformer.drop_path_ffn.keep_prob == pytest.approx(0.8)


@pytest.mark.slow
def test_max_l_forward():
    torch.manual_seed(0)
    model = deeplab_zoo.create_model("max_deeplab_l", crop_size=(33, 33)).eval()
    assert not model.predictor.has_semantic_decoder  # semantic feature already at stride 4
    with torch.no_grad():
        out = model(torch.randn(1, 3, 33, 33))
    assert out["semantic_logits"].shape == (1, 134, 9, 9)
    assert out["transformer_class_logits"].shape == (1, 128, 134)
