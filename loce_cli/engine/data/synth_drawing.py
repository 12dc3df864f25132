"""Drawing ``loce data synth``'s images: patterned shapes on cluttered grey backgrounds, with their polygons,
boxes and areas as LVIS annotations."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

COLOURS: Dict[str, Tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (35, 185, 60),
    "blue": (40, 80, 235),
    "yellow": (240, 220, 35),
    "magenta": (225, 45, 205),
    "cyan": (35, 215, 225),
    "orange": (250, 140, 15),
    "white": (248, 248, 248),
}
PATTERNS = ("solid", "striped", "checkered")
SHAPES = ("circle", "square", "triangle", "invtriangle", "diamond", "cross", "hexagon", "star")

def shape_polygon(shape: str) -> np.ndarray:
    """Unit polygon ``[K, 2]`` (x, y in [0, 1], y down) of a shape."""
    if shape == "circle":
        a = np.linspace(0, 2 * np.pi, 20, endpoint=False)
        return np.stack([0.5 + 0.5 * np.cos(a), 0.5 + 0.5 * np.sin(a)], 1)
    if shape == "square":
        return np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64)
    if shape == "triangle":
        return np.array([[0.5, 0], [1, 1], [0, 1]], dtype=np.float64)
    if shape == "invtriangle":
        return np.array([[0, 0], [1, 0], [0.5, 1]], dtype=np.float64)
    if shape == "diamond":
        return np.array([[0.5, 0], [1, 0.5], [0.5, 1], [0, 0.5]], dtype=np.float64)
    if shape == "cross":
        a, b = 1 / 3, 2 / 3
        return np.array([[a, 0], [b, 0], [b, a], [1, a], [1, b], [b, b], [b, 1], [a, 1], [a, b], [0, b], [0, a],
                         [a, a]], dtype=np.float64)
    if shape == "hexagon":
        a = np.linspace(0, 2 * np.pi, 6, endpoint=False)
        return np.stack([0.5 + 0.5 * np.cos(a), 0.5 + 0.5 * np.sin(a)], 1)
    if shape == "star":
        a = np.linspace(-np.pi / 2, 1.5 * np.pi, 10, endpoint=False)
        r = np.where(np.arange(10) % 2 == 0, 0.5, 0.22)
        return np.stack([0.5 + r * np.cos(a), 0.5 + r * np.sin(a)], 1)
    raise ValueError(f"unknown shape {shape!r}")


def polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """Grey, low-saturation textured background with clutter strokes and blobs (never a class colour)."""
    base = rng.uniform(70, 150)
    tint = rng.uniform(-8, 8, size=3)
    img = base + tint + rng.normal(0, 10, size=(size, size, 1)) + rng.normal(0, 4, size=(size, size, 3))
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for _ in range(int(rng.integers(3, 9))):
        g = int(rng.uniform(40, 190))
        x0, y0, x1, y1 = (float(v) for v in rng.uniform(0, size, 4))
        if rng.random() < 0.6:
            draw.line([x0, y0, x1, y1], fill=(g, g, g), width=int(rng.integers(1, 3)))
        else:
            r = rng.uniform(2, size * 0.06)
            draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=(g, g, g))
    return np.asarray(pil).copy()


def _draw_object(canvas: np.ndarray, poly: np.ndarray, colour: Tuple[int, int, int], pattern: str) -> None:
    h, w = canvas.shape[:2]
    mask_img = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask_img).polygon([tuple(p) for p in poly], fill=1)
    mask = np.asarray(mask_img).astype(bool)
    fill = np.empty_like(canvas, dtype=np.float64)
    fill[...] = colour
    if pattern != "solid":
        yy, xx = np.mgrid[0:h, 0:w]
        dark = (yy // 3) % 2 == 1 if pattern == "striped" else ((yy // 3) + (xx // 3)) % 2 == 1
        fill[dark] *= 0.3
    canvas[mask] = fill[mask].astype(np.uint8)


def render_split(
    split: str,
    per_image: List[List[int]],
    classes: List[Tuple[str, str, str]],
    rank_to_cat: np.ndarray,
    first_image_id: int,
    first_ann_id: int,
    opts,  # SynthOptions (image_size, max_objects, masks)
    rng: np.random.Generator,
    out: Path,
) -> Tuple[List[dict], List[dict]]:
    size = opts.image_size
    folder = f"{split}2017"
    (out / folder).mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    ann_id = first_ann_id
    num_classes = len(classes)
    for idx, ranks in enumerate(per_image):
        image_id = first_image_id + idx
        canvas = _background(size, rng)
        # 1 instance per class-in-image, sometimes 2, within the per-image object budget.
        instances: List[int] = list(ranks)
        for k in ranks:
            if len(instances) < opts.max_objects and rng.random() < 0.25:
                instances.append(k)
        rng.shuffle(instances)
        placed: List[Tuple[float, float, float, float]] = []
        for k in instances:
            colour, pattern, shape = classes[k]
            best = None
            for attempt in range(40):
                scale = rng.uniform(0.14, 0.36) * (0.985 ** attempt)
                aspect = math.exp(rng.uniform(-0.3, 0.3))
                bw = max(8.0, size * scale * aspect)
                bh = max(8.0, size * scale / aspect)
                x0 = rng.uniform(0, size - bw)
                y0 = rng.uniform(0, size - bh)
                box = (x0, y0, x0 + bw, y0 + bh)
                worst = max((_iou(box, other) for other in placed), default=0.0)
                if best is None or worst < best[0]:
                    best = (worst, box)
                if worst <= 0.15:
                    break
            box = best[1]
            poly = shape_polygon(shape) * [box[2] - box[0], box[3] - box[1]] + [box[0], box[1]]
            poly = np.round(poly, 2)
            _draw_object(canvas, poly, COLOURS[colour], pattern)
            placed.append(box)
            x_min, y_min = poly.min(0)
            x_max, y_max = poly.max(0)
            bbox = [round(float(x_min), 2), round(float(y_min), 2), round(float(x_max - x_min), 2),
                    round(float(y_max - y_min), 2)]
            ann = {"id": ann_id, "image_id": image_id, "category_id": int(rank_to_cat[k]), "bbox": bbox}
            if opts.masks:
                ann.update(area=round(polygon_area(poly), 2), segmentation=[[float(v) for v in poly.reshape(-1)]])
            else:  # box-only, as a COCO export without masks: no segmentation, the box's area
                ann["area"] = round(bbox[2] * bbox[3], 2)
            anns.append(ann)
            ann_id += 1
        file_name = f"{folder}/{image_id:012d}.jpg"
        Image.fromarray(canvas).save(out / file_name, quality=95)
        present = {int(rank_to_cat[k]) for k in ranks}
        absent = [c for c in range(1, num_classes + 1) if c not in present]
        neg = sorted(int(c) for c in rng.choice(absent, size=min(3, len(absent)), replace=False)) if absent else []
        images.append({
            "id": image_id,
            "width": size,
            "height": size,
            "file_name": file_name,
            "coco_url": file_name,
            "neg_category_ids": neg,
            "not_exhaustive_category_ids": [],
        })
    return images, anns


