"""Robust readers for dataset files: every failure is a :class:`DatasetError` naming the file.

Images are decoded the way DeepLab2's converters see them (``PIL`` for labels,
three-channel RGB for images, no EXIF rotation). Label PNGs keep their bit depth
(16-bit PNGs come back as ``uint16``/``int32`` arrays, not truncated).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DatasetError

PathLike = str | os.PathLike


def require_file(path: PathLike, what: str = "file") -> Path:
    """Returns ``path`` as a Path; DatasetError naming it if it is not a file."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing {what}: {path}")
    return path


def require_dir(path: PathLike, what: str = "folder") -> Path:
    """Returns ``path`` as a Path; DatasetError naming it if it is not a directory."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"missing {what}: {path}")
    return path


def _open(path: PathLike, what: str) -> Image.Image:
    path = Path(path)
    try:
        image = Image.open(path)
        image.load()  # decode now, so truncated/corrupt data fails here
    except FileNotFoundError as err:
        raise DatasetError(f"missing {what}: {path}") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DatasetError(f"corrupt or unreadable {what}: {path} ({err})") from err
    return image


def read_image(path: PathLike) -> np.ndarray:
    """Reads an RGB image as ``uint8 [H, W, 3]`` (grey/palette/alpha images converted)."""
    image = _open(path, "image")
    if image.mode != "RGB":
        try:
            image = image.convert("RGB")
        except (OSError, ValueError) as err:
            raise DatasetError(f"cannot convert image {path} ({image.mode}) to RGB: {err}") from err
    return np.asarray(image, dtype=np.uint8)


def read_label_png(path: PathLike) -> np.ndarray:
    """Reads a label PNG with its values untouched: ``[H, W]`` or ``[H, W, C]`` integers."""
    image = _open(path, "label PNG")
    array = np.asarray(image)
    if array.dtype.kind not in "iub":
        raise DatasetError(f"label PNG {path} has non-integer pixels (mode {image.mode})")
    return array


def read_rgb_label(path: PathLike) -> np.ndarray:
    """Reads a 3-channel label PNG (mode RGB, as DeepLab2 requires) as ``int32 [H, W, 3]``."""
    image = _open(path, "label PNG")
    if image.mode != "RGB":
        raise DatasetError(f"expected an RGB label PNG, got mode {image.mode}: {path}")
    return np.asarray(image, dtype=np.int32)


def read_rgb_ids(path: PathLike) -> np.ndarray:
    """Reads a panoptic-API PNG and returns segment ids ``R + 256 G + 256^2 B`` (int32)."""
    rgb = read_rgb_label(path)
    return rgb[..., 0] + (rgb[..., 1] << 8) + (rgb[..., 2] << 16)


def read_json(path: PathLike) -> Any:
    """Parses a JSON file; DatasetError naming it when missing or malformed."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as err:
        raise DatasetError(f"missing JSON file: {path}") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"malformed JSON file: {path} ({err})") from err
    except OSError as err:
        raise DatasetError(f"unreadable JSON file: {path} ({err})") from err
