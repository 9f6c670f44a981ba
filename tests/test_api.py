"""Public API: names, tags, configs, ``features_only``, ``num_classes`` and ``predict``."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import deeplab_zoo
from deeplab_zoo import Prediction, create_model, list_models, list_pretrained, pretrained_cfg
from deeplab_zoo.registry import get_pretrained_cfg, list_tags, model_kind, split_name

NAME = "panoptic_deeplab_mobilenet_v3_small_os32"
BACKBONES = [n for n in list_models() if model_kind(n) == "backbone"]
REAL_FORWARD = {"resnet50", "mobilenet_v3_small", "mobilenet_v3_large"}  # others: meta only


def _out_size(size: int, reduction: int) -> int:
    return (size - 1) // reduction + 1  # DeepLab2's 'SAME' strided convs on odd sizes


# --------------------------------------------------------------------------- names and tags


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(ValueError, match="unknown model") as info:
        create_model("panoptic_deeplab_resnet50_os3")
    message = str(info.value)
    assert "Did you mean" in message and "panoptic_deeplab_resnet50_os32" in message
    assert "list_models()" in message
    with pytest.raises(ValueError, match="unknown model 'no_such_thing'"):
        pretrained_cfg("no_such_thing.coco")
    with pytest.raises(TypeError, match="non-empty string"):
        create_model("")


def test_unknown_tag_lists_tags() -> None:
    for call in (lambda: create_model("panoptic_deeplab_resnet50_os32.nope"),
                 lambda: create_model("panoptic_deeplab_resnet50_os32", pretrained="nope")):
        with pytest.raises(ValueError, match="no tag 'nope'") as info:
            call()
        for tag in ("cityscapes", "coco", "kitti_step"):
            assert tag in str(info.value)


def test_list_models_and_pretrained_globbing() -> None:
    everything = list_models()
    assert everything == sorted(everything) and NAME in everything
    assert set(BACKBONES) >= {"resnet50", "mobilenet_v3_small", "swidernet"}
    panoptic = list_models("panoptic_deeplab_*")
    assert panoptic and all(n.startswith("panoptic_deeplab_") for n in panoptic)
    assert list_models("*_os32") == [n for n in everything if n.endswith("_os32")]
    assert list_models("nothing*") == []

    released = list_pretrained()
    assert "panoptic_deeplab_resnet50_os32.coco" in released
    assert all(get_pretrained_cfg(n).has_weights for n in released)
    assert list_pretrained("*.coco") == [n for n in released if n.endswith(".coco")]
    # Tags without a released checkpoint only fix dataset settings.
    assert "deeplabv3_resnet50.cityscapes" in list_tags()
    assert "deeplabv3_resnet50.cityscapes" not in released
    assert set(released) <= set(list_tags())


def test_pretrained_cfg_has_dataset_settings() -> None:
    cfg = pretrained_cfg("panoptic_deeplab_resnet50_os32.coco")
    assert cfg["name"] == "panoptic_deeplab_resnet50_os32.coco"
    assert cfg["dataset"] == "coco" and cfg["num_classes"] == 134
    assert cfg["label_divisor"] == 256 and cfg["ignore_label"] == 0
    assert list(cfg["thing_class_ids"]) == list(range(1, 81))
    assert tuple(cfg["crop_size"]) == (641, 641)
    assert cfg["url"].endswith(".tar.gz") and cfg["metrics"]["pq"] > 0

    default = pretrained_cfg("panoptic_deeplab_resnet50_os32")  # default tag
    assert default["tag"] == "cityscapes" and default["num_classes"] == 19
    assert default["label_divisor"] == 1000 and list(default["thing_class_ids"]) == [
        11, 12, 13, 14, 15, 16, 17, 18]
    assert pretrained_cfg("resnet50")["tag"] == ""  # backbones have no dataset


def test_tag_fixes_dataset_settings_of_the_model() -> None:
    with torch.device("meta"):
        coco = create_model("panoptic_deeplab_resnet50_os32.coco")
        cityscapes = create_model("panoptic_deeplab_resnet50_os32", pretrained=False)
    assert coco.pretrained_name == "panoptic_deeplab_resnet50_os32.coco"
    assert coco.dataset.num_classes == 134 and coco.dataset.label_divisor == 256
    assert coco.config.crop_size == (641, 641)
    assert coco.postprocess_config.nms_kernel == 41
    assert cityscapes.pretrained_name == "panoptic_deeplab_resnet50_os32.cityscapes"
    assert cityscapes.dataset.num_classes == 19 and cityscapes.config.crop_size == (1025, 2049)


def test_alias_resolves() -> None:
    cfg = pretrained_cfg("panoptic_deeplab_swidernet_sac")
    assert cfg["name"] == "panoptic_deeplab_swidernet_sac_1_1_4_5_os16.cityscapes"


@pytest.mark.parametrize("name", list_models())
def test_every_model_builds_on_meta(name: str) -> None:
    """With its default tag, if any (so that tag's settings are checked too)."""
    with torch.device("meta"):
        model = create_model(name, pretrained=False)
    assert isinstance(model, torch.nn.Module)
    assert sum(p.numel() for p in model.parameters()) > 0
    cfg = get_pretrained_cfg(name)
    if cfg is not None and model_kind(name) == "model":
        assert model.dataset.name == cfg.dataset
        assert model.config.crop_size == cfg.crop_size


def _non_default_tags() -> list[str]:
    """``arch.tag`` names other than the default tag (``test_every_model_...`` builds those)."""
    return [n for n in list_tags() if split_name(n.split(".")[0])[1] != n.split(".", 1)[1]]


@pytest.mark.parametrize("name", _non_default_tags())
def test_every_tag_builds_on_meta(name: str) -> None:
    """Each ``arch.tag``'s dataset settings and model_args are accepted by its builder."""
    with torch.device("meta"):
        model = create_model(name)
    cfg = get_pretrained_cfg(name)
    if model_kind(cfg.architecture) == "model":  # backbone tags (e.g. imagenet) have no dataset
        assert model.dataset.name == cfg.dataset
        assert model.config.crop_size == cfg.crop_size


# --------------------------------------------------------------------------- features_only


def _check_features(model, features: list[torch.Tensor], size: int = 65) -> None:
    info = model.feature_info
    assert isinstance(features, list) and len(features) == len(info)
    assert [d["num_chs"] for d in info] == info.channels()
    assert [d["reduction"] for d in info] == info.reduction()
    for feature, channels, reduction in zip(features, info.channels(), info.reduction()):
        assert tuple(feature.shape) == (1, channels, _out_size(size, reduction),
                                        _out_size(size, reduction))


@pytest.mark.parametrize("name", BACKBONES)
def test_features_only_backbone(name: str) -> None:
    """Real forward for the small backbones; the others are built on meta (cheap) and only
    their ``feature_info`` is checked (their own tests check their shapes)."""
    if name not in REAL_FORWARD:
        with torch.device("meta"):
            model = create_model(name, features_only=True)
        info = model.feature_info
        assert len(info) == len(model.encoder.feature_specs) > 0
        assert [d["num_chs"] for d in info] == info.channels()
        assert [d["reduction"] for d in info] == info.reduction()
        assert all(c > 0 for c in info.channels()) and all(r > 0 for r in info.reduction())
        return
    with torch.no_grad():
        model = create_model(name, features_only=True).eval()
        features = model(torch.zeros(1, 3, 65, 65))
    assert model.feature_info.reduction() == [2, 4, 8, 16, 32]
    assert model.feature_info.endpoints() == ["res1", "res2", "res3", "res4", "res5"]
    _check_features(model, features)


@pytest.mark.parametrize("name, device", [("panoptic_deeplab_mobilenet_v3_small_os16", "cpu"),
                                          ("panoptic_deeplab_resnet50_os32", "meta"),
                                          ("panoptic_deeplab_swidernet_sac_1_1_1_os16", "meta")])
def test_features_only_meta_model(name: str, device: str) -> None:
    with torch.device(device), torch.no_grad():
        model = create_model(name, features_only=True).eval()
        features = model(torch.zeros(1, 3, 65, 65))
    output_stride = int(name.rsplit("_os", 1)[1])
    assert model.feature_info.reduction()[-1] == output_stride
    assert not hasattr(model, "decoder")
    _check_features(model, features)


def test_out_indices() -> None:
    with torch.device("meta"):
        model = create_model("mobilenet_v3_small", features_only=True, out_indices=(1, 3))
        features = model(torch.zeros(1, 3, 65, 65))
    assert model.feature_info.channels() == [16, 144]
    assert model.feature_info.reduction() == [4, 16]
    _check_features(model, features)
    with torch.device("meta"):
        last = create_model("resnet50", features_only=True, out_indices=(-1,))
        last_two = create_model("resnet50", features_only=True, out_indices=[-2, -1])
    assert last.feature_info.channels() == [2048] and last.feature_info.endpoints() == ["res5"]
    assert last_two.feature_info.channels() == [1024, 2048]


@pytest.mark.parametrize("out_indices", [(5,), (0, 7), (-6,)])
def test_bad_out_indices(out_indices) -> None:
    with torch.device("meta"), pytest.raises(ValueError, match="out of range"):
        create_model("resnet50", features_only=True, out_indices=out_indices)


def test_out_indices_needs_features_only() -> None:
    with torch.device("meta"), pytest.raises(ValueError, match="features_only"):
        create_model("resnet50", out_indices=(1,))


# --------------------------------------------------------------------------- num_classes


@pytest.mark.parametrize("name", [NAME, "deeplabv3_mobilenet_v3_large", "deeplabv3plus_resnet50"])
def test_num_classes_changes_the_last_layer(name: str) -> None:
    with torch.device("meta"):
        default = create_model(name).state_dict()
        custom = create_model(name, num_classes=7).state_dict()
    assert default.keys() == custom.keys()
    changed = {k for k in default if default[k].shape != custom[k].shape}
    assert changed and all(k.rsplit(".", 1)[-1] in ("weight", "bias") for k in changed)
    assert len({k.rsplit(".", 1)[0] for k in changed}) == 1  # one layer: the classifier
    for key in changed:
        assert custom[key].shape[0] == 7 and default[key].shape[0] == 19


def test_num_classes_errors() -> None:
    with torch.device("meta"):
        with pytest.raises(ValueError, match="num_classes"):
            create_model(NAME, num_classes=0)
        with pytest.raises(ValueError, match="backbone"):
            create_model("resnet50", num_classes=10)


# --------------------------------------------------------------------------- predict


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(NAME).eval()


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.mean(a == b))


@pytest.mark.parametrize("size", [(50, 70), (64, 96)])
def test_predict_numpy(model, size: tuple[int, int]) -> None:
    image = _image(*size)
    prediction = model.predict(image)
    assert isinstance(prediction, Prediction)
    for field in ("semantic", "panoptic", "instance"):
        assert getattr(prediction, field).shape == size, field
    assert prediction.label_divisor == 1000
    semantic = prediction.semantic
    assert semantic.min() >= 0 and semantic.max() < 19
    assert prediction.centers.ndim == 2 and prediction.centers.shape[1] == 2
    assert prediction.scores.shape == (len(prediction.centers),)
    overlay = prediction.overlay(image)
    assert overlay.shape == (*size, 3) and overlay.dtype == np.uint8
    assert np.array_equal(prediction.overlay(image, alpha=0.0), image)


def test_predict_input_types_agree(model) -> None:
    """uint8 HxWx3, PIL, float 3xHxW tensor and float HxWx3 in [0, 1]: the same image."""
    image = _image(50, 70, seed=1)
    as_float = image.astype(np.float32) / 255
    inputs = [image, Image.fromarray(image), torch.from_numpy(as_float).permute(2, 0, 1),
              as_float]
    expected, *others = model.predict(inputs)  # one batch of four
    for other, prediction in zip(inputs[1:], others):
        assert prediction.semantic.shape == (50, 70)
        assert np.array_equal(prediction.semantic, expected.semantic), type(other)
        assert np.array_equal(prediction.panoptic, expected.panoptic), type(other)
    overlay = expected.overlay(Image.fromarray(image))
    assert overlay.shape == (50, 70, 3) and overlay.dtype == np.uint8


def test_predict_list_with_batch_size(model) -> None:
    images = [_image(50, 70, seed=2), _image(64, 96, seed=3), _image(50, 70, seed=4)]
    model.train()
    batched = model.predict(images, batch_size=2)
    assert model.training  # predict restores the mode it found
    model.eval()
    assert isinstance(batched, list) and len(batched) == 3  # in input order
    assert [p.semantic.shape for p in batched] == [(50, 70), (64, 96), (50, 70)]
    for index in (0, 2):  # the two 50x70 images ran as one batch of two
        single = model.predict(images[index])
        # Same maps up to float round-off between batch sizes.
        assert _agreement(batched[index].semantic, single.semantic) >= 0.999
        assert _agreement(batched[index].panoptic, single.panoptic) >= 0.999


@pytest.mark.parametrize("image, error, match", [
    (np.zeros((50, 70), np.uint8), ValueError, "HxWx3"),
    (np.zeros((50, 70, 4), np.uint8), ValueError, r"HxWx3.*\(50, 70, 4\)"),
    (np.zeros((3, 50, 70), np.uint8), ValueError, "HxWx3"),
    (torch.zeros(1, 50, 70), ValueError, r"3xHxW.*\(1, 50, 70\)"),
    (torch.zeros(50, 70, 3), ValueError, "3xHxW"),
    (np.zeros((0, 70, 3), np.uint8), ValueError, "empty"),
    (np.zeros((50, 0, 3), np.uint8), ValueError, "empty"),
    (np.zeros((50, 70, 3), np.int64), TypeError, "dtype.*int64"),
    (torch.zeros(3, 50, 70, dtype=torch.int32), TypeError, "dtype"),
    ("image.png", TypeError, "numpy array, PIL image or torch tensor"),
    ([], ValueError, "empty list"),
    ([np.zeros((50, 70, 3), np.uint8), np.zeros((50, 70), np.uint8)], ValueError, "HxWx3"),
], ids=["2d", "rgba", "chw-numpy", "1-channel-tensor", "hwc-tensor", "no-rows", "no-cols",
        "int64", "int32-tensor", "str", "empty-list", "list-with-bad"])
def test_predict_input_errors(model, image, error, match: str) -> None:
    with pytest.raises(error, match=match):
        model.predict(image)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, "2"])
def test_predict_bad_batch_size(model, batch_size) -> None:
    with pytest.raises((ValueError, TypeError), match="batch_size"):
        model.predict([_image(8, 8)], batch_size=batch_size)


def test_top_level_exports() -> None:
    for name in deeplab_zoo.__all__:
        assert hasattr(deeplab_zoo, name), name


def test_crop_size_reaches_crop_dependent_backbones_only():
    with torch.device("meta"):
        backbone = deeplab_zoo.create_model("axial_resnet_s", crop_size=(129, 129))
    assert backbone.feature_info.reduction() == [2, 4, 8, 16, 32]
    with pytest.raises(ValueError, match="does not depend on the crop size"):
        deeplab_zoo.create_model("resnet50", crop_size=(65, 65))
