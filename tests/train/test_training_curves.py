"""metrics.jsonl -> a picture of the curves."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deeplab_zoo.viz import plot_training_curves, read_metrics

LINE = np.array([31, 119, 180])


def line_rows(panel: np.ndarray) -> dict[int, float]:
    """Mean row of the curve's pixels in each column of a panel."""
    hits = np.all(np.abs(panel.astype(int) - LINE) < 40, axis=-1)
    return {x: float(np.nonzero(hits[:, x])[0].mean()) for x in range(hits.shape[1])
            if hits[:, x].any()}


def test_decreasing_loss_goes_down_and_rising_rate_goes_up(tmp_path: Path) -> None:
    records = [{"step": s, "total_loss": 10.0 / s, "learning_rate": 1e-3 * s,
                "sec_per_step": 0.1} for s in range(1, 51)]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    image = plot_training_curves(path, tmp_path / "curves.png")
    assert image.shape == (190, 600, 3)  # two panels: speed and step are not plotted
    assert (tmp_path / "curves.png").is_file() and read_metrics(path) == records
    loss, rate = line_rows(image[:, :300]), line_rows(image[:, 300:])
    assert loss[min(loss)] < loss[max(loss)] - 100  # starts high (small row), ends low
    assert rate[min(rate)] > rate[max(rate)] + 100


def test_gaps_and_errors(tmp_path: Path) -> None:
    records = [{"step": s, "total_loss": float("nan") if s == 5 else 1.0 + s} for s in
               range(1, 11)]
    image = plot_training_curves(records, keys=["total_loss"])
    columns = sorted(line_rows(image))
    breaks = sum(b - a > 1 for a, b in zip(columns, columns[1:]))
    assert image.shape == (190, 300, 3) and breaks == 1  # the NaN leaves one gap
    with pytest.raises(ValueError, match="no training records"):
        plot_training_curves([])
    with pytest.raises(ValueError, match="no scalars"):
        plot_training_curves([{"step": 1, "sec_per_step": 0.2}])
