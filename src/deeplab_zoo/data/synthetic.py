"""Synthetic panoptic scenes: textured stuff regions with thing shapes on top.

Used by the offline demo, the demo model's training script and the tests, so that
nothing has to be downloaded. A scene has three *stuff* classes (road, vegetation,
sky: large textured regions) and three *thing* classes (disc, box, triangle: shapes of
10-30 pixels with a class colour family, several instances each), plus occasional
void pixels (an unlabelled dark strip at the bottom). Sizes and textures are in
absolute pixels, so a model trained on crops works on scenes of any size.

Optionally a scene carries metric depth (ground plane, standing things; sky unknown)
and several frames in which the things move with constant velocities and keep their
instance ids (for video / motion targets).

Labels use the registered ``synthetic`` :class:`~deeplab_zoo.data.datasets.DatasetInfo`:
``semantic * 1000 + instance``, void ``255 * 1000``.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .datasets import DatasetInfo, register_dataset_info
from .sample import Sample

__all__ = [
    "SYNTHETIC",
    "SyntheticPanopticDataset",
    "make_scene",
    "make_sequence",
]

CLASS_NAMES = ("road", "vegetation", "sky", "disc", "box", "triangle")
COLORS = ((128, 128, 128), (60, 150, 50), (110, 170, 235), (225, 45, 45), (240, 200, 30),
          (150, 70, 210))
STUFF = (0, 1, 2)
THINGS = (3, 4, 5)
ROAD, VEGETATION, SKY, DISC, BOX, TRIANGLE = range(6)
LABEL_DIVISOR = 1000
IGNORE_LABEL = 255

#: Label conventions of the synthetic scenes (registered as dataset ``"synthetic"``).
SYNTHETIC = DatasetInfo("synthetic", num_classes=len(CLASS_NAMES), ignore_label=IGNORE_LABEL,
                        label_divisor=LABEL_DIVISOR, thing_class_ids=THINGS,
                        class_names=CLASS_NAMES, colors=COLORS)
register_dataset_info(SYNTHETIC)

# Colour families of the things (the instance colour is jittered around one of them).
_THING_PALETTES = {
    DISC: ((225, 45, 45), (200, 30, 80), (240, 90, 60)),
    BOX: ((240, 200, 30), (250, 160, 20), (220, 220, 70)),
    TRIANGLE: ((150, 70, 210), (110, 50, 190), (190, 90, 220)),
}


@dataclass
class _Thing:
    cls: int
    instance: int
    cy: float
    cx: float
    size: float  # characteristic radius in pixels
    aspect: float
    angle: float
    color: np.ndarray
    depth: float
    vy: float
    vx: float

    def window(self, height: int, width: int, frame: int
               ) -> tuple[slice, slice, np.ndarray] | None:
        """``(rows, cols, mask)``: the shape's mask inside its bounding box (None if outside)."""
        cy, cx = self.cy + self.vy * frame, self.cx + self.vx * frame
        reach = self.size * max(self.aspect, 1.0) + 2.0
        y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 2, height)
        x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 2, width)
        if y0 >= y1 or x0 >= x1:
            return None
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        u = (xx - cx) * cos + (yy - cy) * sin
        v = -(xx - cx) * sin + (yy - cy) * cos
        if self.cls == DISC:
            mask = (u / (self.size * self.aspect)) ** 2 + (v / self.size) ** 2 <= 1.0
        elif self.cls == BOX:
            mask = (np.abs(u) <= self.size * self.aspect * 0.8) & (np.abs(v) <= self.size * 0.8)
        else:  # triangle: three half-planes at 120 degrees, circumradius `size`
            mask = np.ones(u.shape, dtype=bool)
            for k in range(3):
                a = 2.0 * np.pi * k / 3.0
                mask &= u * np.cos(a) + v * np.sin(a) <= self.size * 0.5
        return slice(y0, y1), slice(x0, x1), mask


def _lerp_axis(grid: np.ndarray, size: int, cell: int, axis: int) -> np.ndarray:
    """Linear interpolation of ``grid`` along ``axis`` to ``size`` samples, ``cell`` apart."""
    pos = np.arange(size, dtype=np.float32) / cell
    low = np.minimum(pos.astype(np.int64), grid.shape[axis] - 2)
    frac = pos - low
    shape = [1, 1]
    shape[axis] = size
    frac = frac.reshape(shape)
    return (np.take(grid, low, axis=axis) * (1.0 - frac)
            + np.take(grid, low + 1, axis=axis) * frac)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a random grid with ``cell``-pixel spacing, bilinear.

    (Element-wise gathers rather than interpolation matrices: BLAS threads would contend
    with the training process for the cores.)
    """
    gh, gw = height // cell + 2, width // cell + 2
    grid = rng.uniform(-1.0, 1.0, size=(gh, gw)).astype(np.float32)
    return _lerp_axis(_lerp_axis(grid, height, cell, 0), width, cell, 1)


@functools.lru_cache(maxsize=8)
def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates (float32, read-only, cached per size)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy.flags.writeable = xx.flags.writeable = False
    return yy, xx


@functools.lru_cache(maxsize=8)
def _lane_marks(height: int, width: int) -> np.ndarray:
    """Dashed diagonal lane markings painted on the road (cached per size)."""
    yy, xx = np.mgrid[0:height, 0:width]
    marks = (np.abs((5 * xx + 3 * yy) % 240 - 120) < 10) & (yy % 20 < 11)
    marks.flags.writeable = False
    return marks


class _Scene:
    """One random scene: static textured background plus moving things."""

    def __init__(self, rng: np.random.Generator, height: int, width: int, num_things: int,
                 max_speed: float, void_prob: float):
        self.height, self.width = height, width
        yy, xx = _grid(height, width)
        # Stuff layout: a wavy horizon, vegetation along it, road below.
        horizon = height * rng.uniform(0.3, 0.5) + 6.0 * np.sin(
            xx[0] / rng.uniform(25, 60) + rng.uniform(0, 2 * np.pi))
        semantic = np.where(yy < horizon[None, :], SKY, ROAD).astype(np.int32)
        band = rng.uniform(12, 30) + 10.0 * _smooth_noise(rng, 1, width, 24)[0]
        veg = (yy >= horizon[None, :]) & (yy < (horizon + band)[None, :])
        patches = _smooth_noise(rng, height, width, 40) > rng.uniform(0.35, 0.6)
        veg |= patches & (yy >= horizon[None, :] + 20)
        semantic[veg] = VEGETATION
        self.semantic = semantic
        self.horizon = float(horizon.mean())
        self.void = np.zeros((height, width), dtype=bool)
        if rng.uniform() < void_prob:
            strip = int(rng.integers(5, 13))
            x0 = int(rng.integers(0, width // 3))
            x1 = int(rng.integers(2 * width // 3, width + 1))
            self.void[height - strip:, x0:x1] = True
        self.background = self._texture(rng)
        self.ground_depth = np.where(
            semantic == SKY, 0.0,
            np.clip(400.0 / np.maximum(yy - horizon[None, :] + 8.0, 1.0), 1.0, 80.0))
        self.things = self._place_things(rng, num_things, max_speed)

    def _texture(self, rng: np.random.Generator) -> np.ndarray:
        h, w = self.height, self.width
        sem = self.semantic
        fine = rng.standard_normal(size=(h, w), dtype=np.float32)
        # Per-class brightness modulation: speckled road, blotchy vegetation, cloudy sky.
        road = 10.0 * fine + 14.0 * _smooth_noise(rng, h, w, 16)
        veg = 8.0 * fine + 22.0 * _smooth_noise(rng, h, w, 6)
        ramp = np.linspace(-25.0, 20.0, h, dtype=np.float32)[:, None]
        sky = ramp + 120.0 * np.clip(_smooth_noise(rng, h, w, 30) - 0.3, 0.0, None) + 3.0 * fine
        modulation = np.where(sem == ROAD, road, np.where(sem == VEGETATION, veg, sky))
        channel_gain = np.array([[1.0, 1.0, 1.0], [0.6, 1.0, 0.5], [1.0, 1.0, 1.0]], np.float32)
        base = np.asarray(COLORS, dtype=np.float32)[sem]
        image = base + modulation[..., None] * channel_gain[sem]
        image[_lane_marks(h, w) & (sem == ROAD)] = (220.0, 220.0, 210.0)
        image[self.void] = 35.0 + 12.0 * fine[self.void][:, None]
        return image

    def _place_things(self, rng: np.random.Generator, count: int,
                      max_speed: float) -> list[_Thing]:
        things: list[_Thing] = []
        occupied = self.void.copy()
        counters = dict.fromkeys(THINGS, 0)
        attempts = 0
        while len(things) < count and attempts < 20 * count + 20:
            attempts += 1
            cls = int(THINGS[rng.integers(len(THINGS))])
            size = float(rng.uniform(12.0, 28.0)) * (1.4 if cls == TRIANGLE else 1.0)
            cy = float(rng.uniform(0.15 * self.height, self.height - 4))
            cx = float(rng.uniform(0, self.width))
            palette = _THING_PALETTES[cls]
            color = np.asarray(palette[rng.integers(len(palette))], np.float32)
            color = color + rng.uniform(-25.0, 25.0, size=3).astype(np.float32)
            row = int(np.clip(cy, 0, self.height - 1))
            depth = float(self.ground_depth[row, int(np.clip(cx, 0, self.width - 1))] or 60.0)
            speed = rng.uniform(-max_speed, max_speed, size=2) if max_speed > 0 else (0.0, 0.0)
            thing = _Thing(cls, 0, cy, cx, size, float(rng.uniform(0.7, 1.4)),
                           float(rng.uniform(0, np.pi)), color, depth, float(speed[0]),
                           float(speed[1]))
            placed = thing.window(self.height, self.width, 0)
            if placed is None:
                continue
            rows, cols, mask = placed
            area = int(mask.sum())
            visible = int((mask & ~occupied[rows, cols]).sum())
            # Mostly visible, not tiny: keeps the instances well defined.
            if area < 200 or visible < 0.75 * area:
                continue
            counters[cls] += 1
            thing.instance = counters[cls]
            occupied[rows, cols] |= mask
            things.append(thing)
        things.sort(key=lambda t: t.depth)  # nearest first: it is drawn on top
        return things

    def render(self, frame: int, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image HxWx3 uint8, panoptic HxW int32, depth HxW float32) of one frame."""
        image = self.background.copy()
        panoptic = self.semantic * LABEL_DIVISOR
        depth = self.ground_depth.astype(np.float32).copy()
        free = ~self.void
        shade = 1.0 + 0.12 * _smooth_noise(rng, self.height, self.width, 8)[..., None]
        for thing in self.things:
            placed = thing.window(self.height, self.width, frame)
            if placed is None:
                continue
            rows, cols, mask = placed
            mask = mask & free[rows, cols]
            free[rows, cols] &= ~mask
            panoptic[rows, cols][mask] = thing.cls * LABEL_DIVISOR + thing.instance
            depth[rows, cols][mask] = thing.depth
            image[rows, cols][mask] = (thing.color * shade[rows, cols][mask]
                                       + rng.normal(0.0, 6.0, size=(int(mask.sum()), 3)))
        panoptic[self.void] = IGNORE_LABEL * LABEL_DIVISOR
        depth[self.void] = 0.0
        return (np.clip(image, 0, 255).astype(np.uint8), panoptic.astype(np.int32),
                depth.astype(np.float32))


def _check_size(height: int, width: int) -> None:
    if height < 8 or width < 8:
        raise ValueError(f"scene must be at least 8x8, got {height}x{width}")


def make_sequence(height: int = 257, width: int = 385, *, seed: int | np.random.SeedSequence
                  = 0, num_things: int = 4, frames: int = 1, max_speed: float = 3.0,
                  void_prob: float = 0.25) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``frames`` frames of one scene: ``[(image, panoptic, depth), ...]``.

    Things move by up to ``max_speed`` pixels per frame and keep their instance ids.
    """
    _check_size(height, width)
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    rng = np.random.default_rng(seed)
    scene = _Scene(rng, height, width, num_things, max_speed if frames > 1 else 0.0, void_prob)
    return [scene.render(t, rng) for t in range(frames)]


def make_scene(height: int = 257, width: int = 385, *, seed: int = 0,
               num_things: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(image HxWx3 uint8, panoptic HxW int32)`` for one random scene."""
    image, panoptic, _ = make_sequence(height, width, seed=seed, num_things=num_things)[0]
    return image, panoptic


class SyntheticPanopticDataset(torch.utils.data.Dataset):
    """Deterministic synthetic panoptic scenes as :class:`~deeplab_zoo.data.sample.Sample`.

    Args:
        num_images: number of scenes (sequences when ``frames > 1``).
        size: ``(height, width)`` of every scene.
        seed: dataset seed; scene ``i`` is a pure function of ``(seed, i)``.
        transform: optional ``Sample -> Sample`` callable applied last.
        depth: add the ``depth`` map (metres, 0 = unknown: sky and void).
        frames: frames per scene. With ``frames > 1`` the dataset has
            ``num_images * frames`` samples; each one is a frame pair: ``image`` is
            ``[6, H, W]`` (current frame, then the other frame) and ``prev_panoptic``
            (or ``next_panoptic`` with ``pair="next"``) labels the other frame. The
            first frame's previous frame (the last frame's next frame) is itself.
        num_things: ``(low, high)`` inclusive range of thing instances per scene.
        pair: ``"prev"`` (Motion-DeepLab) or ``"next"`` (ViP-DeepLab) frame pairs.
    """

    info = SYNTHETIC

    def __init__(self, num_images: int, size: tuple[int, int] = (257, 385), seed: int = 0, *,
                 transform: Callable[[Sample], Sample] | None = None, depth: bool = False,
                 frames: int = 1, num_things: tuple[int, int] = (3, 8), pair: str = "prev"):
        if num_images < 0:
            raise ValueError(f"num_images must be >= 0, got {num_images}")
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        if pair not in ("prev", "next"):
            raise ValueError(f"pair must be 'prev' or 'next', got {pair!r}")
        if num_things[0] < 0 or num_things[1] < num_things[0]:
            raise ValueError(f"num_things must be a (low, high) range, got {num_things}")
        _check_size(*size)
        self.num_images = num_images
        self.size = (int(size[0]), int(size[1]))
        self.seed = seed
        self.transform = transform
        self.depth = depth
        self.frames = frames
        self.num_things = num_things
        self.pair = pair

    def __len__(self) -> int:
        return self.num_images * self.frames

    def _sequence(self, scene: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        seq = np.random.SeedSequence([self.seed, scene])
        count = int(np.random.default_rng(seq.spawn(1)[0]).integers(
            self.num_things[0], self.num_things[1] + 1))
        return make_sequence(*self.size, seed=seq, num_things=count, frames=self.frames)

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index %= len(self)
        scene, frame = divmod(index, self.frames)
        frames = self._sequence(scene)
        image, panoptic, depth = frames[frame]
        sample: Sample = {
            "image": torch.from_numpy(image).permute(2, 0, 1).contiguous(),
            "panoptic": torch.from_numpy(panoptic),
            "crowd": torch.zeros(panoptic.shape, dtype=torch.bool),
            "name": f"synthetic_{self.seed}_{scene:06d}"
                    + (f"_{frame:03d}" if self.frames > 1 else ""),
        }
        if self.depth:
            sample["depth"] = torch.from_numpy(depth)
        if self.frames > 1:
            other = max(frame - 1, 0) if self.pair == "prev" else min(frame + 1, self.frames - 1)
            other_image, other_panoptic, _ = frames[other]
            sample["image"] = torch.cat(
                [sample["image"], torch.from_numpy(other_image).permute(2, 0, 1)], dim=0)
            sample[f"{self.pair}_panoptic"] = torch.from_numpy(other_panoptic)
            sample["sequence"] = f"{self.seed}_{scene:06d}"
            sample["frame"] = frame
        if self.transform is not None:
            sample = self.transform(sample)
        return sample
