"""``predict(..., scales, flip)``: research/deeplab's multi-scale / flipped evaluation.

``model.predict_labels_multi_scale`` (what ``eval.py`` runs for ``eval_scales != [1.0]``):
per scale the image is resized to ``scale_dimension(crop, s)``, the logits are resized to
the stride-4 (or OS) size of ``max(1, s)``, then to the image size, and soft-maxed; the
probabilities of all scales and left-right flips are averaged, then argmax.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deeplab_zoo import create_model
from deeplab_zoo.inference import Prediction
from deeplab_zoo.layers.resize import resize_align_corners, scale_dimension


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    """A small DeepLabv3+ (MobileNetV2 + decoder) with random but non-trivial weights."""
    torch.manual_seed(0)
    net = create_model("deeplabv3plus_mobilenet_v2.ade20k", num_classes=5, crop_size=(49, 57))
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.rand(1, 3, 49, 57, generator=torch.Generator().manual_seed(1)) * 2 - 1


def _reference(model, x, scales, flip):
    """research/deeplab's predict_labels_multi_scale written out."""
    height, width = x.shape[-2:]
    probs = []
    for s in scales:
        image = x if s == 1.0 else resize_align_corners(
            x, (scale_dimension(height, s), scale_dimension(width, s)))
        target = [scale_dimension(v, max(1.0, s) / 4) for v in (height, width)]
        for flipped in (False, True) if flip else (False,):
            logits = model.decoder(model.encoder(image.flip(-1) if flipped else image))
            logits = resize_align_corners(logits["semantic_logits"], target)
            logits = resize_align_corners(logits.flip(-1) if flipped else logits,
                                          (height, width))
            probs.append(F.softmax(logits, 1))
    return torch.stack(probs).mean(0)


def test_single_scale_is_softmax_of_forward(model, x):
    with torch.no_grad():
        probs = model.tta_probabilities(x)
        expected = F.softmax(model(x)["semantic_logits"], 1)
    torch.testing.assert_close(probs, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("scales,flip", [((1.0,), True), ((0.5, 1.0, 1.5), False),
                                         ((0.75, 1.25), True)])
def test_matches_written_out_reference(model, x, scales, flip):
    with torch.no_grad():
        probs = model.tta_probabilities(x, scales, flip)
    assert probs.shape == (1, 5, 49, 57)
    torch.testing.assert_close(probs.sum(1), torch.ones(1, 49, 57))
    # The image pooling follows the scaled crop (global pooling at every scale here).
    model.set_crop_size(None)
    try:
        with torch.no_grad():
            expected = _reference(model, x, scales, flip)
    finally:
        model.set_crop_size((49, 57))
    torch.testing.assert_close(probs, expected, rtol=0, atol=1e-6)


def test_flip_averaging_is_flip_equivariant(model, x):
    with torch.no_grad():
        probs = model.tta_probabilities(x, (0.5, 1.0), True)
        mirrored = model.tta_probabilities(x.flip(-1), (0.5, 1.0), True)
    torch.testing.assert_close(mirrored, probs.flip(-1), rtol=0, atol=1e-6)


def test_crop_is_restored(model, x):
    pool = model.decoder.aspp.image_pooling.pool_size
    with torch.no_grad():
        model.tta_probabilities(x, (0.5, 1.75), True)
    assert model.config.crop_size == (49, 57)
    assert model.decoder.aspp.image_pooling.pool_size == pool == (4, 4)


def test_predict(model):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    single = model.predict(image)
    assert isinstance(single, Prediction) and single.semantic.shape == (40, 50)
    # predict pads to the eval crop (49x57) with the mean pixel, as research/deeplab's eval.
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1
    padded = F.pad(x, (0, 7, 0, 9))
    with torch.no_grad():
        expected = model(padded)["semantic_logits"].argmax(1)[0, :40, :50].numpy()
        probs = model.tta_probabilities(padded, (0.75, 1.0, 1.25), True)
    assert np.array_equal(single.semantic, expected)
    multi = model.predict([image, image], scales=(0.75, 1.0, 1.25), flip=True)
    assert len(multi) == 2 and np.array_equal(multi[0].semantic, multi[1].semantic)
    assert np.array_equal(multi[0].semantic, probs.argmax(1)[0, :40, :50].numpy())
    assert model._tta == ((1.0,), False)  # the TTA setting does not leak into later calls
    with pytest.raises(ValueError, match="scales"):
        model.predict(image, scales=())
