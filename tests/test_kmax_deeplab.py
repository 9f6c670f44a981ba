"""kMaX-DeepLab meta-architecture: outputs, dataset rules, crop size, predict, registry."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import deeplab_zoo
from deeplab_zoo.meta.kmax_deeplab import KMaXDeepLab, dataset_settings
from deeplab_zoo.registry import get_pretrained_cfg, list_models

ARCHS = ["kmax_deeplab_r50", "kmax_deeplab_convnext_tiny", "kmax_deeplab_convnext_small",
         "kmax_deeplab_convnext_base", "kmax_deeplab_convnext_large"]


@pytest.fixture(scope="module")
def cityscapes_r50() -> KMaXDeepLab:
    torch.manual_seed(0)
    return deeplab_zoo.create_model("kmax_deeplab_r50", crop_size=(65, 65)).eval()


def test_registry_and_tags():
    assert set(ARCHS) <= set(list_models("kmax_deeplab_*"))
    for arch in ARCHS:
        for tag in ("cityscapes", "coco", "ade20k"):
            cfg = get_pretrained_cfg(f"{arch}.{tag}")
            assert cfg.dataset == tag and cfg.crop_size is not None
    assert get_pretrained_cfg("kmax_deeplab_r50.cityscapes").url.endswith(
        "kmax_resnet50_cityscapes_train.tar.gz")
    assert get_pretrained_cfg("kmax_deeplab_convnext_large.ade20k_res1281").crop_size == \
        (1281, 1281)
    assert not get_pretrained_cfg("kmax_deeplab_convnext_tiny.ade20k").has_weights


def test_dataset_settings():
    assert dataset_settings("cityscapes")["num_mask_slots"] == 256
    assert dataset_settings("coco") == {"high_resolution_output_stride": 4,
                                        "num_mask_slots": 128,
                                        "use_auxiliary_semantic_decoder": True,
                                        "transformer_decoder_drop_path_keep_prob": 0.8}
    assert dataset_settings("ade20k")["transformer_decoder_drop_path_keep_prob"] == 1.0


def test_cityscapes_outputs(cityscapes_r50):
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        out = cityscapes_r50(x)
    assert set(out) == {"semantic_logits", "pixel_space_normalized_feature",
                        "pixel_space_mask_logits", "transformer_class_logits"}
    assert out["semantic_logits"].shape == (1, 19, 3, 3)  # on stage5, stride 32
    assert out["pixel_space_normalized_feature"].shape == (1, 128, 33, 33)  # stride 2
    assert out["pixel_space_mask_logits"].shape == (1, 256, 33, 33)
    assert out["transformer_class_logits"].shape == (1, 256, 20)
    norms = out["pixel_space_normalized_feature"].norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))
    maps = cityscapes_r50.postprocess(out)
    for key in ("panoptic_pred", "semantic_pred", "instance_pred"):
        assert maps[key].shape == (1, 65, 65) and maps[key].dtype == torch.int32
    assert maps["instance_scores"].shape == (1, 65, 65)
    assert cityscapes_r50.postprocess(out, output_size=(40, 30))["panoptic_pred"].shape == \
        (1, 40, 30)


def test_training_mode_returns_auxiliary_outputs(cityscapes_r50):
    cityscapes_r50.train()
    try:
        out = cityscapes_r50(torch.randn(2, 3, 33, 33))
    finally:
        cityscapes_r50.eval()
    aux = out["auxiliary_outputs"]
    assert len(aux) == 6
    assert aux[0]["pixel_space_mask_logits"].shape == (2, 256, 2, 2)  # stride-32 layer
    assert aux[-1]["pixel_space_mask_logits"].shape == (2, 256, 5, 5)  # stride-8 layer
    out["transformer_class_logits"].sum().backward()
    assert cityscapes_r50.transformer_decoder.cluster_centers.grad is not None
    cityscapes_r50.zero_grad(set_to_none=True)


def test_coco_layout():
    torch.manual_seed(0)
    model = deeplab_zoo.create_model("kmax_deeplab_convnext_tiny.coco", crop_size=(65, 65))
    assert model.transformer_decoder.num_mask_slots == 128
    assert model.predictor.has_semantic_decoder and model.mask_output_stride == 4
    assert len(model.pixel_decoder.stages) == 4
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 65, 65))
    assert out["semantic_logits"].shape == (1, 134, 17, 17)  # auxiliary decoder, stride 4
    assert out["pixel_space_mask_logits"].shape == (1, 128, 17, 17)
    assert out["transformer_class_logits"].shape == (1, 128, 134)  # void is class 0


def test_crop_size_only_changes_degenerate_fusions():
    with torch.device("meta"):
        normal = deeplab_zoo.create_model("kmax_deeplab_r50", crop_size=(1025, 2049))
        tiny = deeplab_zoo.create_model("kmax_deeplab_r50", crop_size=(9, 9))
    assert normal.config.crop_size == (1025, 2049)
    assert [f.kinds for f in normal.pixel_decoder.skip_connections] == [("resized",) * 2] * 4
    # Stride-16 / 32 maps of a 9x9 crop are 1x1: DeepLab2 uses strided 1x1 convs there.
    assert tiny.pixel_decoder.skip_connections[0].kinds == ("strided", "strided")
    keys = set(tiny.state_dict())
    assert "pixel_decoder.skip_connections.0.strided_conv_bn1.conv.weight" in keys
    assert sum(p.numel() for p in tiny.parameters()) == \
        sum(p.numel() for p in normal.parameters())


def test_predict_any_size(cityscapes_r50):
    image = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    prediction = cityscapes_r50.predict(image)
    assert prediction.panoptic.shape == (50, 70) and prediction.semantic.shape == (50, 70)
    assert prediction.instance.shape == (50, 70)
    assert prediction.label_divisor == 1000


def test_trace(cityscapes_r50):
    x = torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        traced = torch.jit.trace(cityscapes_r50, x, strict=False, check_trace=False)
        expected = cityscapes_r50(x)
        got = traced(x)
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value)
