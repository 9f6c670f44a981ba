"""Where pretrained weights come from: local files, the Hugging Face hub, DeepLab2's zoo.

``pretrained=True`` or a tag: a registry entry with ``hf_hub_id`` is fetched with
huggingface_hub; otherwise DeepLab2's original tar.gz is downloaded (sha256-checked
when known), converted, and the safetensors cached under the hub cache directory,
so the conversion happens once. Offline, only the cache is used.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from torch import nn
from tqdm.auto import tqdm

from ..errors import CheckpointError
from ..registry import PretrainedCfg
from .convert import load_tf_variables
from .store import WEIGHTS_NAME, load_weights, save_weights
from .tf_checkpoint import read_tf_checkpoint


def cache_dir() -> Path:
    """``$DEEPLAB_ZOO_CACHE`` or ``<huggingface hub cache>/deeplab_zoo``."""
    if os.environ.get("DEEPLAB_ZOO_CACHE"):
        return Path(os.environ["DEEPLAB_ZOO_CACHE"])
    from huggingface_hub.constants import HF_HUB_CACHE

    return Path(HF_HUB_CACHE) / "deeplab_zoo"


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def cached_weights_path(cfg: PretrainedCfg) -> Path:
    return cache_dir() / cfg.name / WEIGHTS_NAME


def _offline_message(cfg: PretrainedCfg, reason: str) -> str:
    return (f"weights for {cfg.name!r} are not available: {reason}. Download the checkpoint "
            f"({cfg.url or cfg.hf_hub_id}) elsewhere and convert it with "
            f"`deeplab-zoo convert CHECKPOINT --model {cfg.name} --out DIR`, then pass "
            f"pretrained='DIR'.")


def load_from_hf_hub(model: nn.Module, spec: str) -> None:
    """``spec`` = ``org/repo`` or ``org/repo@revision``; loads ``model.safetensors``."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo, _, revision = spec.partition("@")
    try:
        # huggingface_hub reads HF_HUB_OFFLINE once, at import; honour it at call time too.
        path = hf_hub_download(repo, WEIGHTS_NAME, revision=revision or None,
                               local_files_only=is_offline())
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot fetch {WEIGHTS_NAME} from hf-hub:{spec}: {exc}") from exc
    load_weights(model, path)


def _download(url: str, dest: Path, sha256: str) -> None:
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length", 0)) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {Path(url).name}") as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    if sha256 and digest.hexdigest() != sha256:
        raise CheckpointError(f"{url}: sha256 {digest.hexdigest()} does not match the "
                              f"registry's {sha256}; the download is corrupt or changed")


def convert_tf_checkpoint(model: nn.Module, checkpoint: str | os.PathLike) -> None:
    """Loads a DeepLab2 TF checkpoint (prefix, directory or tar.gz) into ``model``, strictly."""
    load_tf_variables(model, read_tf_checkpoint(checkpoint), strict=True)


PACKAGE_SCHEME = "package://"


def packaged_file(url: str) -> Path:
    """``package://<package>/<path>``: a data file shipped inside an installed package."""
    from importlib.resources import files

    package, _, relative = url[len(PACKAGE_SCHEME):].partition("/")
    path = Path(str(files(package).joinpath(relative)))
    if not path.is_file():
        raise CheckpointError(f"packaged weights {url} are missing at {path}; reinstall the "
                              f"package (or run the script that writes them)")
    return path


def load_pretrained(model: nn.Module, cfg: PretrainedCfg) -> None:
    """Loads the released weights of ``cfg`` into ``model`` (cache first)."""
    if cfg.hf_hub_id:
        load_from_hf_hub(model, cfg.hf_hub_id)
        return
    if not cfg.url:
        raise CheckpointError(f"{cfg.name!r} has no released weights; "
                              f"deeplab_zoo.list_pretrained() lists those that do")
    if cfg.url.startswith(PACKAGE_SCHEME):
        load_weights(model, packaged_file(cfg.url))
        return
    cached = cached_weights_path(cfg)
    if cached.is_file():
        load_weights(model, cached)
        return
    if is_offline():
        raise CheckpointError(_offline_message(cfg, f"offline and not cached at {cached}"))
    with tempfile.TemporaryDirectory(prefix="deeplab_zoo_") as tmp:
        archive = Path(tmp) / Path(cfg.url).name
        try:
            _download(cfg.url, archive, cfg.sha256)
        except OSError as exc:
            raise CheckpointError(_offline_message(cfg, f"download failed ({exc})")) from exc
        convert_tf_checkpoint(model, archive)
    save_weights(model, cached.parent, config={"name": cfg.name, "source": cfg.url})


def clear_cache(name: str | None = None) -> None:
    """Deletes cached converted weights (all, or one ``arch.tag``)."""
    target = cache_dir() / name if name else cache_dir()
    shutil.rmtree(target, ignore_errors=True)
