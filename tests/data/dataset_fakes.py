"""Tiny on-disk datasets in the real layouts and encodings (32x48 images).

Imported by the tests in tests/data as ``dataset_fakes``. Each builder writes under a
``tmp_path`` and returns what the test needs to compute expectations by hand.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

H, W = 32, 48


def write_png(path: Path, array: np.ndarray) -> Path:
    """uint8 HxWx3 -> RGB, uint8 HxW -> L, uint16 HxW -> 16-bit grey."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.dtype == np.uint16:
        image = Image.fromarray(array)  # mode I;16
    else:
        image = Image.fromarray(array.astype(np.uint8))
    image.save(path)
    return path


def write_jpg(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path, quality=95)
    return path


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def image_array(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def ids_to_rgb(ids: np.ndarray) -> np.ndarray:
    """Panoptic-API colour encoding: [id % 256, id // 256 % 256, id // 65536]."""
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


def sem_inst_to_rgb(semantic: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """STEP encoding: R = semantic, G = instance // 256, B = instance % 256."""
    return np.stack([semantic, instance // 256, instance % 256], axis=-1).astype(np.uint8)


def segments(ids: np.ndarray, spec: list[tuple[int, int, int]]) -> list[dict]:
    """segments_info for ``(id, category_id, iscrowd)`` with true areas."""
    return [{"id": sid, "category_id": cat, "iscrowd": crowd, "area": int((ids == sid).sum()),
             "bbox": [0, 0, 1, 1]} for sid, cat, crowd in spec]


def region_ids(layout: dict[str, int]) -> np.ndarray:
    """A fixed 32x48 arrangement of segment ids (regions named in the layout)."""
    ids = np.full((H, W), layout["top"], dtype=np.int64)
    ids[16:, :] = layout["bottom"]
    ids[18:26, 2:12] = layout["thing_a"]
    ids[20:30, 20:28] = layout["thing_b"]
    ids[4:10, 30:44] = layout["crowd"]
    ids[0:2, 0:4] = layout["void"]
    return ids


def masks() -> dict[str, np.ndarray]:
    """Boolean masks of the regions ``region_ids`` paints (later regions win)."""
    names = ("top", "bottom", "thing_a", "thing_b", "crowd", "void")
    ids = region_ids({n: i for i, n in enumerate(names)})
    return {n: ids == i for i, n in enumerate(names)}


# -- Cityscapes ----------------------------------------------------------------------------
CITYSCAPES_NAME = "aachen_000000_000019"
# Segment ids as cityscapesScripts writes them (labelId or labelId*1000+k), categories train ids.
CITYSCAPES_LAYOUT = {"top": 23, "bottom": 7, "thing_a": 26000, "thing_b": 26001, "crowd": 24,
                     "void": 0}
CITYSCAPES_SEGMENTS = [(23, 10, 0), (7, 0, 0), (26001, 13, 0), (26000, 13, 0), (24, 11, 1)]


def make_cityscapes(root: Path, split: str = "val") -> dict:
    image = image_array(1)
    write_png(root / "leftImg8bit" / split / "aachen" / f"{CITYSCAPES_NAME}_leftImg8bit.png",
              image)
    ids = region_ids(CITYSCAPES_LAYOUT)
    png_name = f"{CITYSCAPES_NAME}_gtFine_panoptic.png"
    png = write_png(root / "gtFine" / f"cityscapes_panoptic_{split}_trainId" / png_name,
                    ids_to_rgb(ids))
    js = write_json(root / "gtFine" / f"cityscapes_panoptic_{split}_trainId.json", {
        "annotations": [{"image_id": CITYSCAPES_NAME, "file_name": png_name,
                         "segments_info": segments(ids, CITYSCAPES_SEGMENTS)}],
        "categories": [{"id": i, "name": str(i)} for i in range(19)],
    })
    return {"image": image, "png": png, "json": js, "ids": ids}


# -- COCO --------------------------------------------------------------------------------------
COCO_LAYOUT = {"top": 5000, "bottom": 6000, "thing_a": 101, "thing_b": 102, "crowd": 103,
               "void": 0}
# (id, original category id, iscrowd): sky-other-merged 187, wall-other-merged 199,
# person 1, car 3, crowd person.
COCO_SEGMENTS = [(5000, 187, 0), (6000, 199, 0), (101, 1, 0), (102, 3, 0), (103, 1, 1)]


def make_coco(root: Path, split: str = "val", stems: tuple[str, ...] = ("000000000139",)) -> dict:
    annotations, out = [], {}
    for k, stem in enumerate(stems):
        image = image_array(10 + k)
        write_jpg(root / f"{split}2017" / f"{stem}.jpg", image)
        ids = region_ids(COCO_LAYOUT)
        png = write_png(root / "annotations" / f"panoptic_{split}2017" / f"{stem}.png",
                        ids_to_rgb(ids))
        annotations.append({"image_id": int(stem), "file_name": f"{stem}.png",
                            "segments_info": segments(ids, COCO_SEGMENTS)})
        out[stem] = png
    js = write_json(root / "annotations" / f"panoptic_{split}2017.json",
                    {"annotations": annotations, "categories": []})
    return {"pngs": out, "json": js}


# -- ADE20K ------------------------------------------------------------------------------------
ADE_LAYOUT = {"top": 1, "bottom": 2, "thing_a": 3, "thing_b": 4, "crowd": 5, "void": 0}
# (id, Mask2Former category 0..149 or 255, iscrowd): wall 0, floor 3, person 12 twice, and a
# segment labelled 255 (void).
ADE_SEGMENTS = [(1, 0, 0), (2, 3, 0), (3, 12, 0), (4, 12, 0), (5, 255, 0)]


def make_ade20k(root: Path, split: str = "val") -> dict:
    folder = {"train": "training", "val": "validation"}[split]
    stem = "ADE_val_00000001"
    image = image_array(20)
    write_jpg(root / "images" / folder / f"{stem}.jpg", image)
    ids = region_ids(ADE_LAYOUT)
    png = write_png(root / f"ade20k_panoptic_{split}" / f"{stem}.png", ids_to_rgb(ids))
    segs = segments(ids, ADE_SEGMENTS)
    segs[0]["area"] += 37  # Mask2Former counts stuff before things are pasted over it
    js = write_json(root / f"ade20k_panoptic_{split}.json", {
        "annotations": [{"image_id": stem, "file_name": f"{stem}.png", "segments_info": segs}]})
    return {"png": png, "json": js}


# -- custom (COCO panoptic format) ------------------------------------------------------------
CUSTOM_LAYOUT = {"top": 11, "bottom": 12, "thing_a": 13, "thing_b": 14, "crowd": 15, "void": 0}
CUSTOM_SEGMENTS = [(11, 9, 0), (12, 9, 0), (13, 5, 0), (14, 5, 0), (15, 5, 1)]


def make_custom(root: Path, split: str = "train") -> dict:
    image = image_array(30)
    write_png(root / "images" / split / "frame_a.png", image)
    ids = region_ids(CUSTOM_LAYOUT)
    png = write_png(root / f"panoptic_{split}" / "frame_a_label.png", ids_to_rgb(ids))
    js = write_json(root / f"panoptic_{split}.json", {
        "images": [{"id": 7, "file_name": "frame_a.png", "height": H, "width": W}],
        "annotations": [{"image_id": 7, "file_name": "frame_a_label.png",
                         "segments_info": segments(ids, CUSTOM_SEGMENTS)}],
        "categories": [{"id": 9, "name": "grass", "isthing": 0, "color": [0, 255, 0]},
                       {"id": 5, "name": "cat", "isthing": 1, "color": [255, 0, 0]}],
    })
    return {"image": image, "png": png, "json": js}


# -- STEP ----------------------------------------------------------------------------------------
def step_label(frame: int) -> tuple[np.ndarray, np.ndarray]:
    """KITTI-STEP style semantic/instance maps: road, sky, car 300, person 2, crowd car, void."""
    m = masks()
    semantic = np.where(m["top"], 10, 0)
    instance = np.zeros((H, W), dtype=np.int64)
    semantic[m["thing_a"]], instance[m["thing_a"]] = 13, 300 + frame
    semantic[m["thing_b"]], instance[m["thing_b"]] = 11, 2
    semantic[m["crowd"]], instance[m["crowd"]] = 13, 0
    semantic[m["void"]], instance[m["void"]] = 255, 0
    return semantic, instance


def make_step(root: Path, split: str = "train", sequence: str = "0001", frames: int = 2,
              ext: str = ".png") -> dict:
    images, labels = [], []
    for f in range(frames):
        image = image_array(40 + f)
        path = root / "images" / split / sequence / f"{f:06d}{ext}"
        (write_png if ext == ".png" else write_jpg)(path, image)
        images.append(image)
        semantic, instance = step_label(f)
        labels.append(write_png(root / "panoptic_maps" / split / sequence / f"{f:06d}.png",
                                sem_inst_to_rgb(semantic, instance)))
    return {"images": images, "labels": labels}


# -- DVPS --------------------------------------------------------------------------------------
def make_cityscapes_dvps(root: Path, split: str = "val", frames: int = 2) -> dict:
    m = masks()
    out = {"images": [], "labels": [], "depths": []}
    for f in range(frames):
        prefix = f"000123_{f:06d}"
        image = image_array(50 + f)
        write_png(root / split / f"{prefix}_leftImg8bit.png", image)
        value = np.where(m["top"], 10000, 0).astype(np.uint16)
        value[m["thing_a"]] = 13000 + 1 + f
        value[m["thing_b"]] = 11005
        value[m["crowd"]] = 13000
        value[m["void"]] = 32000
        out["labels"].append(write_png(root / split / f"{prefix}_gtFine_instanceTrainIds.png",
                                       value))
        depth = np.full((H, W), 2560 + f, dtype=np.uint16)  # 10 m (+ 1/256 m per frame)
        depth[m["void"]] = 0
        out["depths"].append(write_png(root / split / f"{prefix}_depth.png", depth))
        out["images"].append(image)
    return out


def make_semkitti_dvps(root: Path, split: str = "val", frames: int = 2,
                       release_layout: bool = False) -> dict:
    m = masks()
    out = {"images": [], "labels": []}
    for f in range(frames):
        prefix = f"000008_{f:06d}"
        image = image_array(60 + f)
        write_png(root / split / f"{prefix}_leftImg8bit.png", image)
        semantic = np.where(m["top"], 17, 9).astype(np.int64)  # vegetation / road
        instance = np.zeros((H, W), dtype=np.int64)
        semantic[m["thing_a"]], instance[m["thing_a"]] = 0, 258  # car 258
        semantic[m["thing_b"]], instance[m["thing_b"]] = 1, 3
        semantic[m["void"]] = 255
        if release_layout:
            write_png(root / split / f"{prefix}_gtFine_class.png", semantic.astype(np.uint8))
            out["labels"].append(write_png(root / split / f"{prefix}_gtFine_instance.png",
                                           instance.astype(np.uint16)))
            depth_name = f"{prefix}_depth_718.8560180664062.png"
        else:
            out["labels"].append(write_png(
                root / split / f"{prefix}_gtFine_instanceTrainIds.png",
                sem_inst_to_rgb(semantic, instance)))
            depth_name = f"{prefix}_depth.png"
        write_png(root / split / depth_name, np.full((H, W), 512, dtype=np.uint16))
        out["images"].append(image)
    return out
