"""Two-process DDP training on CPU (gloo): ranks stay identical and match one process."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from deeplab_zoo.train import TrainConfig, Trainer, build_train_model, latest_checkpoint
from deeplab_zoo.train.checkpoint import STATE_FILE

WORLD = 2


def config(**changes) -> TrainConfig:
    base = dict(model="demo", steps=2, batch_size=4, crop_size=(33, 33), image_size=(45, 53),
                num_images=16, save_every=2, log_every=1, lr=2e-3, progress=False, sigma=2.0)
    base.update(changes)
    return TrainConfig(**base)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, port: int, root: str, threads: int) -> None:
    torch.set_num_threads(threads)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        for name, cfg in (("adam", config()),
                          ("sgd", config(optimizer="sgd", batch_norm="frozen", lr=0.05))):
            trainer = Trainer(cfg, Path(root) / name, device="cpu")
            trainer.run()
            state = {k: v.contiguous() for k, v in trainer.model.state_dict().items()}
            save_file(state, str(Path(root) / f"{name}_rank{rank}.safetensors"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    threads = max(1, torch.get_num_threads() // WORLD)
    mp.start_processes(_worker, args=(_free_port(), str(root), threads), nprocs=WORLD,
                       join=True, start_method="spawn")
    return root


def test_ranks_hold_identical_parameters(ddp_run: Path) -> None:
    for name in ("adam", "sgd"):
        ranks = [load_file(str(ddp_run / f"{name}_rank{r}.safetensors")) for r in range(WORLD)]
        # Parameters (and, with frozen BN, everything) are bit-identical across ranks;
        # running BN statistics follow each rank's last batch (DDP broadcasts rank 0's
        # buffers at the start of every forward).
        for key, value in ranks[0].items():
            if name == "sgd" or not key.rsplit(".", 1)[-1].startswith(("running", "num")):
                assert torch.equal(value, ranks[1][key]), (name, key)


def test_checkpoint_holds_every_rank_rng(ddp_run: Path) -> None:
    ckpt = latest_checkpoint(ddp_run / "adam" / "checkpoints")
    state = json.loads((ckpt / STATE_FILE).read_text())
    assert state["step"] == 2 and len(state["rng"]) == WORLD
    assert state["rng"][0]["torch"] != state["rng"][1]["torch"]  # per-rank dropout streams
    assert (ddp_run / "adam" / "model.safetensors").is_file()  # exported by rank 0


def test_two_processes_match_one(ddp_run: Path, tmp_path: Path) -> None:
    """2 x 2 samples with DDP == 4 samples in one process (frozen BN, SGD: linear in grads)."""
    single = Trainer(config(optimizer="sgd", batch_norm="frozen", lr=0.05), tmp_path,
                     device="cpu")
    single.run()
    ddp = load_file(str(ddp_run / "sgd_rank0.safetensors"))
    torch.manual_seed(0)  # the initial weights (the trainer seeds with config.seed)
    initial = build_train_model(config()).state_dict()
    for key, value in single.model.state_dict().items():
        torch.testing.assert_close(ddp[key], value, rtol=1e-4, atol=1e-6, msg=key)
    # The comparison is not between two untrained models: the heads and a good part of the
    # rest moved (with frozen init-time BN the deepest encoder blocks get ~0 gradient).
    trainable = [k for k, p in single.model.named_parameters() if p.requires_grad]
    moved = [k for k in trainable if not torch.equal(ddp[k], initial[k])]
    assert len(moved) > len(trainable) // 3, (len(moved), len(trainable))
    assert all(k in moved for k in trainable if "head" in k), sorted(set(trainable) - set(moved))


def test_torchrun_command_line(tmp_path: Path) -> None:
    """The README's DDP command itself: `torchrun --nproc-per-node 2 -m deeplab_zoo.cli train`."""
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
         str(WORLD), "-m", "deeplab_zoo.cli", "train", "--model", "demo", "--out", str(out),
         "--steps", "2", "--batch-size", "4", "--crop-size", "33", "33", "--image-size", "45",
         "53", "--num-images", "16", "--save-every", "2", "--log-every", "1",
         "--num-workers", "0", "--no-progress", "--device", "cpu"],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((latest_checkpoint(out / "checkpoints") / STATE_FILE).read_text())
    assert state["step"] == 2 and len(state["rng"]) == WORLD
    assert (out / "model.safetensors").is_file() and (out / "metrics.png").is_file()
