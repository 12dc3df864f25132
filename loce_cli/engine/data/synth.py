"""Synthetic long-tailed detection + instance segmentation data in LVIS v1 format.

Each class is a (colour, pattern, shape) triple drawn on a cluttered grey background, so a small detector can
tell the classes apart. Class ``k`` (by descending frequency) is present in

    n_k = round(n_max * (1 / n_max) ** ((k / (C - 1)) ** p))

training images, with ``n_max = round(0.45 * train_images)`` and ``p`` the tail exponent: ``p = 1`` is
log-linear in rank (like the middle of LVIS's sorted class curve), ``p < 1`` thins the tail faster (more rare
classes), ``p > 1`` keeps more classes in the head. Frequency groups follow LVIS from those training image
counts (rare 1-10, common 11-100, frequent > 100). The val split holds every class at least
``MIN_VAL_IMAGES`` times, so AP is defined for every group. Everything is drawn from one ``numpy`` generator
seeded by ``seed``: the same options give byte-identical files.

Layout written under ``out``::

    annotations/lvis_v1_train.json   annotations/lvis_v1_val.json
    train2017/000000000001.jpg ...   val2017/000000000601.jpg ...

Images carry ``file_name`` and ``coco_url`` as the path relative to ``out`` (so mmdet's LVIS loader, which
strips the COCO host from ``coco_url``, resolves them with ``img_prefix=out``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from loce_cli.core.frequency import GROUPS, frequency_group
from loce_cli.engine.data.staging import install_staged, prepare_out, staging_folder
from loce_cli.engine.data.synth_drawing import COLOURS, PATTERNS, SHAPES, render_split
from loce_cli.errors import LoceUsageError

MAX_CLASSES = len(COLOURS) * len(PATTERNS) * len(SHAPES)
MIN_VAL_IMAGES = 3
HEAD_FRACTION = 0.45
OUR_ENTRIES = ("annotations", "train2017", "val2017")


@dataclass
class SynthOptions:
    num_classes: int = 40
    train_images: int = 600
    val_images: int = 200
    image_size: int = 128
    tail_exponent: float = 1.0
    max_objects: int = 6
    seed: int = 0
    masks: bool = True  # False: box-only annotations (no ``segmentation``; ``area`` is the box's)

    def validate(self) -> None:
        def bad(msg: str, hint: str) -> None:
            raise LoceUsageError(msg, hint)

        if not 2 <= self.num_classes <= MAX_CLASSES:
            bad(f"--num-classes must be between 2 and {MAX_CLASSES}, got {self.num_classes}",
                f"{len(COLOURS)} colours x {len(PATTERNS)} patterns x {len(SHAPES)} shapes make {MAX_CLASSES} classes")
        if self.train_images < 1 or self.val_images < 1:
            bad("--train-images and --val-images must be at least 1", "use e.g. --train-images 600 --val-images 200")
        if not 48 <= self.image_size <= 1024:
            bad(f"--image-size must be between 48 and 1024 pixels, got {self.image_size}", "128 trains fast on CPU")
        if not (0.1 <= self.tail_exponent <= 10.0) or not math.isfinite(self.tail_exponent):
            bad(f"--tail-exponent must be between 0.1 and 10, got {self.tail_exponent}",
                "1.0 is log-linear; smaller makes more rare classes")
        if not 1 <= self.max_objects <= 30:
            bad(f"--max-objects must be between 1 and 30, got {self.max_objects}", "6 is the default")
        need = int(sum(train_image_counts(self)))
        if need > self.train_images * self.max_objects:
            bad(f"{self.num_classes} classes need {need} class-in-image slots but {self.train_images} images x "
                f"{self.max_objects} objects hold only {self.train_images * self.max_objects}",
                "raise --train-images or --max-objects, or lower --num-classes")
        least = min_val_images(self.num_classes, self.max_objects)
        if self.val_images < least:
            bad(f"the val split needs every class in at least {MIN_VAL_IMAGES} images: {self.num_classes} classes x "
                f"{MIN_VAL_IMAGES} = {MIN_VAL_IMAGES * self.num_classes} class-in-image slots, but "
                f"{self.val_images} images x {self.max_objects} objects hold only "
                f"{self.val_images * self.max_objects}",
                f"--val-images {least} or more (at least {MIN_VAL_IMAGES} x classes / --max-objects), or raise "
                f"--max-objects")


@dataclass
class SplitSummary:
    images: int
    instances: int
    empty_images: int
    annotation_file: str


@dataclass
class SynthResult:
    out_dir: str
    options: SynthOptions
    train: SplitSummary
    val: SplitSummary
    classes_per_group: Dict[str, int]
    seconds: float
    files_written: int = 0
    bytes_written: int = 0
    notes: List[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def train_image_counts(opts: SynthOptions) -> np.ndarray:
    """Training images per class, by descending frequency rank ``[num_classes]``."""
    c = opts.num_classes
    n_max = max(1, min(opts.train_images, round(HEAD_FRACTION * opts.train_images)))
    t = np.arange(c, dtype=np.float64) / max(c - 1, 1)
    counts = np.rint(n_max * (1.0 / n_max) ** (t ** opts.tail_exponent))
    return np.clip(counts, 1, opts.train_images).astype(np.int64)


def min_val_images(num_classes: int, max_objects: int) -> int:
    """The fewest val images that hold every class :data:`MIN_VAL_IMAGES` times (any count above works too:
    the rule is monotonic). Up to ``max_objects`` classes fit any split (a class per image slot)."""
    if num_classes <= max_objects:
        return 1
    return math.ceil(MIN_VAL_IMAGES * num_classes / max_objects)


def val_image_counts(opts: SynthOptions, train_counts: np.ndarray) -> np.ndarray:
    """Val images per class: proportional to train, at least MIN_VAL_IMAGES (capped by the split size). Where that
    overfills the split (more than ``val_images x max_objects`` class-in-image slots: proportional counts round
    up), the largest counts give back one image each, largest first, never below the minimum, until it fits."""
    floor = min(MIN_VAL_IMAGES, opts.val_images)
    scaled = np.rint(train_counts * (opts.val_images / opts.train_images))
    counts = np.clip(scaled, floor, opts.val_images).astype(np.int64)
    excess = int(counts.sum()) - opts.val_images * opts.max_objects
    while excess > 0:
        k = int(np.argmax(counts))
        if counts[k] <= floor:
            break  # validate() refuses such a split (min_val_images)
        top = counts[k]
        for j in np.flatnonzero(counts == top):  # one each from the classes at the top
            if excess == 0:
                break
            counts[j] -= 1
            excess -= 1
    return counts


def class_table(num_classes: int, rng: np.random.Generator) -> List[Tuple[str, str, str]]:
    """``num_classes`` distinct (colour, pattern, shape) triples in a seeded random order.

    Shape and colour vary fastest over the first classes so that small sets are still easy to separate.
    """
    combos = [(col, pat, shp) for pat in PATTERNS for col in COLOURS for shp in SHAPES]
    # Solid classes first (easiest), then striped, then checkered; shuffle within each pattern block.
    blocks = [combos[i:i + len(COLOURS) * len(SHAPES)] for i in range(0, len(combos), len(COLOURS) * len(SHAPES))]
    ordered: List[Tuple[str, str, str]] = []
    for block in blocks:
        perm = rng.permutation(len(block))
        ordered.extend(block[i] for i in perm)
    return ordered[:num_classes]


def allocate(counts: np.ndarray, num_images: int, capacity: int, rng: np.random.Generator) -> List[List[int]]:
    """Assign class ``k`` to exactly ``counts[k]`` distinct images, at most ``capacity`` classes per image.

    Classes are placed from the most to the least frequent; each picks the images with the lowest load plus a
    random jitter, which spreads objects evenly without making every image alike. Where the jitter leaves too few
    images with room for a class, the placement is redone least-loaded first (loads stay within one of each
    other, so whatever fits in ``num_images x capacity`` with each count at most ``num_images`` is placed).
    """
    placed = _allocate(counts, num_images, capacity, rng, jitter=2.0)
    if placed is None:  # the jitter left too few images with room: least-loaded first always fits
        placed = _allocate(counts, num_images, capacity, rng, jitter=0.0)
    if placed is None:
        raise LoceUsageError("not enough room to place every class", "raise the number of images or --max-objects")
    return placed


def _allocate(counts, num_images: int, capacity: int, rng, jitter: float):
    load = np.zeros(num_images, dtype=np.int64)
    per_image: List[List[int]] = [[] for _ in range(num_images)]
    for k in np.argsort(-counts, kind="stable"):
        free = np.flatnonzero(load < capacity)
        if len(free) < counts[k]:
            return None
        key = load[free] + jitter * rng.random(len(free))
        chosen = free[np.argsort(key, kind="stable")[: counts[k]]]
        for i in chosen:
            per_image[i].append(int(k))
        load[chosen] += 1
    return per_image


def _categories(classes: List[Tuple[str, str, str]], names: List[str], order: List[int], train_counts: np.ndarray,
                train_anns: List[dict]) -> List[dict]:
    """The categories list (ids alphabetical by name), with each class's group and training counts."""
    inst_count = np.zeros(len(classes) + 1, dtype=np.int64)
    for a in train_anns:
        inst_count[a["category_id"]] += 1
    categories = []
    for cat_id, k in enumerate(order, start=1):
        col, pat, shp = classes[k]
        n_img = int(train_counts[k])
        categories.append({
            "id": cat_id,
            "name": names[k],
            "synset": f"{names[k]}.n.01",
            "synonyms": [names[k], f"{col} {pat} {shp}"],
            "def": f"a {col} {pat} {shp} drawn on a cluttered grey background",
            "frequency": frequency_group(n_img),
            "image_count": n_img,
            "instance_count": int(inst_count[cat_id]),
        })
    return categories


def synthesize(out: Path, opts: SynthOptions | None = None, force: bool = False) -> SynthResult:
    """Write a synthetic long-tailed LVIS v1 dataset under ``out`` and return what was written.

    The dataset is built in a temporary folder next to ``out`` and moved into place at the end, so an
    interrupted run leaves no partial dataset under ``out``. With ``force``, only the entries this function
    writes (``annotations/``, ``train2017/``, ``val2017/``) are replaced; other files in ``out`` are kept.
    """
    opts = opts or SynthOptions()
    opts.validate()
    out = Path(out)
    prepare_out(out, force)
    start = time.perf_counter()
    rng = np.random.default_rng(opts.seed)

    classes = class_table(opts.num_classes, rng)
    names = [f"{col}_{pat}_{shp}" for col, pat, shp in classes]
    # Category ids are alphabetical by name (as in LVIS), so frequency is unrelated to the id.
    order = sorted(range(opts.num_classes), key=lambda k: names[k])
    rank_to_cat = np.empty(opts.num_classes, dtype=np.int64)
    for cat_id, k in enumerate(order, start=1):
        rank_to_cat[k] = cat_id

    train_counts = train_image_counts(opts)
    val_counts = val_image_counts(opts, train_counts)
    train_alloc = allocate(train_counts, opts.train_images, opts.max_objects, rng)
    val_alloc = allocate(val_counts, opts.val_images, opts.max_objects, rng)

    with staging_folder(out) as staging:
        train_images, train_anns = render_split("train", train_alloc, classes, rank_to_cat, 1, 1, opts, rng,
                                                 staging)
        val_images, val_anns = render_split("val", val_alloc, classes, rank_to_cat, opts.train_images + 1,
                                             len(train_anns) + 1, opts, rng, staging)
        categories = _categories(classes, names, order, train_counts, train_anns)
        info = {
            "description": "loce synthetic long-tailed dataset (LVIS v1 format" + ("" if opts.masks else ", boxes only")
                           + ")",
            "version": "1.0",
            "generator": "loce data synth",
            "options": asdict(opts),
        }
        (staging / "annotations").mkdir()
        for split, imgs, anns in (("train", train_images, train_anns), ("val", val_images, val_anns)):
            with open(staging / "annotations" / f"lvis_v1_{split}.json", "w", encoding="utf-8") as f:
                json.dump({"info": info, "licenses": [], "images": imgs, "annotations": anns,
                           "categories": categories}, f)
        files, nbytes = install_staged(staging, out)

    groups = {g: sum(1 for c in categories if c["frequency"] == g) for g in GROUPS}
    notes = []
    missing = [g for g in GROUPS if groups[g] == 0]
    if missing:
        notes.append("no classes in group(s) " + ", ".join(missing) + " with these sizes (frequent needs > 100 "
                     "training images per class; rare needs classes in at most 10)")
    return SynthResult(
        out_dir=str(out),
        options=opts,
        train=SplitSummary(len(train_images), len(train_anns), sum(1 for r in train_alloc if not r),
                           str(out / "annotations" / "lvis_v1_train.json")),
        val=SplitSummary(len(val_images), len(val_anns), sum(1 for r in val_alloc if not r),
                         str(out / "annotations" / "lvis_v1_val.json")),
        classes_per_group=groups,
        seconds=time.perf_counter() - start,
        files_written=files,
        bytes_written=nbytes,
        notes=notes,
    )
