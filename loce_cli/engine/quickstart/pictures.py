"""The quickstart's pictures: a few val images with rare classes, predicted by the base and the LOCE model
(``loce predict``), drawn side by side with the ground truth, one picture per image."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from pycocotools import mask as mask_util

from loce_cli.engine.json_files import write_json_atomic
from loce_cli.engine.pictures.drawing import Drawn, draw_detections, side_by_side, upscale, write_png
from loce_cli.engine.predict.images import PredictRequest, predict

# LOCE's scores of rare classes sit lower than the base model's confident (often wrong) ones: on the quickstart's
# val set LOCE finds 53 of 61 rare objects at score >= 0.1 but 5 at >= 0.3 (base: 9 and 4), so the pictures
# are drawn at 0.1 (about 10 detections per image for either model).
# Drawn at 0.2: LOCE's scores of rare classes sit lower than the base model's confident ones (on the quickstart's
# val set, measured 2026-12-01: LOCE finds 5 of the 61 rare objects at score >= 0.3, 22 at >= 0.2, 53 at >= 0.1;
# the base model 4, 5 and 9); at 0.1 both pictures fill with low-scoring boxes.
SCORE_THR = 0.2
SCALE = 4  # the synthetic images are 128 px: drawn 4x larger, so the labels stay small beside the objects
COUNT = 4
MANIFEST = "pictures.json"


def rare_images(ann_file: Path) -> List[dict]:
    """The val images that hold rare-class objects, by id."""
    data = json.loads(Path(ann_file).read_text())
    rare = {c["id"] for c in data["categories"] if c.get("frequency") == "r"}
    ids = {a["image_id"] for a in data["annotations"] if a["category_id"] in rare}
    return sorted((im for im in data["images"] if im["id"] in ids), key=lambda im: im["id"])


def rare_found(dets: Sequence[dict], ann: dict, image: dict, iou: float = 0.5) -> int:
    """How many of the image's rare-class objects a detection of their class covers (box IoU >= ``iou``)."""
    rare = {c["id"] for c in ann["categories"] if c.get("frequency") == "r"}
    found = 0
    for a in ann["annotations"]:
        if a["image_id"] != image["id"] or a["category_id"] not in rare:
            continue
        boxes = [d["bbox"] for d in dets if d["category_id"] == a["category_id"]]
        if boxes and mask_util.iou(boxes, [a["bbox"]], [0]).max() >= iou:
            found += 1
    return found


def _image_path(data: Path, image: dict) -> Path:
    return data / image.get("file_name", image.get("coco_url", ""))


def ground_truth_drawn(ann: dict, image: dict, scale: int):
    """The image's ground-truth objects as ``Drawn`` items (no score), at ``scale``."""
    cats = {c["id"]: c for c in ann["categories"]}
    h, w = image["height"], image["width"]
    items = []
    for a in ann["annotations"]:
        if a["image_id"] != image["id"]:
            continue
        seg = a.get("segmentation")
        mask = None
        if seg:
            rles = mask_util.frPyObjects(seg, h, w) if isinstance(seg, list) else [seg]
            mask = upscale(mask_util.decode(mask_util.merge(rles)).astype(bool)[..., None], scale)[..., 0]
        x, y, bw, bh = a["bbox"]
        cat = cats[a["category_id"]]
        items.append(Drawn((x * scale, y * scale, (x + bw) * scale, (y + bh) * scale), cat["name"], None,
                           cat.get("frequency", "f"), mask))
    return items


def _predicted_drawn(dets: Sequence[dict], groups: Dict[int, str], h: int, w: int, scale: int):
    items = []
    for d in dets:
        x, y, bw, bh = d["bbox"]
        mask = None
        seg = d.get("segmentation")
        if isinstance(seg, dict):
            m = mask_util.decode(dict(seg, counts=seg["counts"].encode())).astype(bool)
            mask = upscale(m[..., None], scale)[..., 0] if m.shape == (h, w) else None
        items.append(Drawn((x * scale, y * scale, (x + bw) * scale, (y + bh) * scale), d["category_name"],
                           d["score"], groups[d["category_id"]], mask))
    return items


def write_quickstart_predictions(work_dir: Path, data: Path,
                                 runs: Sequence[Tuple[str, str, str, str, List[str]]], count: int = COUNT,
                                 score_thr: float = SCORE_THR, scale: int = SCALE) -> dict:
    """``loce predict`` of each run on every val image with rare-class objects (``work_dir/predictions/<run>/``)
    and, for the ``count`` images where the last run finds the most rare objects the first run misses,
    ``work_dir/predictions/<image>.png``: ground truth | each run, side by side. Returns (and writes as
    ``predictions/pictures.json``, last) the pictures and the rare objects each run found.

    ``runs``: ``(name, title, config, checkpoint, cfg_options)``."""
    ann_file = data / "annotations" / "lvis_v1_val.json"
    ann = json.loads(ann_file.read_text())
    groups = {c["id"]: c.get("frequency", "f") for c in ann["categories"]}
    rare_ids = {c["id"] for c in ann["categories"] if c.get("frequency") == "r"}
    images = rare_images(ann_file)
    paths = [_image_path(data, im) for im in images]
    out = Path(work_dir) / "predictions"
    by_run: Dict[str, Dict[str, List[dict]]] = {}
    for name, _title, config, checkpoint, options in runs:
        report = predict(PredictRequest(config, checkpoint, [str(p) for p in paths], str(out / name),
                                        score_thr=score_thr, cfg_options=list(options), force=True))
        dets = json.loads(Path(report.predictions_file).read_text()) if report.predictions_file else []
        per_file: Dict[str, List[dict]] = {}
        for d in dets:
            per_file.setdefault(d["file_name"], []).append(d)
        by_run[name] = per_file
    found = {name: [rare_found(by_run[name].get(str(p), []), ann, im) for im, p in zip(images, paths)]
             for name, *_ in runs}
    first, last = runs[0][0], runs[-1][0]
    ranked = sorted(range(len(images)), key=lambda i: (found[first][i] - found[last][i], -found[last][i],
                                                       images[i]["id"]))[:count]
    written = []
    for i in ranked:
        image, path = images[i], paths[i]
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        h, w = rgb.shape[:2]
        big = upscale(rgb, scale)
        panels = [("ground truth", draw_detections(big, ground_truth_drawn(ann, image, scale)))]
        for name, title, *_ in runs:
            drawn = _predicted_drawn(by_run[name].get(str(path), []), groups, h, w, scale)
            panels.append((f"{title}: {found[name][i]} rare found", draw_detections(big, drawn)))
        written.append(write_png(side_by_side(panels), out / f"{path.stem}.png"))
    rare_objects = sum(1 for a in ann["annotations"] if a["category_id"] in rare_ids)
    manifest = dict(score_thr=score_thr, images_with_rare=len(images), rare_objects=rare_objects,
                    rare_found={name: sum(v) for name, v in found.items()},
                    pictures=[dict(file=str(p), image_id=images[i]["id"],
                                   rare_found={name: found[name][i] for name in found})
                              for p, i in zip(written, ranked)])
    write_json_atomic(out / MANIFEST, manifest, indent=2)
    return manifest


def pictures_done(work_dir: Path) -> Optional[dict]:
    """The manifest of the side-by-side pictures when it and every picture exist (the quickstart then skips the
    step), else None."""
    path = Path(work_dir) / "predictions" / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    pics = [Path(p["file"]) for p in manifest.get("pictures", [])]
    return manifest if all(p.is_file() for p in pics) else None
