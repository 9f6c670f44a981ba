"""Training curves as a picture: one small panel per logged scalar (losses, learning rate).

The trainer writes ``metrics.png`` next to ``metrics.jsonl`` whenever it checkpoints, so
a run can be judged at a glance without a plotting library (drawn with Pillow).
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["plot_training_curves", "read_metrics"]

# Logged values that are not curves worth a panel.
_SKIPPED = ("step", "sec_per_step", "images_per_sec")
_PANEL = (300, 190)  # width, height of one panel in pixels
_MARGIN = dict(left=58, right=10, top=24, bottom=22)
_COLUMNS = 4
_LINE = (31, 119, 180)


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (one JSON object per line)."""
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _format(value: float) -> str:
    return f"{value:.3g}" if math.isfinite(value) else str(value)


def _draw_panel(draw: ImageDraw.ImageDraw, origin: tuple[int, int], name: str,
                steps: np.ndarray, values: np.ndarray) -> None:
    x0, y0 = origin
    left, top = x0 + _MARGIN["left"], y0 + _MARGIN["top"]
    right, bottom = x0 + _PANEL[0] - _MARGIN["right"], y0 + _PANEL[1] - _MARGIN["bottom"]
    finite = np.isfinite(values)
    # Losses span decades: a log axis when every value is positive.
    log = bool(finite.any() and (values[finite] > 0).all())
    shown = np.where(finite, values, np.nan)
    if log:
        shown = np.log10(np.where(finite, values, 1.0))
        shown[~finite] = np.nan
    last = values[finite][-1] if finite.any() else float("nan")
    draw.text((x0 + 6, y0 + 5), f"{name}  (last {_format(float(last))}"
              f"{', log scale' if log else ''})", fill=(0, 0, 0))
    draw.rectangle((left, top, right, bottom), outline=(120, 120, 120))
    if not finite.any():
        draw.text((left + 6, top + 6), "no finite values", fill=(200, 0, 0))
        return
    low, high = float(np.nanmin(shown)), float(np.nanmax(shown))
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    first_step, last_step = float(steps[0]), float(steps[-1])
    span = max(last_step - first_step, 1.0)

    def point(step: float, value: float) -> tuple[float, float]:
        return (left + (step - first_step) / span * (right - left),
                bottom - (value - low) / (high - low) * (bottom - top))

    for label, value in ((high, top), (low, bottom)):
        text = _format(10 ** label if log else label)
        draw.text((x0 + 4, value - 6), text, fill=(80, 80, 80))
    draw.text((left, bottom + 5), f"step {int(first_step)}", fill=(80, 80, 80))
    end_label = f"{int(last_step)}"
    draw.text((right - 6 * len(end_label), bottom + 5), end_label, fill=(80, 80, 80))
    # One polyline per run of finite values (gaps where a value was NaN / inf).
    run: list[tuple[float, float]] = []
    for step, value in zip(steps, shown):
        if np.isfinite(value):
            run.append(point(float(step), float(value)))
            continue
        if len(run) > 1:
            draw.line(run, fill=_LINE, width=2)
        run = []
    if len(run) > 1:
        draw.line(run, fill=_LINE, width=2)
    elif len(run) == 1:
        x, y = run[0]
        draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=_LINE)


def plot_training_curves(records: Sequence[dict[str, Any]] | str | os.PathLike,
                         path: str | os.PathLike | None = None,
                         keys: Sequence[str] | None = None) -> np.ndarray:
    """Draws the logged scalars against the step, one panel each.

    Args:
        records: the ``metrics.jsonl`` records (dicts with ``step``), or that file's path.
        path: where to write the PNG (optional).
        keys: which scalars (default: every logged one but speed and step: the losses,
            ``total_loss`` leading, then ``eval_*`` metrics, then the learning rate).

    Returns:
        The picture, HxWx3 uint8.
    """
    if not isinstance(records, Sequence) or isinstance(records, str):
        records = read_metrics(records)
    if not records:
        raise ValueError("no training records to plot")
    if keys is None:
        found = list(dict.fromkeys(k for r in records for k in r if k not in _SKIPPED))
        keys = sorted(found, key=lambda k: (k != "total_loss", k.startswith("eval_"),
                                            k == "learning_rate", k))
    if not keys:
        raise ValueError("the records hold no scalars to plot")
    rows = -(-len(keys) // _COLUMNS)
    columns = min(len(keys), _COLUMNS)
    image = Image.new("RGB", (columns * _PANEL[0], rows * _PANEL[1]), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for index, key in enumerate(keys):
        # Records without the key (e.g. evaluations logged every N steps) are skipped; a
        # logged NaN / inf leaves a gap in the line.
        logged = [(float(r.get("step", i)), float(r[key])) for i, r in enumerate(records)
                  if key in r]
        steps = np.array([step for step, _ in logged])
        values = np.array([value for _, value in logged])
        origin = ((index % _COLUMNS) * _PANEL[0], (index // _COLUMNS) * _PANEL[1])
        _draw_panel(draw, origin, key, steps, values)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
    return np.asarray(image)
