"""COCO-panoptic-format datasets (JSON ``segments_info`` + id PNGs), and the custom-dataset path.

:func:`decode_segments` turns one panoptic-API PNG (``id = R + 256 G + 256^2 B``) and its
``segments_info`` into DeepLab2's panoptic label exactly as DeepLab2's
``build_{cityscapes,coco,ade20k}_data.py::_generate_panoptic_label`` does:

- pixels of no listed segment are void (``ignore_label``); every listed segment gets its
  (mapped) ``category_id``;
- thing segments get instance ids 1, 2, ... per class in JSON order; crowd thing
  segments get instance 0 and, with ``treat_crowd_as_ignore`` (DeepLab2's default),
  the ignore label;
- a crowd stuff segment, a segment whose pixel count differs from its ``area`` (where
  checked), too many instances or an unknown category raise DatasetError naming the files.

:class:`JsonPanopticDataset` is the reader shared by Cityscapes, COCO, ADE20K and
:class:`CustomPanopticDataset` (your own data in that format).
"""
from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import DatasetError
from .base import (
    PanopticDataset,
    Transform,
    bool_tensor,
    check_same_size,
    image_tensor,
    label_tensor,
)
from .datasets import DatasetInfo
from .io import read_image, read_json, read_rgb_ids, require_dir
from .sample import Sample

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class JsonRecord(NamedTuple):
    name: str
    image: Path
    label: Path | None
    segments: list[dict] | None


def decode_segments(ids: np.ndarray, segments: Sequence[dict], *, category_map: Any,
                    info: DatasetInfo, treat_crowd_as_ignore: bool = True,
                    check_area: bool = True, source: str = "") -> tuple[np.ndarray, np.ndarray]:
    """``(panoptic int32 [H, W], crowd bool [H, W])`` from segment ids and ``segments_info``.

    ``category_map`` maps a JSON ``category_id`` to the dataset's semantic id (a dict or
    a callable; a missing key is an error). ``crowd`` marks every ``iscrowd`` segment
    (and is what DeepLab2 calls the crowd region when crowd is not ignored).
    """
    divisor, ignore = info.label_divisor, info.ignore_label
    things = set(info.thing_class_ids)
    uniq = np.unique(ids)
    inverse = np.searchsorted(uniq, ids)  # faster than np.unique(return_inverse=True)
    counts = np.bincount(inverse.ravel(), minlength=len(uniq))
    semantic_lut = np.full(len(uniq), ignore, dtype=np.int64)
    instance_lut = np.zeros(len(uniq), dtype=np.int64)
    crowd_lut = np.zeros(len(uniq), dtype=bool)
    instance_count: dict[int, int] = defaultdict(int)
    seen: set[int] = set()
    for segment in segments:
        try:
            segment_id = int(segment["id"])
            raw_category = int(segment["category_id"])
        except (KeyError, TypeError, ValueError) as err:
            raise DatasetError(f"{source}: malformed segment {segment!r}") from err
        if segment_id in seen:
            raise DatasetError(f"{source}: segment id {segment_id} listed twice")
        seen.add(segment_id)
        pos = int(np.searchsorted(uniq, segment_id))
        present = pos < len(uniq) and int(uniq[pos]) == segment_id
        area = int(counts[pos]) if present else 0
        if check_area and "area" in segment and area != int(segment["area"]):
            raise DatasetError(f"{source}: segment {segment_id} should cover "
                               f"{segment['area']} pixels but covers {area}")
        try:
            category = int(category_map(raw_category) if callable(category_map)
                           else category_map[raw_category])
        except (KeyError, IndexError) as err:
            raise DatasetError(f"{source}: unknown category_id {raw_category} "
                               f"(segment {segment_id})") from err
        if category != ignore and not 0 <= category < info.num_classes:
            raise DatasetError(f"{source}: category_id {raw_category} maps to {category}, "
                               f"outside [0, {info.num_classes})")
        is_crowd = bool(segment.get("iscrowd", 0))
        instance = 0
        if category in things:
            if is_crowd:
                if treat_crowd_as_ignore:
                    category = ignore
            else:
                instance_count[category] += 1
                instance = instance_count[category]
                if instance >= divisor:
                    raise DatasetError(f"{source}: more than {divisor - 1} instances of "
                                       f"class {category}")
        elif is_crowd:
            raise DatasetError(f"{source}: stuff segment {segment_id} (category "
                               f"{raw_category}) is marked iscrowd")
        if present:
            semantic_lut[pos] = category
            instance_lut[pos] = instance
            crowd_lut[pos] = is_crowd
    panoptic_lut = (semantic_lut * divisor + instance_lut).astype(np.int32)
    return panoptic_lut[inverse], crowd_lut[inverse]


def read_panoptic_json(path: Path, key: str = "file_stem") -> dict[str, tuple[str, list[dict]]]:
    """Maps each annotation to ``(png file name, segments_info)``.

    ``key`` is ``"file_stem"`` (COCO, ADE20K: the PNG name without extension) or
    ``"image_id"`` (Cityscapes). A duplicated image id is an error (as in DeepLab2).
    """
    data = read_json(path)
    try:
        annotations = data["annotations"]
    except (KeyError, TypeError) as err:
        raise DatasetError(f"{path} has no 'annotations' list") from err
    out: dict[str, tuple[str, list[dict]]] = {}
    image_ids: set[Any] = set()
    for annotation in annotations:
        try:
            image_id = annotation["image_id"]
            file_name = annotation["file_name"]
            segments = annotation["segments_info"]
        except (KeyError, TypeError) as err:
            raise DatasetError(f"{path}: malformed annotation {str(annotation)[:200]}") from err
        if image_id in image_ids:
            raise DatasetError(f"{path}: image id {image_id!r} annotated twice")
        image_ids.add(image_id)
        name = str(image_id) if key == "image_id" else os.path.splitext(file_name)[0]
        out[name] = (file_name, segments)
    return out


def list_images(folder: Path, pattern: str = "*", suffixes: Iterable[str] = IMAGE_EXTENSIONS
                ) -> list[Path]:
    """Sorted image files matching ``pattern`` under ``folder`` (DatasetError if no folder)."""
    require_dir(folder, "image folder")
    suffixes = tuple(suffixes)
    return sorted(p for p in folder.glob(pattern) if p.suffix.lower() in suffixes and p.is_file())


class JsonPanopticDataset(PanopticDataset):
    """Reader for images + one COCO-panoptic JSON + a folder of id PNGs.

    Subclasses provide ``_image_files()`` (sorted paths), ``_image_key(path)``, the
    JSON path and PNG folder (``None`` for unlabelled splits), ``category_map``,
    ``json_key`` and ``check_area``.
    """

    json_key = "file_stem"
    check_area = True

    def __init__(self, root: str | Path, split: str, *, transform: Transform | None = None,
                 skip_bad: bool = False, treat_crowd_as_ignore: bool = True) -> None:
        self.treat_crowd_as_ignore = treat_crowd_as_ignore
        super().__init__(root, split, transform=transform, skip_bad=skip_bad)

    # hooks -----------------------------------------------------------------------------
    def _image_files(self) -> list[Path]:
        raise NotImplementedError

    def _image_key(self, path: Path) -> str:
        return path.stem

    def _json_path(self) -> Path | None:
        raise NotImplementedError

    def _label_dir(self) -> Path | None:
        raise NotImplementedError

    def category_map(self, category_id: int) -> int:
        raise NotImplementedError

    # reader ------------------------------------------------------------------------------
    def _index(self) -> list[JsonRecord]:
        images = self._image_files()
        json_path = self._json_path()
        if json_path is None:
            return [JsonRecord(self._image_key(p), p, None, None) for p in images]
        annotations = read_panoptic_json(json_path, self.json_key)
        label_dir = self._label_dir()
        require_dir(label_dir, "panoptic PNG folder")
        records = []
        for image in images:
            name = self._image_key(image)
            if name not in annotations:
                self._bad_file(DatasetError(f"no annotation in {json_path} for image {image}"))
                continue
            file_name, segments = annotations[name]
            label = label_dir / file_name
            if self._check_files((label, "panoptic PNG")):
                records.append(JsonRecord(name, image, label, segments))
        return records

    def _load(self, record: JsonRecord) -> Sample:
        image = read_image(record.image)
        sample: Sample = {"image": image_tensor(image), "name": record.name}
        if record.label is None:
            return sample
        ids = read_rgb_ids(record.label)
        check_same_size(record.label, ids, image)
        panoptic, crowd = decode_segments(
            ids, record.segments, category_map=self.category_map, info=self.info,
            treat_crowd_as_ignore=self.treat_crowd_as_ignore, check_area=self.check_area,
            source=f"{record.label} ({self._json_path()})")
        sample["panoptic"] = label_tensor(panoptic)
        sample["crowd"] = bool_tensor(crowd)
        return sample


class CustomPanopticDataset(JsonPanopticDataset):
    """Your own data in COCO panoptic format.

    Layout (each part relative to ``root``; ``{split}`` is substituted):
    ``image_dir`` (default ``images/{split}``), ``json_file`` (``panoptic_{split}.json``)
    and ``label_dir`` (``panoptic_{split}``, the id PNGs named by the JSON's ``file_name``).
    Images are matched to annotations through the JSON ``images`` list when it names
    them, else by file stem. Categories: the JSON ``categories`` sorted by id map to
    1..K and 0 is void (DeepLab2's COCO convention), unless ``category_ids`` gives the
    original ids in contiguous order. Things are the categories with ``isthing``
    (or ``thing_ids``, original ids). The resulting descriptor is :attr:`info`.
    """

    def __init__(self, root: str | Path, split: str, *, transform: Transform | None = None,
                 skip_bad: bool = False, treat_crowd_as_ignore: bool = True,
                 image_dir: str = "images/{split}", label_dir: str = "panoptic_{split}",
                 json_file: str = "panoptic_{split}.json", label_divisor: int = 1000,
                 category_ids: Sequence[int] | None = None,
                 thing_ids: Sequence[int] | None = None, check_area: bool = True,
                 name: str = "custom") -> None:
        root = Path(root)
        self._image_dir = root / image_dir.format(split=split)
        self._labels = root / label_dir.format(split=split)
        self._json = root / json_file.format(split=split)
        self.check_area = check_area
        data = read_json(self._json)
        categories = data.get("categories") if isinstance(data, dict) else None
        if category_ids is None:
            if not categories:
                raise DatasetError(f"{self._json} has no 'categories'; pass category_ids")
            category_ids = sorted(int(c["id"]) for c in categories)
        self._mapping = {int(cid): i + 1 for i, cid in enumerate(category_ids)}
        by_id = {int(c["id"]): c for c in categories or ()}
        if thing_ids is None:
            thing_ids = [cid for cid in category_ids if by_id.get(cid, {}).get("isthing")]
        colors = tuple(tuple(by_id[c]["color"]) for c in category_ids
                       if "color" in by_id.get(c, {}))
        self.info = DatasetInfo(
            name, len(category_ids) + 1, 0, label_divisor,
            tuple(sorted(self._mapping[t] for t in thing_ids)),
            ("void",) + tuple(str(by_id.get(c, {}).get("name", c)) for c in category_ids),
            ((0, 0, 0),) + colors if len(colors) == len(category_ids) else ())
        self._file_of_image: dict[str, str] = {}
        for entry in (data.get("images") or []) if isinstance(data, dict) else []:
            if "file_name" in entry:
                self._file_of_image[str(entry.get("id"))] = entry["file_name"]
        self._json_data = data
        super().__init__(root, split, transform=transform, skip_bad=skip_bad,
                         treat_crowd_as_ignore=treat_crowd_as_ignore)
        del self._json_data

    def category_map(self, category_id: int) -> int:
        return self._mapping[category_id]

    def _json_path(self) -> Path:
        return self._json

    def _label_dir(self) -> Path:
        return self._labels

    def _index(self) -> list[JsonRecord]:
        require_dir(self._image_dir, "image folder")
        require_dir(self._labels, "panoptic PNG folder")
        by_stem = {p.stem: p for p in list_images(self._image_dir)}
        records = []
        seen: set[str] = set()
        for annotation in self._json_data.get("annotations", []):
            try:
                image_id, file_name = annotation["image_id"], annotation["file_name"]
                segments = annotation["segments_info"]
            except (KeyError, TypeError) as err:
                raise DatasetError(f"{self._json}: malformed annotation "
                                   f"{str(annotation)[:200]}") from err
            if str(image_id) in seen:
                raise DatasetError(f"{self._json}: image id {image_id!r} annotated twice")
            seen.add(str(image_id))
            listed = self._file_of_image.get(str(image_id))
            stem = os.path.splitext(file_name)[0]
            image = self._image_dir / listed if listed else by_stem.get(stem)
            if image is None:
                image = self._image_dir / f"{stem}.jpg"
            label = self._labels / file_name
            if self._check_files((image, "image"), (label, "panoptic PNG")):
                records.append(JsonRecord(os.path.splitext(image.name)[0], image, label,
                                          segments))
        return sorted(records, key=lambda r: r.name)
