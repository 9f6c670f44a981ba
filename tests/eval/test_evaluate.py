"""`deeplab_zoo.eval.evaluate`, the `evaluate` CLI and DeepLab2-style multi-scale/flip TTA."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import deeplab_zoo
from deeplab_zoo.cli import main
from deeplab_zoo.data import build_dataset
from deeplab_zoo.eval import evaluate, format_report
from deeplab_zoo.inference import Prediction


class OracleModel:
    """Predicts the ground truth of a dataset (looked up by image), or a corrupted copy."""

    is_panoptic = True

    def __init__(self, dataset, corrupt: bool = False):
        self.dataset = dataset.info
        self._truth = {dataset[i]["image"].numpy().tobytes(): dataset[i]["panoptic"].numpy()
                       for i in range(len(dataset))}
        self.corrupt = corrupt

    def predict(self, image, *, scales=(1.0,), flip=False):
        panoptic = self._truth[image.numpy().tobytes()].copy()
        if self.corrupt:  # wipe the left half to void
            panoptic[:, : panoptic.shape[1] // 2] = self.dataset.void_label
        semantic = panoptic // self.dataset.label_divisor
        semantic[semantic == self.dataset.ignore_label] = 0  # models never predict void
        return Prediction(semantic=semantic, panoptic=panoptic,
                          label_divisor=self.dataset.label_divisor)


@pytest.fixture(scope="module")
def synthetic():
    return build_dataset("synthetic", num_images=3, size=(65, 97), seed=5)


def test_perfect_predictions_score_one(synthetic):
    result = evaluate(OracleModel(synthetic), synthetic, progress=False)
    assert result["pq"] == pytest.approx(1.0)
    assert result["miou"] == pytest.approx(1.0)
    assert result["num_images"] == 3


def test_worse_predictions_score_lower(synthetic):
    result = evaluate(OracleModel(synthetic, corrupt=True), synthetic, progress=False)
    assert 0.0 < result["pq"] < 1.0 and 0.0 < result["miou"] < 1.0
    report = format_report(result, synthetic.info.class_names)
    assert "pq" in report and synthetic.info.class_names[0] in report


def test_real_model_runs_and_limit(synthetic):
    torch.manual_seed(0)
    model = deeplab_zoo.create_model("panoptic_deeplab_mobilenet_v3_small_os32",
                                     dataset="synthetic").eval()
    result = evaluate(model, synthetic, limit=1, progress=False)
    assert result["num_images"] == 1
    assert 0.0 <= result["pq"] <= 1.0 and 0.0 <= result["miou"] <= 1.0


def test_dataset_mismatch_is_a_clear_error(synthetic):
    model = deeplab_zoo.create_model("panoptic_deeplab_mobilenet_v3_small_os32")
    with pytest.raises(ValueError, match="pick a model tag"):
        evaluate(model, synthetic, progress=False)


def test_cli_evaluate_json(tmp_path, capsys, monkeypatch):
    out = tmp_path / "metrics.json"
    code = main(["evaluate", "--model", "panoptic_deeplab_mobilenet_v3_small_os32",
                 "--dataset", "synthetic", "--limit", "1", "--json", str(out)])
    # The Cityscapes-tagged model cannot be scored on the synthetic classes: exit 2.
    assert code == 2 and "error:" in capsys.readouterr().err
    assert not out.exists()


def test_tta_single_scale_equals_forward():
    torch.manual_seed(0)
    model = deeplab_zoo.create_model("panoptic_deeplab_mobilenet_v3_small_os32").eval()
    x = torch.randn(1, 3, 65, 97)
    with torch.no_grad():
        plain = model(x)
        tta = model.forward_tta(x, scales=(1.0,), flip=False)
    for key, value in plain.items():
        torch.testing.assert_close(tta[key], value, rtol=0, atol=0)
    torch.testing.assert_close(tta["semantic_probs"], torch.softmax(plain["semantic_logits"], 1))


def test_tta_flip_averages_unflipped_passes():
    torch.manual_seed(0)
    model = deeplab_zoo.create_model("panoptic_deeplab_mobilenet_v3_small_os32").eval()
    x = torch.randn(1, 3, 65, 97)
    with torch.no_grad():
        tta = model.forward_tta(x, scales=(1.0,), flip=True)
        direct = model(x)
        mirrored = model(x.flip(-1))
    expected = 0.5 * (direct["offset_map"] + mirrored["offset_map"].flip(-1)
                      * torch.tensor([1.0, -1.0]).view(1, 2, 1, 1))
    torch.testing.assert_close(tta["offset_map"], expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        multi = model.forward_tta(x, scales=(0.5, 1.0, 1.5), flip=True)
    assert multi["semantic_logits"].shape == direct["semantic_logits"].shape
    assert np.isfinite(multi["semantic_probs"].numpy()).all()
    prediction = model.predict((np.random.default_rng(0).random((40, 50, 3)) * 255).astype(
        np.uint8), scales=(0.75, 1.0), flip=True)
    assert prediction.panoptic.shape == (40, 50)
    with pytest.raises(ValueError, match="scales"):
        model.predict(np.zeros((8, 8, 3), np.uint8), scales=())


def test_metrics_json_roundtrip(tmp_path, synthetic):
    result = evaluate(OracleModel(synthetic), synthetic, progress=False)
    text = json.dumps(result, default=float)
    assert json.loads(text)["pq"] == pytest.approx(1.0)
