"""An LVIS-shaped dataset anyone can generate offline: ``loce data synth --like lvis-v1`` / ``--like lvis-v0.5``.

What is real about it (what configs, loaders and validators see):

- the layout ``annotations/lvis_{v1,v0.5}_{train,val}.json``, ``train2017/``, ``val2017/``;
- COCO image names (``000000391895.jpg``: 12-digit ids drawn from COCO 2017's id range) and ``coco_url`` with
  COCO's host and folder (``http://images.cocodataset.org/train2017/000000391895.jpg``). LVIS v1 val images
  live in both ``train2017/`` and ``val2017/`` (as in the real v1 val set, about three quarters in train2017);
  LVIS v0.5 images also carry the COCO 2014 ``file_name`` (``COCO_val2014_000000397133.jpg``), which mmdet's
  ``LVISV05Dataset`` reads (last 16 characters, under ``img_prefix=<root>/train2017/``);
- COCO-like image sizes (640x480, 480x640, 640x427, ...);
- the official class count and frequency-group sizes: v1 1203 classes, 337 rare / 461 common / 405 frequent
  (LVIS v1 train); v0.5 1230 classes, 454 / 461 / 315 (counted from the ``frequency`` fields of the category
  list generated from ``lvis_v0.5_train.json`` in github.com/tztztztztz/eql.detectron2,
  ``projects/EQL/eql/lvis_v0_5_categories.py``); the table is ``loce_cli.engine.data.prep.OFFICIAL``;
- per category ``image_count`` / ``instance_count`` equal to the train split's own counts, and ``frequency``
  derived from them with LVIS's thresholds (rare 1-10 training images, common 11-100, frequent > 100), so
  ``loce data prep`` finds the official groups with no error and no warning;
- ``neg_category_ids`` (classes verified absent) and ``not_exhaustive_category_ids`` (present classes whose
  instances are not all annotated) on every image.

What is not: the class names (``v1_class_0001`` ...), the pictures (flat-colour polygons of a per-class colour
on a smooth background) and the density. Holding > 100 training images for each of 405 frequent classes in
a thousand images takes ~60 classes per image (LVIS: ~3.4), so images are crowded with small objects.

The same options give byte-identical files (one ``numpy`` generator seeded by ``seed``). The dataset is built
in a temporary folder next to ``out`` and moved into place at the end.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw

from loce_cli.core.frequency import GROUPS, frequency_group
from loce_cli.engine.data.prep import OFFICIAL
from loce_cli.engine.data.staging import install_staged, prepare_out, staging_folder
from loce_cli.engine.data.synth import allocate
from loce_cli.errors import LoceUsageError

LIKES = {"lvis-v1": "v1", "lvis-v0.5": "v0.5"}
COCO_HOST = "http://images.cocodataset.org/"
COCO_MAX_IMAGE_ID = 581929  # largest COCO 2017 image id
# (width, height) of COCO 2017 images and how often each is drawn
IMAGE_SIZES: Tuple[Tuple[int, int, float], ...] = (
    (640, 480, 0.38), (480, 640, 0.10), (640, 427, 0.16), (427, 640, 0.05), (640, 424, 0.07), (640, 360, 0.05),
    (500, 375, 0.05), (375, 500, 0.03), (640, 512, 0.04), (612, 612, 0.03), (640, 640, 0.02), (333, 500, 0.02))
RANGES = {"r": (1, 10), "c": (11, 100), "f": (101, None)}  # training images per class by group (LVIS thresholds)
MAX_CLASSES_PER_IMAGE = 160
MIN_TRAIN_IMAGES = 500  # ~64,000 class-in-image slots / MAX_CLASSES_PER_IMAGE, with room
VAL_V1_FROM_TRAIN2017 = 0.75  # share of LVIS v1 val images that live in COCO's train2017 folder
DEFAULT_TRAIN_IMAGES = 1000
DEFAULT_VAL_IMAGES = 100
OUR_ENTRIES = ("annotations", "train2017", "val2017")


@dataclass
class LvisLikeOptions:
    like: str = "lvis-v1"
    train_images: int = DEFAULT_TRAIN_IMAGES
    val_images: int = DEFAULT_VAL_IMAGES
    seed: int = 0

    @property
    def version(self) -> str:
        return LIKES[self.like]

    def validate(self) -> None:
        if self.like not in LIKES:
            raise LoceUsageError(f"--like must be one of {', '.join(LIKES)}, got {self.like!r}",
                                 "lvis-v1 (1203 classes) or lvis-v0.5 (1230 classes)")
        if not MIN_TRAIN_IMAGES <= self.train_images <= 20000:
            raise LoceUsageError(
                f"--train-images with --like must be between {MIN_TRAIN_IMAGES} and 20000, got {self.train_images}",
                f"each of the frequent classes needs more than {RANGES['f'][0] - 1} training images, at most "
                f"{MAX_CLASSES_PER_IMAGE} classes share an image; {DEFAULT_TRAIN_IMAGES} is the default")
        if not 1 <= self.val_images <= 20000:
            raise LoceUsageError(f"--val-images with --like must be between 1 and 20000, got {self.val_images}",
                                 f"{DEFAULT_VAL_IMAGES} is the default")


@dataclass
class LvisSplitSummary:
    images: int
    instances: int
    annotation_file: str
    image_folders: Dict[str, int]  # folder -> images in it


@dataclass
class LvisLikeResult:
    out_dir: str
    options: LvisLikeOptions
    version: str
    num_classes: int
    classes_per_group: Dict[str, int]
    train: LvisSplitSummary
    val: LvisSplitSummary
    seconds: float
    files_written: int = 0
    bytes_written: int = 0
    notes: List[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def official_counts(version: str) -> Tuple[int, Dict[str, int]]:
    n, groups = OFFICIAL[version]
    return n, dict(groups)


def class_image_counts(version: str, train_images: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """(training images per category ``[C]``, group per category ``[C]``) in category-id order.

    Group members are shuffled over the ids (frequency is unrelated to the alphabetical id, as in LVIS). Rare:
    1-10 images (uniform); common: 11-35 (log-uniform), 15% of them 35-100; frequent: 101 plus a geometric
    excess (mean 12), 5% of them a head up to a third of the images. The budget of class-in-image slots
    (about 64,000 for v1) is what sets the dataset's size, so the groups sit near their lower bounds.
    """
    n, groups = official_counts(version)
    labels = np.array([g for g in GROUPS for _ in range(groups[g])])
    labels = labels[rng.permutation(n)]
    counts = np.zeros(n, dtype=np.int64)
    r, c, f = (np.flatnonzero(labels == g) for g in GROUPS)
    counts[r] = rng.integers(1, 11, size=len(r))
    log_c = np.where(rng.random(len(c)) < 0.15, rng.uniform(np.log(35), np.log(100), size=len(c)),
                     rng.uniform(np.log(11), np.log(35), size=len(c)))
    counts[c] = np.clip(np.rint(np.exp(log_c)), 11, 100)
    top = max(140, train_images // 3)
    head = rng.random(len(f)) < 0.05
    excess = rng.geometric(1 / 12, size=len(f))
    counts[f] = np.where(head, np.rint(np.exp(rng.uniform(np.log(130), np.log(top), size=len(f)))), 101 + excess)
    counts[f] = np.clip(counts[f], 101, train_images)
    return counts, labels


def _image_ids(total: int, rng: np.random.Generator) -> np.ndarray:
    ids = rng.choice(np.arange(1, COCO_MAX_IMAGE_ID + 1), size=total, replace=False)
    return ids.astype(np.int64)


def _sizes(total: int, rng: np.random.Generator) -> np.ndarray:
    p = np.array([s[2] for s in IMAGE_SIZES])
    pick = rng.choice(len(IMAGE_SIZES), size=total, p=p / p.sum())
    return np.array([(IMAGE_SIZES[i][0], IMAGE_SIZES[i][1]) for i in pick], dtype=np.int64)


def _class_colours(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(30, 236, size=(n, 3)).astype(np.uint8)


def _polygon(cx: float, cy: float, radius: float, rng: np.random.Generator) -> np.ndarray:
    """A star-shaped polygon ``[K, 2]`` around (cx, cy) within ``radius``."""
    k = int(rng.integers(5, 11))
    angles = np.sort(rng.uniform(0, 2 * np.pi, size=k))
    radii = radius * rng.uniform(0.55, 1.0, size=k)
    return np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)


def _area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _background(w: int, h: int, noise: np.ndarray, rng: np.random.Generator):
    coarse = rng.integers(60, 200, size=(3, 4, 3)).astype(np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BILINEAR), dtype=np.int16)
    oy, ox = int(rng.integers(0, noise.shape[0] - h + 1)), int(rng.integers(0, noise.shape[1] - w + 1))
    img = np.clip(base + noise[oy:oy + h, ox:ox + w], 0, 255).astype(np.uint8)
    return Image.fromarray(img)


def _render_split(split: str, version: str, per_image: List[List[int]], image_ids: np.ndarray,
                  sizes: np.ndarray, folders: List[str], cat_ids: np.ndarray, colours: np.ndarray,
                  first_ann_id: int, rng: np.random.Generator, noise: np.ndarray, out: Path) -> Tuple[list, list]:
    num_classes = len(cat_ids)
    images, anns = [], []
    ann_id = first_ann_id
    for idx, labels in enumerate(per_image):
        image_id = int(image_ids[idx])
        w, h = (int(v) for v in sizes[idx])
        folder = folders[idx]
        img = _background(w, h, noise, rng)
        draw = ImageDraw.Draw(img)
        instances = list(labels)
        for k in labels:  # some classes twice or three times in an image (LVIS: 3.4 instances per class-image)
            if rng.random() < 0.2:
                instances.extend([k] * int(rng.integers(1, 3)))
        # area by COCO's ranges: small (< 32^2), medium, large (> 96^2), larger objects drawn first
        sides = np.exp(rng.uniform(np.log(12), np.log(0.6 * min(w, h)), size=len(instances)))
        order = np.argsort(-sides, kind="stable")
        for j in order:
            k = instances[j]
            radius = float(sides[j]) / 2
            cx = float(rng.uniform(radius + 1, w - radius - 1))
            cy = float(rng.uniform(radius + 1, h - radius - 1))
            poly = np.round(_polygon(cx, cy, radius, rng), 2)
            poly[:, 0] = np.clip(poly[:, 0], 0, w)
            poly[:, 1] = np.clip(poly[:, 1], 0, h)
            draw.polygon([tuple(p) for p in poly], fill=tuple(int(v) for v in colours[k]))
            x0, y0 = poly.min(0)
            x1, y1 = poly.max(0)
            anns.append({
                "id": ann_id,
                "image_id": image_id,
                "category_id": int(cat_ids[k]),
                "bbox": [round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2), round(float(y1 - y0), 2)],
                "area": round(_area(poly), 2),
                "segmentation": [[float(v) for v in poly.reshape(-1)]],
            })
            ann_id += 1
        name = f"{image_id:012d}.jpg"
        img.save(out / folder / name, quality=90)
        present = sorted(set(labels))
        absent_n = int(rng.integers(3, 16))
        absent = rng.choice(num_classes, size=min(num_classes, absent_n + len(present)), replace=False)
        neg = sorted(int(cat_ids[a]) for a in absent if a not in set(present))[:absent_n]
        not_exh = sorted(int(cat_ids[k]) for k in present if rng.random() < 0.08)
        entry = {
            "id": image_id,
            "license": int(rng.integers(1, 9)),
            "height": h,
            "width": w,
            "coco_url": f"{COCO_HOST}{folder}/{name}",
            "flickr_url": f"http://farm{int(rng.integers(1, 10))}.staticflickr.com/synthetic/{name}",
            "date_captured": "2013-11-14 16:28:13",
            "neg_category_ids": neg,
            "not_exhaustive_category_ids": not_exh,
        }
        if version == "v0.5":  # COCO 2014 names: train2017 holds train2014 and most of val2014
            coco14 = "val2014" if (split == "val" or rng.random() < 0.3) else "train2014"
            entry["file_name"] = f"COCO_{coco14}_{name}"
        images.append(entry)
    return images, anns


def _allocate(counts: np.ndarray, num_images: int, capacity: int, rng: np.random.Generator) -> List[List[int]]:
    return allocate(counts, num_images, capacity, rng)


def _categories(version: str, cat_ids: np.ndarray, train_alloc: List[List[int]], train_anns: List[dict]) -> List[dict]:
    n_classes = len(cat_ids)
    inst = np.bincount([a["category_id"] for a in train_anns], minlength=n_classes + 1)[1:]
    img_count = np.zeros(n_classes, dtype=np.int64)
    for labs in train_alloc:
        img_count[labs] += 1
    prefix = "v1" if version == "v1" else "v05"
    categories = []
    for i in range(n_classes):
        name = f"{prefix}_class_{i + 1:04d}"
        categories.append({
            "id": int(cat_ids[i]),
            "name": name,
            "synset": f"{name}.n.01",
            "synonyms": [name],
            "def": f"synthetic LVIS {version} category {i + 1} (flat-colour polygons)",
            "frequency": frequency_group(int(img_count[i])),
            "image_count": int(img_count[i]),
            "instance_count": int(inst[i]),
        })
    return categories


def _write_annotations(staging: Path, version: str, opts: LvisLikeOptions, categories: List[dict], splits) -> None:
    """``annotations/lvis_<version>_<split>.json`` with an LVIS-like info block and licenses."""
    info = {
        "description": f"LVIS {version} shaped synthetic dataset (loce data synth --like {opts.like})",
        "url": "http://www.lvisdataset.org",
        "version": "1.0" if version == "v1" else "0.5",
        "year": 2020 if version == "v1" else 2019,
        "contributor": "loce data synth",
        "date_created": "2020-01-01",
        "loce_synthetic": asdict(opts),
    }
    licenses = [{"id": i, "name": f"license {i}", "url": ""} for i in range(1, 9)]
    for split, imgs, anns in splits:
        payload = {"info": info, "images": imgs, "annotations": anns, "licenses": licenses, "categories": categories}
        with open(staging / "annotations" / f"lvis_{version}_{split}.json", "w", encoding="utf-8") as f:
            json.dump(payload, f, separators=(",", ":"))


def synthesize_lvis_like(out: Path, opts: LvisLikeOptions | None = None, force: bool = False) -> LvisLikeResult:
    """Write an LVIS-shaped dataset (see the module docstring) under ``out``."""
    opts = opts or LvisLikeOptions()
    opts.validate()
    out = Path(out)
    prepare_out(out, force)
    start = time.perf_counter()
    version = opts.version
    rng = np.random.default_rng(opts.seed)
    n_classes, groups = official_counts(version)
    counts, labels = class_image_counts(version, opts.train_images, rng)
    cat_ids = np.arange(1, n_classes + 1, dtype=np.int64)
    capacity = int(np.ceil(counts.sum() / opts.train_images * 1.15)) + 2
    if capacity > MAX_CLASSES_PER_IMAGE:
        raise LoceUsageError(f"{opts.train_images} training images would need {capacity} classes per image",
                             f"use at least {int(counts.sum() * 1.15 / MAX_CLASSES_PER_IMAGE) + 1} --train-images")
    train_alloc = _allocate(counts, opts.train_images, capacity, rng)
    # val: 4-20 classes per image, drawn in proportion to training frequency (every group present)
    weights = counts / counts.sum()
    val_alloc = []
    for _ in range(opts.val_images):
        k = int(rng.integers(4, 21))
        val_alloc.append(sorted(int(c) for c in rng.choice(n_classes, size=k, replace=False, p=weights)))
    colours = _class_colours(n_classes, rng)
    ids = _image_ids(opts.train_images + opts.val_images, rng)
    train_ids, val_ids = ids[:opts.train_images], ids[opts.train_images:]
    train_sizes, val_sizes = _sizes(opts.train_images, rng), _sizes(opts.val_images, rng)
    train_folders = ["train2017"] * opts.train_images
    if version == "v1":
        val_folders = ["train2017" if rng.random() < VAL_V1_FROM_TRAIN2017 else "val2017"
                       for _ in range(opts.val_images)]
    else:
        val_folders = ["val2017"] * opts.val_images
    noise = np.rint(rng.normal(0, 6, size=(640, 640, 3))).astype(np.int16)

    with staging_folder(out) as staging:
        for d in ("train2017", "val2017", "annotations"):
            (staging / d).mkdir()
        train_images, train_anns = _render_split("train", version, train_alloc, train_ids, train_sizes, train_folders,
                                                 cat_ids, colours, 1, rng, noise, staging)
        val_images, val_anns = _render_split("val", version, val_alloc, val_ids, val_sizes, val_folders, cat_ids,
                                             colours, len(train_anns) + 1, rng, noise, staging)
        categories = _categories(version, cat_ids, train_alloc, train_anns)
        derived = {g: sum(1 for c in categories if c["frequency"] == g) for g in GROUPS}
        if derived != groups:  # a bug here, not a user error
            raise RuntimeError(f"synthetic LVIS {version} groups {derived} differ from the official {groups}")
        _write_annotations(staging, version, opts, categories, (("train", train_images, train_anns),
                                                                ("val", val_images, val_anns)))
        files, nbytes = install_staged(staging, out)

    def summary(split: str, imgs: list, anns: list, folders: List[str]) -> LvisSplitSummary:
        per_folder: Dict[str, int] = {}
        for fo in folders:
            per_folder[fo] = per_folder.get(fo, 0) + 1
        return LvisSplitSummary(len(imgs), len(anns), str(out / "annotations" / f"lvis_{version}_{split}.json"),
                                dict(sorted(per_folder.items())))

    notes = [f"about {len(train_anns) / max(len(train_images), 1):.0f} instances per training image (LVIS: ~12): "
             "the official groups need > 100 training images for each frequent class",
             f"run `loce data prep --root {out}` next (the LVIS configs need its loce_meta.json)"]
    return LvisLikeResult(
        out_dir=str(out), options=opts, version=version, num_classes=n_classes, classes_per_group=derived,
        train=summary("train", train_images, train_anns, train_folders),
        val=summary("val", val_images, val_anns, val_folders),
        seconds=time.perf_counter() - start, files_written=files, bytes_written=nbytes, notes=notes)
