"""COCO-format data made the way COCO exporters write it (cocodataset.org's format: images with file_name,
width, height and often coco_url; annotations with id, image_id, category_id, bbox [x, y, w, h], area, iscrowd
and polygon or RLE segmentation; categories with id, name, supercategory), for the import and evaluation tests.

Class sizes straddle LVIS's cut-offs (1, 10, 11, 100 and 101 training images), with crowd regions (uncompressed
RLE, as COCO stores them), images without annotations, a class seen only in val and non-contiguous category ids.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

W, H = 160, 120
# category id -> (name, training images holding it)
TRAIN_IMAGES = {3: ("head", 101), 5: ("c_top", 100), 8: ("c_low", 11), 13: ("r_top", 10), 21: ("r_one", 1),
                34: ("val_only", 0), 55: ("crowd_only", 0)}


def _png(w: int = W, h: int = H) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (90, 120, 150)).save(buf, format="PNG")
    return buf.getvalue()


def _box(rng: np.random.Generator) -> List[float]:
    w, h = float(rng.integers(6, 140)), float(rng.integers(6, 100))
    x, y = float(rng.integers(0, W - int(w))), float(rng.integers(0, H - int(h)))
    return [x, y, w, h]


def _poly(b: List[float]) -> List[List[float]]:
    x, y, w, h = b
    return [[x, y, x + w, y, x + w * 0.7, y + h, x, y + h * 0.8]]


def _crowd_rle(b: List[float]) -> dict:
    m = np.zeros((H, W), np.uint8, order="F")
    x, y, w, h = (int(v) for v in b)
    m[y:y + h, x:x + w] = 1
    counts = []  # uncompressed RLE, column-major, as COCO's crowd annotations
    flat, cur, run = m.flatten(order="F"), 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            cur, run = v, 0
        run += 1
    counts.append(run)
    return {"size": [H, W], "counts": counts}


def make_split(root: Path, split: str, plan: Dict[int, int], n_images: int, n_empty: int, crowd_cats: Dict[int, int],
               masks: bool, seed: int, first_image_id: int, first_ann_id: int) -> Path:
    """A COCO file ``root/{split}.json`` with images under ``root/{split}_images/``: category ``c`` in
    ``plan[c]`` images (1-3 instances each), ``crowd_cats[c]`` crowd regions, ``n_empty`` unannotated images."""
    rng = np.random.default_rng(seed)
    img_dir = root / f"{split}_images"
    (img_dir / "sub").mkdir(parents=True, exist_ok=True)
    png = _png()
    images, anns = [], []
    for i in range(n_images + n_empty):
        iid = first_image_id + 7 * i
        name = f"sub/{iid:012d}.png" if i % 3 == 0 else f"{iid:012d}.png"
        (img_dir / name).write_bytes(png)
        images.append({"id": iid, "width": W, "height": H, "file_name": name, "license": 1,
                       "coco_url": f"http://images.example.org/{split}2017/{name}"})
    aid = first_ann_id

    def add(cat: int, img: int, crowd: bool) -> None:
        nonlocal aid
        b = _box(rng)
        a = {"id": aid, "image_id": images[img]["id"], "category_id": cat, "bbox": b, "iscrowd": int(crowd)}
        if crowd:
            rle = _crowd_rle(b)
            a["area"] = float(mask_utils.area(mask_utils.frPyObjects(rle, H, W)))
            a["segmentation"] = rle if masks else []
        elif masks:
            a["segmentation"] = _poly(b)
            a["area"] = float(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], H, W))))
        else:
            a["area"] = b[2] * b[3]
        if not masks:
            a.pop("segmentation", None)
        anns.append(a)
        aid += 3

    for cat, n in plan.items():
        for img in rng.choice(n_images, size=n, replace=False):
            for _ in range(int(rng.integers(1, 4))):
                add(cat, int(img), False)
    for cat, n in crowd_cats.items():
        for img in rng.choice(n_images, size=n, replace=False):
            add(cat, int(img), True)
    cats = [{"id": c, "name": name, "supercategory": "thing"} for c, (name, _n) in TRAIN_IMAGES.items()]
    path = root / f"{split}.json"
    path.write_text(json.dumps({"info": {"description": "test data", "version": "1.0"}, "licenses": [],
                                "images": images, "annotations": anns, "categories": cats}))
    return path


def make_coco(root: Path, masks: bool = True, seed: int = 0, val_images: int = 30,
              val_plan: Optional[Dict[int, int]] = None) -> Dict[str, Path]:
    """Train (120 annotated + 5 empty images) and val files; returns their paths and image folders."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    plan = {c: n for c, (_name, n) in TRAIN_IMAGES.items() if n}
    train = make_split(root, "train", plan, 120, 5, {3: 4, 55: 2}, masks, seed, 9, 2)
    val_plan = val_plan or {3: 20, 5: 12, 8: 6, 13: 4, 21: 2, 34: 3}
    val = make_split(root, "val", val_plan, val_images, 4, {3: 3, 5: 2}, masks, seed + 1, 100_003, 50_001)
    return {"train": train, "train_images": root / "train_images", "val": val, "val_images": root / "val_images"}
