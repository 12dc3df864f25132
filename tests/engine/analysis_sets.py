"""Generated LVIS-format sets with known confusions for the ``loce analyze`` tests: rare objects detected as
frequent classes, duplicates, background boxes, badly placed boxes, and (federated) negative and not-exhaustive
categories; ``exhaustive=True`` lists every absent class as negative in every image (COCO's rule)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

GROUPS = ("r", "c", "f")


def _poly(x, y, w, h):
    return [x, y, x + w, y, x + w, y + h * 0.6, x + w * 0.5, y + h, x, y + h]


def _mask(box, h, w):
    rle = mask_utils.frPyObjects([_poly(*box)], h, w)[0]
    rle["counts"] = rle["counts"].decode()
    return rle


def _jitter(rng, box, sd):
    x, y, bw, bh = box
    return [x + rng.normal(0, sd * bw), y + rng.normal(0, sd * bh), bw * np.exp(rng.normal(0, sd)),
            bh * np.exp(rng.normal(0, sd))]


def _clip(box, w, h):
    x, y, bw, bh = box
    x, y = float(np.clip(x, 0, w - 4)), float(np.clip(y, 0, h - 4))
    return [x, y, float(max(2.0, min(bw, w - x))), float(max(2.0, min(bh, h - y)))]


def make_confused_set(root: Path, seed: int = 0, images: int = 30, per_group: int = 3, exhaustive: bool = True):
    """(annotation file, results file, detections). Class k's group is GROUPS[k // per_group]."""
    rng = np.random.default_rng(seed)
    k_all = 3 * per_group
    cats = [dict(id=10 + k, name=f"{GROUPS[k // per_group]}{k}", frequency=GROUPS[k // per_group],
                 image_count=1 + k, instance_count=2 + k, synset=f"s{k}") for k in range(k_all)]
    frequent = [10 + k for k in range(2 * per_group, k_all)]
    imgs, anns, dets = [], [], []
    for i in range(images):
        img_id, w, h = 100 + i, 96, 80
        extra = rng.choice(k_all, int(rng.integers(0, 3)), replace=False) + 10
        pos = sorted({10 + (i % k_all)} | set(extra.tolist()))
        absent = [c["id"] for c in cats if c["id"] not in pos]
        neg = absent if exhaustive else sorted(int(c) for c in rng.choice(absent, 2, replace=False))
        nel = [] if exhaustive else [c for c in pos if rng.random() < 0.3]
        imgs.append(dict(id=img_id, width=w, height=h, file_name=f"{img_id}.jpg", neg_category_ids=neg,
                         not_exhaustive_category_ids=nel))
        for c in pos:
            for _ in range(int(rng.integers(1, 3))):
                box = _clip([rng.uniform(0, w * 0.6), rng.uniform(0, h * 0.6), rng.uniform(10, w * 0.4),
                             rng.uniform(10, h * 0.4)], w, h)
                anns.append(dict(id=len(anns) + 1, image_id=img_id, category_id=c, bbox=box,
                                 area=box[2] * box[3], iscrowd=0, segmentation=[_poly(*box)]))
                _detections(rng, dets, img_id, c, box, w, h, frequent, cats)
        for _ in range(int(rng.integers(0, 3))):  # background boxes of verified classes
            box = _clip([rng.uniform(0, w), rng.uniform(0, h), rng.uniform(4, 12), rng.uniform(4, 12)], w, h)
            dets.append(dict(image_id=img_id, category_id=int(rng.choice(pos + neg)), bbox=box))
    for d in dets:
        d["score"] = float(rng.uniform(0.02, 0.98))
        d["segmentation"] = _mask(d["bbox"], 80, 96)
    root.mkdir(parents=True, exist_ok=True)
    ann_file, res_file = root / "val.json", root / "results.json"
    ann_file.write_text(json.dumps(dict(images=imgs, annotations=anns, categories=cats)))
    res_file.write_text(json.dumps(dets))
    return ann_file, res_file, dets


def _detections(rng, dets, img_id, c, box, w, h, frequent, cats):
    """Detections of one object: found (often), as another class (rare ones mostly as a frequent class),
    a duplicate, a badly placed box."""
    r = rng.random()
    if r < 0.55:
        dets.append(dict(image_id=img_id, category_id=c, bbox=_clip(_jitter(rng, box, 0.04), w, h)))
    if r > 0.45 and r < 0.8:
        other = int(rng.choice(frequent)) if c < 10 + len(cats) // 3 else int(rng.choice([k["id"] for k in cats]))
        dets.append(dict(image_id=img_id, category_id=other, bbox=_clip(_jitter(rng, box, 0.04), w, h)))
    if rng.random() < 0.2:
        dets.append(dict(image_id=img_id, category_id=c, bbox=_clip(_jitter(rng, box, 0.05), w, h)))
    if rng.random() < 0.2:
        x, y, bw, bh = box
        dets.append(dict(image_id=img_id, category_id=c, bbox=_clip([x + 0.5 * bw, y + 0.4 * bh, bw, bh], w, h)))
