"""MaX-DeepLab / kMaX-DeepLab post-processing against DeepLab2's fixtures + unit tests."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deeplab_zoo.postprocess import mask_transformer as mt
from deeplab_zoo.postprocess.mask_transformer import (
    MaskTransformerPostprocessConfig,
    mask_transformer_postprocess,
    tf_resize_bilinear_align_corners,
    thing_stuff_class_ids,
)

FIXTURES = ("max_pixelwise_coco", "kmax_maskwise_cityscapes")
DISCRETE = ("panoptic_pred", "instance_pred", "semantic_pred")
#: TensorFlow's (Eigen's) float32 exp / summation order differ from PyTorch's in the
#: last bits; measured max 1.8e-7.
SCORE_TOL = 1e-6

CITYSCAPES_THINGS = tuple(range(11, 19))


def _config_from_fixture(params: dict) -> MaskTransformerPostprocessConfig:
    fields = {}
    if params["transformer_post_processing"] == "maskwise":
        words = params["maskwise_postprocessing"].split()
        values = {k.rstrip(":"): float(v) for k, v in zip(words[0::2], words[1::2])}
        fields = {
            "thing_class_confidence_threshold":
                values["transformer_class_confidence_threshold_thing"],
            "stuff_class_confidence_threshold":
                values["transformer_class_confidence_threshold_stuff"],
            "overlapping_threshold": values["overlapping_threshold"],
            "reorder_class_weight": values["reorder_class_weight"],
            "reorder_mask_weight": values["reorder_mask_weight"],
        }
    return MaskTransformerPostprocessConfig(
        mode=params["transformer_post_processing"],
        pixel_confidence_threshold=params["pixel_confidence_threshold"],
        class_confidence_threshold=params["transformer_class_confidence_threshold"],
        thing_area_limit=params["thing_area_limit"], stuff_area_limit=params["stuff_area_limit"],
        **fields)


def _run_fixture(parity_dir, name: str):
    root = parity_dir / "postproc"
    ref = np.load(root / f"{name}.npz")
    meta = json.loads((root / f"{name}.json").read_text())
    params = meta["parameters"]
    out = mask_transformer_postprocess(
        torch.from_numpy(ref["pixel_space_mask_logits"]).permute(2, 0, 1)[None],
        torch.from_numpy(ref["transformer_class_logits"])[None],
        thing_class_ids=params["thing_class_ids"], void_label=params["ignore_label"],
        label_divisor=params["panoptic_label_divisor"], output_size=meta["image_shape_used"],
        config=_config_from_fixture(params))
    return ref, out


@pytest.mark.parametrize("name", FIXTURES)
def test_deeplab2_fixture(parity_dir, name):
    ref, out = _run_fixture(parity_dir, name)
    for key in DISCRETE:
        np.testing.assert_array_equal(out[key][0].numpy(), ref[key], err_msg=key)
        assert out[key].dtype == torch.int32
    for key in ("instance_scores", "semantic_scores"):
        assert np.abs(out[key][0].numpy() - ref[key]).max() <= SCORE_TOL, key


@pytest.mark.parametrize("name", FIXTURES)
def test_row_chunking_does_not_change_results(parity_dir, name, monkeypatch):
    _, full = _run_fixture(parity_dir, name)
    monkeypatch.setattr(mt, "_CHUNK_ELEMENTS", 1000)  # a few rows per chunk
    _, chunked = _run_fixture(parity_dir, name)
    for key, value in full.items():
        assert torch.equal(value, chunked[key]), key


def test_thing_stuff_class_ids():
    assert thing_stuff_class_ids(19, CITYSCAPES_THINGS, 255) == \
        list(range(11, 19)) + list(range(11))
    coco = thing_stuff_class_ids(133, range(1, 81), 0)
    assert coco == list(range(1, 134))
    assert thing_stuff_class_ids(4, (2,), 1) == [2, 0, 3, 4]


def test_tf_resize_matches_align_corners_interpolation():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 13)
    ours = tf_resize_bilinear_align_corners(x, (33, 49))
    torch.testing.assert_close(ours, F.interpolate(x, (33, 49), mode="bilinear",
                                                   align_corners=True), atol=1e-5, rtol=0)
    torch.testing.assert_close(ours[:, :, ::4, ::4], x, atol=1e-6, rtol=0)
    rows = tf_resize_bilinear_align_corners(x, (33, 49), slice(5, 9))
    assert torch.equal(rows, ours[:, :, 5:9])
    assert tf_resize_bilinear_align_corners(x, (1, 1)).shape == (2, 3, 1, 1)


def _scene(num_slots: int, class_of_slot: dict[int, int], rects: dict[int, tuple],
           num_channels: int = 20, size: tuple[int, int] = (9, 9), boost: float = 8.0):
    """Mask logits 6 inside each slot's rectangle (y0, y1, x0, x1); confident classes."""
    masks = torch.zeros(1, num_slots, *size)
    for slot, (y0, y1, x0, x1) in rects.items():
        masks[0, slot, y0:y1, x0:x1] = 6.0
    classes = torch.zeros(1, num_slots, num_channels)
    classes[0, :, -1] = boost  # void unless set below
    for slot, channel in class_of_slot.items():
        classes[0, slot, -1] = 0.0
        classes[0, slot, channel] = boost
    return masks, classes


def _post(masks, classes, **config):
    config = MaskTransformerPostprocessConfig(**config)
    return mask_transformer_postprocess(masks, classes, thing_class_ids=CITYSCAPES_THINGS,
                                        void_label=255, label_divisor=1000,
                                        output_size=masks.shape[-2:], config=config)


def test_pixelwise_no_detection_is_all_void():
    masks, classes = _scene(3, {}, {0: (0, 9, 0, 9)})
    out = _post(masks, classes, mode="pixelwise")
    assert (out["panoptic_pred"] == 255000).all()
    assert (out["instance_pred"] == 1).all()  # DeepLab2 returns mask id 0 + 1 here
    assert (out["instance_scores"] == 0).all() and (out["semantic_scores"] == 0).all()


def test_pixelwise_things_stuff_and_area_limits():
    # channel 0 = person (11), channel 8 = road (0) in DeepLab2's thing-then-stuff order.
    masks, classes = _scene(3, {0: 0, 1: 8, 2: 0},
                            {0: (0, 4, 0, 4), 1: (4, 9, 0, 9), 2: (0, 4, 6, 9)})
    out = _post(masks, classes, mode="pixelwise")
    pan = out["panoptic_pred"][0]
    assert pan[0, 0] == 11 * 1000 + 1 and pan[8, 8] == 0 and pan[1, 7] == 11 * 1000 + 3
    assert out["semantic_pred"][0, 0, 0] == 11 and out["semantic_pred"][0, 8, 8] == 0
    # Pixels no slot claims confidently (uniform logits) are void.
    assert pan[0, 5] == 255000
    out = _post(masks, classes, mode="pixelwise", thing_area_limit=13)
    assert (out["panoptic_pred"][0, 0:4, 6:9] == 255000).all()  # 12-px person removed
    assert out["panoptic_pred"][0, 0, 0] == 11001
    out = _post(masks, classes, mode="pixelwise", stuff_area_limit=46)
    assert (out["panoptic_pred"][0, 4:9] == 255000).all()  # 45-px road removed


def test_maskwise_overlap_and_thresholds():
    # Slot 1 (lower confidence) mostly overlaps slot 0 and is dropped; slot 2 does not.
    masks, classes = _scene(3, {0: 0, 1: 0, 2: 1},
                            {0: (0, 5, 0, 5), 1: (1, 5, 1, 6), 2: (6, 9, 6, 9)})
    classes[0, 1, 0] = 4.0  # person, less confident than slot 0
    # Where slots 0 and 1 overlap both have probability ~0.5 > 0.4: both binary masks
    # contain the overlap, slot 0 is pasted first, slot 1 keeps 4 of its 20 pixels.
    out = _post(masks, classes, mode="maskwise", thing_class_confidence_threshold=0.5,
                stuff_class_confidence_threshold=0.3, overlapping_threshold=0.9)
    pan = out["panoptic_pred"][0]
    ids = set(pan.unique().tolist())
    assert ids == {11001, 12002, 255000}
    # Mask ids follow the confidence ranking; slot 1's pixels stay with slot 0.
    assert pan[2, 2] == 11001 and pan[7, 7] == 12002
    out = _post(masks, classes, mode="maskwise", thing_class_confidence_threshold=0.5,
                stuff_class_confidence_threshold=0.3, overlapping_threshold=0.0)
    assert 11003 in out["panoptic_pred"].unique().tolist()  # any new pixel suffices now


def test_batch_equals_single_images():
    torch.manual_seed(0)
    masks = torch.randn(3, 5, 7, 11) * 4
    classes = torch.randn(3, 5, 20) * 4
    for mode in ("pixelwise", "maskwise"):
        batched = _post(masks, classes, mode=mode, thing_class_confidence_threshold=0.3,
                        stuff_class_confidence_threshold=0.3, class_confidence_threshold=0.3)
        for i in range(3):
            single = _post(masks[i:i + 1], classes[i:i + 1], mode=mode,
                           thing_class_confidence_threshold=0.3,
                           stuff_class_confidence_threshold=0.3,
                           class_confidence_threshold=0.3)
            for key, value in single.items():
                assert torch.equal(batched[key][i:i + 1], value), (mode, key)


def test_bad_inputs_and_config():
    masks, classes = _scene(3, {}, {})
    with pytest.raises(ValueError, match="mode"):
        MaskTransformerPostprocessConfig(mode="boxwise")
    with pytest.raises(ValueError, match="thing_area_limit"):
        MaskTransformerPostprocessConfig(thing_area_limit=-1)
    with pytest.raises(ValueError, match=r"\[N, K, h, w\]"):
        _post(masks[0], classes)
    with pytest.raises(ValueError, match="slot dims differ"):
        _post(masks, classes[:, :2])
