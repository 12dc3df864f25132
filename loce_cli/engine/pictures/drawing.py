"""Detections drawn on images (``loce predict``, the quickstart's pictures): translucent masks, box outlines,
``name 0.87`` labels, coloured by frequency group, with a small legend. numpy + PIL; pixels away from every
drawn detection and the legend keep their exact input values."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pycocotools import mask as mask_util

from loce_cli.atomic import atomic_path
from loce_cli.core.frequency import GROUP_NAMES, GROUPS
from loce_cli.engine.pictures.colours import group_rgb

MASK_ALPHA = 0.45
_LEGEND_ALPHA = 0.8


@dataclass
class Drawn:
    """One detection to draw: box corners in pixels, class name, score (None: a ground-truth object, labelled
    by name only), group key (``r``/``c``/``f``) and its mask (``H x W`` bool at the image's size) or None."""

    box: Tuple[float, float, float, float]
    name: str
    score: Optional[float]
    group: str
    mask: Optional[np.ndarray] = None


@lru_cache(maxsize=16)
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _style(height: int, width: int) -> Tuple[int, int]:
    """Line width and font size for an image of this size."""
    side = min(height, width)
    return max(1, round(side / 256)), max(9, min(28, round(side / 36)))


def _text_size(font, text: str) -> Tuple[int, int]:
    x0, y0, x1, y1 = font.getbbox(text)
    return int(x1 - min(x0, 0)), int(y1 - min(y0, 0))


def legend_box(height: int, width: int, groups: Sequence[str]) -> Optional[Tuple[int, int, int, int]]:
    """Where the legend of ``groups`` goes (``x0, y0, x1, y1``, exclusive ends, bottom-left corner), or None."""
    groups = [g for g in GROUPS if g in set(groups)]
    if not groups:
        return None
    line, size = _style(height, width)
    font = _font(size)
    pad = max(2, size // 4)
    rows = [_text_size(font, GROUP_NAMES[g]) for g in groups]
    row_h = max(size, max(h for _, h in rows)) + pad
    w = pad * 3 + size + max(w for w, _ in rows)
    h = pad + row_h * len(groups)
    return 0, max(0, height - h), min(width, w), height


def draw_detections(image: np.ndarray, dets: Sequence[Drawn], legend: bool = True) -> np.ndarray:
    """A copy of the RGB ``image`` (``H x W x 3`` uint8) with ``dets`` drawn: masks blended in their group's
    colour (alpha 0.45, lowest score first), box outlines, ``name score`` labels (the highest score on top)
    and, when anything was drawn and ``legend``, the groups present in the bottom-left corner."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError("draw_detections needs an H x W x 3 uint8 image")
    height, width = image.shape[:2]
    out = image.copy()
    order = sorted(range(len(dets)), key=lambda i: -1.0 if dets[i].score is None else dets[i].score)
    for i in order:
        d = dets[i]
        if d.mask is not None and d.mask.any():
            colour = np.array(group_rgb(d.group), dtype=np.float32)
            px = out[d.mask].astype(np.float32)
            out[d.mask] = np.clip(np.rint((1 - MASK_ALPHA) * px + MASK_ALPHA * colour), 0, 255).astype(np.uint8)
    canvas = Image.fromarray(out)
    draw = ImageDraw.Draw(canvas)
    line, size = _style(height, width)
    font = _font(size)
    for i in order:
        d = dets[i]
        x1, y1, x2, y2 = _clip_box(d.box, width, height)
        draw.rectangle([x1, y1, x2, y2], outline=group_rgb(d.group), width=line)
    labels = label_boxes(dets, height, width)
    for i in order:
        d = dets[i]
        left, top, right, bottom = labels[i]
        pad = max(1, size // 8)
        draw.rectangle([left, top, right - 1, bottom - 1], fill=group_rgb(d.group))
        draw.text((left + pad, top + pad), label_text(d), fill=(255, 255, 255), font=font)
    out = np.asarray(canvas).copy()
    if legend and dets:
        _draw_legend(out, [d.group for d in dets])
    return out


def label_text(d: Drawn) -> str:
    return d.name if d.score is None else f"{d.name} {d.score:.2f}"


def label_box(d: Drawn, height: int, width: int) -> Tuple[int, int, int, int]:
    """Where the label of ``d`` goes when it is the only one: see ``label_boxes``."""
    return label_boxes([d], height, width)[0]


def label_boxes(dets: Sequence[Drawn], height: int, width: int) -> List[Tuple[int, int, int, int]]:
    """Where each label goes (``x0, y0, x1, y1``, exclusive ends, clipped to the image), highest score placed
    first: at the box's left edge, above the box, else inside its top, below it or inside its bottom — the first
    of these that fits in the image and covers no label placed before (the first that fits when all do);
    shifted left to stay in the image when it can."""
    _, size = _style(height, width)
    font = _font(size)
    pad = max(1, size // 8)
    placed: List[Optional[Tuple[int, int, int, int]]] = [None] * len(dets)
    for i in sorted(range(len(dets)), key=lambda i: -1.0 if dets[i].score is None else -dets[i].score):
        d = dets[i]
        tw, th = _text_size(font, label_text(d))
        lw, lh = tw + 2 * pad, th + 2 * pad
        x1, y1, _, y2 = _clip_box(d.box, width, height)
        left = min(x1, max(0, width - lw))
        tops = [t for t in (y1 - lh, y1, y2 + 1, y2 + 1 - lh) if 0 <= t and t + lh <= height] or [y1]
        boxes = [(left, t, min(width, left + lw), min(height, t + lh)) for t in tops]
        free = [b for b in boxes if not any(_overlap(b, o) for o in placed if o is not None)]
        placed[i] = (free or boxes)[0]
    return placed  # type: ignore[return-value]


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _clip_box(box, width: int, height: int) -> Tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    x1 = int(np.clip(np.floor(x1), 0, width - 1))
    y1 = int(np.clip(np.floor(y1), 0, height - 1))
    x2 = int(np.clip(np.ceil(x2) - 1, x1, width - 1))
    y2 = int(np.clip(np.ceil(y2) - 1, y1, height - 1))
    return x1, y1, x2, y2


def _draw_legend(out: np.ndarray, groups: Sequence[str]) -> None:
    height, width = out.shape[:2]
    box = legend_box(height, width, groups)
    if box is None:
        return
    x0, y0, x1, y1 = box
    region = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.rint((1 - _LEGEND_ALPHA) * region + _LEGEND_ALPHA * 255).astype(np.uint8)
    _, size = _style(height, width)
    font = _font(size)
    pad = max(2, size // 4)
    present = [g for g in GROUPS if g in set(groups)]
    rows = [_text_size(font, GROUP_NAMES[g]) for g in present]
    row_h = max(size, max(h for _, h in rows)) + pad
    tile = Image.fromarray(out[y0:y1, x0:x1])
    draw = ImageDraw.Draw(tile)
    for n, g in enumerate(present):
        top = pad + n * row_h
        draw.rectangle([pad, top, pad + size - 1, top + size - 1], fill=group_rgb(g))
        draw.text((2 * pad + size, top), GROUP_NAMES[g], fill=(0, 0, 0), font=font)
    out[y0:y1, x0:x1] = np.asarray(tile)


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement by an integer ``factor`` (small images, for pictures people look at)."""
    if factor == 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def side_by_side(panels: Sequence[Tuple[str, np.ndarray]], gap: int = 8) -> np.ndarray:
    """The images of ``panels`` (title, RGB array of one height) in a row on a white canvas, titles above."""
    heights = {img.shape[0] for _, img in panels}
    if len(heights) != 1:
        raise ValueError("side_by_side needs panels of one height")
    height = heights.pop()
    _, size = _style(height, height)
    font = _font(size + 2)
    title_h = _text_size(font, "Ag")[1] + 2 * gap
    width = sum(img.shape[1] for _, img in panels) + gap * (len(panels) + 1)
    canvas = Image.new("RGB", (width, height + title_h + gap), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = gap
    for title, img in panels:
        draw.text((x, gap), title, fill=(0, 0, 0), font=font)
        canvas.paste(Image.fromarray(img), (x, title_h))
        x += img.shape[1] + gap
    return np.asarray(canvas)


def write_png(image: np.ndarray, path: Path) -> Path:
    """``image`` (RGB uint8) as a PNG at ``path``, written to a temporary name and renamed."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG", optimize=True)
    return path


def drawn_from_lvis(dets: Sequence[dict], labels: Sequence[int], names: Sequence[str], groups: Sequence[str],
                    height: int, width: int, split: Optional[Sequence[str]] = None) -> List[Drawn]:
    """``Drawn`` items for LVIS detections (RLE masks decoded at ``height x width``); ``split`` keeps only the
    given group keys."""
    items = []
    for det, label in zip(dets, labels):
        if split is not None and groups[label] not in split:
            continue
        x, y, w, h = det["bbox"]
        mask = None
        seg = det.get("segmentation")
        if isinstance(seg, dict):
            rle = dict(seg, counts=seg["counts"].encode() if isinstance(seg["counts"], str) else seg["counts"])
            mask = mask_util.decode(rle).astype(bool)
            if mask.shape != (height, width):
                mask = None
        items.append(Drawn((x, y, x + w, y + h), names[label], det["score"], groups[label], mask))
    return items
