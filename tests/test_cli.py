"""``deeplab-zoo`` command line, through ``deeplab_zoo.cli.main`` (and once as a program)."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from deeplab_zoo import list_models, list_pretrained
from deeplab_zoo.cli import main

NAME = "panoptic_deeplab_mobilenet_v3_small_os32"


def _bundle_writer() -> ModuleType:
    path = Path(__file__).parent / "weights" / "tf_bundle_writer.py"
    spec = importlib.util.spec_from_file_location("_cli_tf_bundle_writer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def weights_dir(parity_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded DeepLab2 checkpoint converted with ``deeplab-zoo convert``."""
    writer = _bundle_writer()
    root = tmp_path_factory.mktemp("cli")
    arrays = writer.seeded_arrays(parity_dir, NAME)
    prefix = writer.write_checkpoint(root / "ckpt" / "ckpt-1", arrays)
    out = root / "converted"
    assert main(["convert", str(prefix), "--model", NAME, "--out", str(out)]) == 0
    return out


@pytest.fixture()
def png(tmp_path: Path) -> Path:
    path = tmp_path / "in.png"
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    Image.fromarray(image).save(path)
    return path


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line]


def test_list(capsys: pytest.CaptureFixture) -> None:
    assert main(["list"]) == 0
    assert _lines(capsys.readouterr().out) == list_models()
    assert main(["list", "panoptic_*_os32"]) == 0
    assert _lines(capsys.readouterr().out) == list_models("panoptic_*_os32")


def test_list_pretrained(capsys: pytest.CaptureFixture) -> None:
    assert main(["list", "--pretrained"]) == 0
    names = _lines(capsys.readouterr().out)
    assert names == list_pretrained() and "panoptic_deeplab_resnet50_os32.coco" in names
    assert main(["list", "--pretrained", "*.coco"]) == 0
    assert all(n.endswith(".coco") for n in _lines(capsys.readouterr().out))


def test_info(capsys: pytest.CaptureFixture) -> None:
    assert main(["info", "panoptic_deeplab_resnet50_os32.coco"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "panoptic_deeplab_resnet50_os32.coco"
    assert info["num_classes"] == 134 and info["label_divisor"] == 256
    assert info["crop_size"] == [641, 641]


def test_convert_writes_safetensors_and_config(weights_dir: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    assert sorted(p.name for p in weights_dir.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((weights_dir / "config.json").read_text())["name"] == NAME


@pytest.mark.filterwarnings("error::UserWarning")  # e.g. torch on read-only image arrays
def test_predict_with_weights(weights_dir: Path, png: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "sub" / "out.png"
    assert main(["predict", str(png), "--model", NAME, "--weights", str(weights_dir),
                 "--out", str(out), "--alpha", "0.7"]) == 0
    captured = capsys.readouterr()
    assert f"wrote {out} (70x50" in captured.out
    assert "warning" not in captured.err
    with Image.open(out) as result:
        assert result.size == (70, 50) and result.mode == "RGB"


def test_predict_without_weights_warns(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    image = tmp_path / "small.png"
    Image.fromarray(np.full((17, 23, 3), 90, np.uint8)).save(image)
    out = tmp_path / "o.png"
    assert main(["predict", str(image), "--model", NAME, "--out", str(out)]) == 0
    assert "random weights" in capsys.readouterr().err
    with Image.open(out) as result:
        assert result.size == (23, 17)


def test_demo(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "demo.png"
    assert main(["demo", "--out", str(out), "--seed", "3"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    with Image.open(out) as result:
        assert result.size == (2 * 385, 257) and result.mode == "RGB"


@pytest.mark.parametrize("argv, message", [
    (["info", "panoptic_deeplab_resnet50_os3"], "Did you mean"),
    (["info", "panoptic_deeplab_resnet50_os32.nope"], "no tag 'nope'"),
    (["predict", "{png}", "--model", "no_such_model", "--out", "{tmp}/o.png"], "unknown model"),
    (["predict", "{png}", "--model", NAME, "--weights", "{tmp}/missing.safetensors",
      "--out", "{tmp}/o.png"], "no weights file"),
    (["convert", "{tmp}/missing/ckpt-1", "--model", NAME, "--out", "{tmp}/c"], "not found"),
], ids=["close-match", "bad-tag", "predict-bad-model", "missing-weights", "convert-missing"])
def test_errors_exit_2(argv: list[str], message: str, png: Path, tmp_path: Path,
                       capsys: pytest.CaptureFixture) -> None:
    argv = [a.format(png=png, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err
    assert not (tmp_path / "o.png").exists()


def test_unreadable_image(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["predict", str(tmp_path / "missing.png"), "--model", NAME, "--out", "o.png"])
    assert str(info.value.code) == f"error: image not found: {tmp_path / 'missing.png'}"
    not_image = tmp_path / "notes.png"
    not_image.write_text("not a png")
    with pytest.raises(SystemExit) as info:
        main(["predict", str(not_image), "--model", NAME, "--out", "o.png"])
    assert str(info.value.code).startswith(f"error: cannot read image {not_image}")


@pytest.mark.parametrize("argv", [[], ["predict", "x.png"], ["frobnicate"]])
def test_usage_errors(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: deeplab-zoo" in capsys.readouterr().err


def test_console_script() -> None:
    script = Path(sys.executable).with_name("deeplab-zoo")
    if not script.is_file():
        found = shutil.which("deeplab-zoo")
        if found is None:
            pytest.skip("deeplab-zoo console script not installed")
        script = Path(found)
    result = subprocess.run([str(script), "list"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert _lines(result.stdout) == list_models()
