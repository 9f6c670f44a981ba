"""The training loop: a few steps, exact resume (in-process and after a SIGKILL), options."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from deeplab_zoo.cli import main
from deeplab_zoo.data.synthetic import SYNTHETIC
from deeplab_zoo.factory import create_model
from deeplab_zoo.meta.mask_transformer import MaskTransformerMixin
from deeplab_zoo.train import TrainConfig, Trainer, latest_checkpoint

REPO = Path(__file__).resolve().parents[2]


def tiny(**changes) -> TrainConfig:
    base = dict(model="demo", steps=4, batch_size=2, crop_size=(33, 33), image_size=(45, 53),
                num_images=16, save_every=2, log_every=1, lr=2e-3, warmup_steps=1,
                progress=False, sigma=2.0, small_instance_threshold=100,
                small_instance_weight=3.0)
    base.update(changes)
    return TrainConfig(**base)


def train(config: TrainConfig, out: Path, *, resume: bool = False,
          stop_at: int | None = None) -> Trainer:
    trainer = Trainer(config, out, resume=resume, device="cpu")
    trainer.run(stop_at)
    return trainer


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ: {different[:5]}"


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Trainer]:
    out = tmp_path_factory.mktemp("straight")
    return out, train(tiny(), out)


def test_straight_run_outputs(straight: tuple[Path, Trainer]) -> None:
    out, trainer = straight
    assert trainer.step == 4
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert records[0]["learning_rate"] == 0.0  # warmup starts at 0
    assert all(r["total_loss"] > 0 for r in records)
    assert {"semantic_loss", "center_loss", "regression_loss"} <= set(records[0])
    assert latest_checkpoint(out / "checkpoints").name == "ckpt-00000004"
    with Image.open(out / "metrics.png") as curves:  # 5 panels: 4 losses + learning rate
        assert curves.size == (4 * 300, 2 * 190)
    model = create_model("demo", pretrained=str(out))  # the exported final weights
    trained = trainer.model.state_dict()
    for key, value in model.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, trained[key]), key


def test_resume_is_bit_exact(straight: tuple[Path, Trainer], tmp_path: Path) -> None:
    _, reference = straight
    first = train(tiny(), tmp_path, stop_at=2)
    assert first.step == 2 and latest_checkpoint(tmp_path / "checkpoints").name.endswith("2")
    resumed = train(tiny(lr=99.0), tmp_path, resume=True)  # resume re-reads config.json
    assert resumed.step == 4 and resumed.config.lr == 2e-3
    assert_same_state(resumed.model.state_dict(), reference.model.state_dict())
    optimizer = "checkpoints/ckpt-00000004/optimizer.safetensors"
    assert_same_state(load_file(str(tmp_path / optimizer)),
                      load_file(str(straight[0] / optimizer)))


def test_cli_kill_and_resume(straight: tuple[Path, Trainer], tmp_path: Path) -> None:
    """SIGKILL a CLI run after its first checkpoint, resume it: same weights as straight."""
    _, reference = straight
    out = tmp_path / "run"
    config = tiny(steps=4)
    args = [sys.executable, "-m", "deeplab_zoo.cli", "train", "--model", "demo", "--out",
            str(out), "--steps", "4", "--batch-size", "2", "--crop-size", "33", "33",
            "--image-size", "45", "53", "--num-images", "16", "--save-every", "2",
            "--log-every", "1", "--lr", "2e-3", "--warmup-steps", "1", "--num-workers", "0",
            "--no-progress", "--device", "cpu"]
    # The CLI run must match the in-process one: write the same config, then resume it.
    out.mkdir()
    (out / "config.json").write_text(json.dumps(config.to_dict()))
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"),
               OMP_NUM_THREADS=str(torch.get_num_threads()))
    process = subprocess.Popen(args + ["--resume"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while latest_checkpoint(out / "checkpoints") is None and process.poll() is None:
        assert time.time() < deadline, "no checkpoint within 120 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = latest_checkpoint(out / "checkpoints")
    assert killed_at is not None
    if killed_at.name.endswith("4"):
        pytest.skip("the run finished before it could be killed")
    assert not (out / "model.safetensors").exists()
    result = subprocess.run(args + ["--resume"], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "resumed from" in result.stderr
    final = load_file(str(out / "checkpoints/ckpt-00000004/model.safetensors"))
    assert_same_state(final, reference.model.state_dict())


def test_init_weights_from_a_finished_run(straight: tuple[Path, Trainer],
                                         tmp_path: Path) -> None:
    """--init-weights DIR starts a new run (fine-tuning) from another run's weights."""
    out, reference = straight
    finetune = train(tiny(init_weights=str(out), seed=5), tmp_path / "ft", stop_at=0)
    assert finetune.step == 0
    trained = reference.model.state_dict()
    for key, value in finetune.model.state_dict().items():
        if not key.endswith("num_batches_tracked"):  # (not part of the exported weights)
            assert torch.equal(value, trained[key]), key


def test_panoptic_copy_paste_in_the_pipeline(tmp_path: Path) -> None:
    """kMaX's copy-paste: deterministic per position, pastes source things (ids counted
    down from label_divisor - 1), and trains."""
    trainer = train(tiny(steps=1, save_every=1, copy_paste_scale=0.5,
                         copy_paste_thing_option="all"), tmp_path / "cp")
    assert trainer.step == 1
    samples = trainer._loader().dataset
    first, again = samples[3], samples[3]
    for key, value in first.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, again[key]), key
    divisor = trainer.dataset_info.label_divisor
    pasted = 0
    for position in range(8):
        generator = torch.Generator().manual_seed(position)
        canvas = samples.augment(samples.dataset[samples.index_of(position)], generator)
        out = samples.copy_paste(canvas, samples.dataset[samples.index_of(position, 3)],
                                 generator)
        instance = out["panoptic"] % divisor
        pasted += int((instance > divisor // 2).sum())
    assert pasted > 0


def test_evaluation_during_training(tmp_path: Path) -> None:
    """--eval-every: PQ / mIoU on held-out scenes, logged as eval_* and drawn."""
    trainer = train(tiny(steps=3, save_every=3, eval_every=2, eval_images=2), tmp_path)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval_pq" in r]
    assert [r["step"] for r in evals] == [2, 3]  # every 2 steps and at the end
    for record in evals:
        assert 0.0 <= record["eval_pq"] <= 1.0 and 0.0 <= record["eval_miou"] <= 1.0
    assert trainer.model.training  # back in training mode
    with Image.open(tmp_path / "metrics.png") as curves:  # + 6 eval panels: 3 rows
        assert curves.size == (4 * 300, 3 * 190)


def test_ctrl_c_saves_a_checkpoint(tmp_path: Path) -> None:
    """SIGINT between periodic checkpoints: the steps done so far are saved for --resume."""
    out = tmp_path / "run"
    args = [sys.executable, "-m", "deeplab_zoo.cli", "train", "--model", "demo", "--out",
            str(out), "--steps", "1000", "--batch-size", "2", "--crop-size", "33", "33",
            "--image-size", "45", "53", "--num-images", "16", "--save-every", "1000",
            "--log-every", "1", "--num-workers", "0", "--no-progress", "--device", "cpu"]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"),
               OMP_NUM_THREADS=str(torch.get_num_threads()))
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").is_file() and process.poll() is None:
        assert time.time() < deadline, "no step within 120 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0
    saved = latest_checkpoint(out / "checkpoints")
    assert saved is not None and "interrupted: saved" in stderr, stderr[-2000:]
    assert 1 <= int(saved.name.rsplit("-", 1)[1]) < 1000


def test_options_frozen_bn_checkpointing_amp(tmp_path: Path) -> None:
    plain = train(tiny(steps=2, save_every=2), tmp_path / "plain")
    checkpointed = train(tiny(steps=2, save_every=2, grad_checkpointing=True), tmp_path / "gc")
    for (name, a), b in zip(plain.model.state_dict().items(),
                            checkpointed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)

    frozen = train(tiny(steps=2, save_every=2, batch_norm="frozen"), tmp_path / "frozen")
    torch.manual_seed(0)  # the trainer seeds with config.seed before building the model
    initial = create_model("demo", crop_size=(33, 33))
    bn = {k for k, m in initial.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    after = frozen.model.state_dict()
    checked = 0
    for key, value in initial.state_dict().items():
        if key.rsplit(".", 1)[0] in bn:
            assert torch.equal(value, after[key]), key
            checked += 1
        elif key.endswith("conv.weight"):
            assert not torch.equal(value, after[key]), key  # the rest did train
    assert checked > 50

    amp = train(tiny(steps=1, save_every=1, amp=True), tmp_path / "amp")
    record = json.loads((tmp_path / "amp" / "metrics.jsonl").read_text().splitlines()[-1])
    assert torch.isfinite(torch.tensor(record["total_loss"])) and amp.step == 1


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--out", str(tmp_path)]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["train", "--preset", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown preset" in capsys.readouterr().err
    assert main(["train", "--list-presets"]) == 0
    assert "demo" in capsys.readouterr().out.split()


class _TinyMaskTransformer(MaskTransformerMixin, torch.nn.Module):
    """A stand-in for MaX/kMaX-DeepLab with their raw output layout (K = 4 slots)."""

    def __init__(self) -> None:
        super().__init__()
        self.dataset = SYNTHETIC
        self.encoder = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.masks = torch.nn.Conv2d(8, 4, 1)
        self.classes = torch.nn.Linear(8, SYNTHETIC.num_classes + 1)
        self.semantic = torch.nn.Conv2d(8, SYNTHETIC.num_classes, 1)

    def _head(self, feature: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"pixel_space_mask_logits": self.masks(feature),
                "transformer_class_logits": self.classes(feature.mean((2, 3)))[:, None]
                .expand(-1, 4, -1),
                "pixel_space_normalized_feature": torch.nn.functional.normalize(feature, dim=1)}

    def forward(self, x: torch.Tensor) -> dict:
        feature = torch.relu(self.encoder(x))
        out = {**self._head(feature), "semantic_logits": self.semantic(feature)}
        out["auxiliary_outputs"] = (self._head(feature[..., ::2, ::2]),)  # lower resolution
        return out


def test_trains_a_mask_transformer(tmp_path: Path) -> None:
    model = _TinyMaskTransformer()
    before = [p.detach().clone() for p in model.parameters()]
    config = tiny(steps=2, save_every=2, mask_loss={"instance_discrimination_sample_k": 32})
    trainer = Trainer(config, tmp_path, device="cpu", model=model)
    trainer.run()
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"pq_style_loss_class_term", "aux_0mask_id_cross_entropy_loss",
            "instance_discrimination_loss", "semantic_loss"} <= set(record)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
