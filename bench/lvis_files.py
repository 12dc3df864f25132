"""LVIS-shaped JSON files at the sizes the benchmarks need (an LVIS-v1-train-sized annotation file; a val set with
its results file of 300 detections per image), too large for the engine's generator, which draws every picture.

What comes from the engine's LVIS-shaped generator (``loce_cli.engine.data.synth_lvis``, ``loce data synth --like
lvis-v1``): the classes, their training-image counts and groups (``bench.common.lvis_v1_classes``), the COCO
image sizes and how often each is drawn, the COCO id range and URLs. What is drawn here, as arrays: boxes (many
small, some large) and jagged-ellipse polygons inside them, for millions of annotations in seconds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, List

import msgspec
import numpy as np
import pycocotools.mask as mask_utils

from bench.common import lvis_v1_classes
from loce_cli.engine.data.synth_lvis import COCO_HOST, COCO_MAX_IMAGE_ID, IMAGE_SIZES

LICENSES = [{"id": 1, "name": "Attribution License", "url": "http://creativecommons.org/"}]


def images(n: int, rng: np.random.Generator) -> tuple:
    """(sorted COCO-range image ids ``[n]``, (width, height) ``[n, 2]`` drawn as the engine's generator draws)."""
    ids = np.sort(rng.choice(COCO_MAX_IMAGE_ID, size=n, replace=False)) + 1
    p = np.array([s[2] for s in IMAGE_SIZES])
    pick = rng.choice(len(IMAGE_SIZES), size=n, p=p / p.sum())
    return ids, np.array([(w, h) for w, h, _ in IMAGE_SIZES], dtype=np.int64)[pick]


def boxes(rng: np.random.Generator, W: np.ndarray, H: np.ndarray) -> tuple:
    """Long-tailed box sizes (many small, some large) placed uniformly inside images of width W, height H:
    (x, y, w, h), rounded to 2 decimals."""
    m = len(W)
    side = np.exp(rng.uniform(np.log(0.015), np.log(0.75), m))
    aspect = np.exp(rng.normal(0, 0.45, m))
    bw = np.clip(W * side * np.sqrt(aspect), 2, W)
    bh = np.clip(H * side / np.sqrt(aspect), 2, H)
    bx = rng.uniform(0, 1, m) * (W - bw)
    by = rng.uniform(0, 1, m) * (H - bh)
    return tuple(np.round(v, 2) for v in (bx, by, bw, bh))


def ellipses(x, y, w, h, npts, rng: np.random.Generator, rmin: float) -> tuple:
    """A jagged ellipse of ``npts[i]`` points inside each box: (x coordinates, y coordinates, offsets of each
    polygon's first point, ``[len + 1]``)."""
    offsets = np.concatenate([[0], np.cumsum(npts)])
    k = np.arange(offsets[-1]) - np.repeat(offsets[:-1], npts)
    ang = 2 * np.pi * k / np.repeat(npts, npts) + np.repeat(rng.uniform(0, 2 * np.pi, len(x)), npts)
    r = rng.uniform(rmin, 1.0, offsets[-1])
    px = np.repeat(x, npts) + np.repeat(w, npts) * (0.5 + 0.5 * r * np.cos(ang))
    py = np.repeat(y, npts) + np.repeat(h, npts) * (0.5 + 0.5 * r * np.sin(ang))
    return np.round(px, 2), np.round(py, 2), offsets


def polygon_areas(px: np.ndarray, py: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Area of each polygon of :func:`ellipses` (shoelace)."""
    nxt = np.arange(offsets[-1]) + 1
    nxt[offsets[1:] - 1] = offsets[:-1]
    cross = px * py[nxt] - px[nxt] * py
    return np.abs(np.add.reduceat(cross, offsets[:-1])) / 2


def polygons(n_images_of, wh: np.ndarray, rng: np.random.Generator, points: tuple, rmin: float) -> tuple:
    """Boxes and polygons of annotations on images ``n_images_of`` (indices into ``wh``): (x, y, w, h, areas,
    flat [x0, y0, x1, ...] coordinates as a list, offsets in points); ``points``: (least, most + 1) per polygon."""
    W, H = wh[n_images_of, 0].astype(np.float64), wh[n_images_of, 1].astype(np.float64)
    x, y, w, h = boxes(rng, W, H)
    px, py, off = ellipses(x, y, w, h, rng.integers(*points, len(W)), rng, rmin)
    return x, y, w, h, polygon_areas(px, py, off), np.stack([px, py], 1).reshape(-1).tolist(), off


def image_record(image_id: int, width: int, height: int, folder: str, neg: Iterable[int], not_exhaustive) -> dict:
    """An LVIS v1 image entry (COCO url; negative and not-exhaustive category ids)."""
    return {"id": int(image_id), "license": 1, "width": int(width), "height": int(height),
            "coco_url": f"{COCO_HOST}{folder}/{int(image_id):012d}.jpg", "date_captured": "2013-11-14 16:28:13",
            "neg_category_ids": sorted(int(c) for c in neg),
            "not_exhaustive_category_ids": sorted(int(c) for c in not_exhaustive)}


def categories(image_counts: np.ndarray, groups: np.ndarray, instance_counts: np.ndarray, made_by: str) -> List[dict]:
    """LVIS category entries (ids from 1) with frequency, image_count and instance_count."""
    return [{"id": c + 1, "name": f"class_{c:04d}", "synset": f"class_{c:04d}.n.01", "synonyms": [f"class_{c:04d}"],
             "def": f"a generated category for {made_by}", "frequency": str(groups[c]),
             "image_count": int(image_counts[c]), "instance_count": int(instance_counts[c])}
            for c in range(len(image_counts))]


def write_annotations(path: Path, made_by: str, image_chunks: Iterable[list], annotation_chunks: Iterable[list],
                      cats: List[dict]) -> None:
    """An LVIS v1 annotation file at ``path``, images and annotations written chunk by chunk (lists of dicts)."""
    enc = msgspec.json.Encoder()
    with open(path, "wb") as f:
        f.write(b'{"info":' + enc.encode({"description": f"LVIS v1 ({made_by}: generated)", "version": "1.0",
                                          "year": 2020})
                + b',"licenses":' + enc.encode(LICENSES) + b',"images":[')
        _write_chunks(f, enc, image_chunks)
        f.write(b'],"annotations":[')
        _write_chunks(f, enc, annotation_chunks)
        f.write(b'],"categories":' + enc.encode(cats) + b"}")


def write_results(path: Path, per_image_chunks: Iterable[list]) -> None:
    """A results file (a JSON list of detections), written image by image."""
    enc = msgspec.json.Encoder()
    with open(path, "wb") as f:
        f.write(b"[")
        _write_chunks(f, enc, per_image_chunks)
        f.write(b"]")


def _write_chunks(f, enc, chunks: Iterable[list]) -> None:
    first = True
    for chunk in chunks:
        if chunk:
            f.write((b"" if first else b",") + enc.encode(chunk)[1:-1])
            first = False


# ---------------------------------------------------------------------------------------------- bench_prep's file


def train_file(path: Path, n_images: int, n_anns: int, seed: int = 0) -> None:
    """bench_prep's file: an LVIS v1 train annotation file of ``n_images`` images and ``n_anns`` annotations
    (each class on as many images as the engine's generator gives it, the annotations spread over those
    (image, class) pairs; polygons of 12-70 points)."""
    rng = np.random.default_rng(seed)
    img_counts, freq = lvis_v1_classes(n_images, seed)
    n_classes = len(img_counts)
    pair_img = np.concatenate([rng.choice(n_images, size=int(n), replace=False) for n in img_counts])
    pair_cat = np.repeat(np.arange(n_classes), img_counts)
    per_pair = np.ones(len(pair_img), np.int64)
    if n_anns > len(pair_img):
        per_pair += np.bincount(rng.integers(0, len(pair_img), n_anns - len(pair_img)), minlength=len(pair_img))
    perm = rng.permutation(int(per_pair.sum()))
    ann_img, ann_cat = np.repeat(pair_img, per_pair)[perm], np.repeat(pair_cat, per_pair)[perm]
    image_ids, wh = images(n_images, rng)

    def image_chunks():
        for start in range(0, n_images, 20_000):
            yield [image_record(image_ids[i], wh[i, 0], wh[i, 1], "train2017",
                                rng.choice(n_classes, rng.integers(0, 12), False) + 1,
                                rng.choice(n_classes, rng.integers(0, 3), False) + 1)
                   for i in range(start, min(n_images, start + 20_000))]

    def annotation_chunks():
        for start in range(0, len(ann_img), 50_000):
            on = ann_img[start:start + 50_000]
            x, y, w, h, area, coords, off = polygons(on, wh, rng, (12, 71), 0.8)
            yield [{"area": round(float(area[j]), 2), "id": start + j + 1,
                    "segmentation": [coords[2 * off[j]:2 * off[j + 1]]], "image_id": int(image_ids[on[j]]),
                    "bbox": [float(x[j]), float(y[j]), float(w[j]), float(h[j])],
                    "category_id": int(ann_cat[start + j]) + 1} for j in range(len(on))]

    write_annotations(path, "bench_prep", image_chunks(), annotation_chunks(),
                      categories(img_counts, freq, np.bincount(ann_cat, minlength=n_classes), "bench_prep"))


# ---------------------------------------------------------------------------------------------- bench_eval's set


def val_set(root: Path, n_images: int, dets_per_image: int, seed: int = 0) -> dict:
    """bench_eval's set: root/lvis_v1_val.json (LVIS v1's classes, ``n_images`` images, a long-tailed ground truth)
    and root/results.json (exactly ``dets_per_image`` detections per image with RLE masks); returns counts."""
    rng = np.random.default_rng(seed)
    # categories: LVIS v1's rare / common / frequent classes and their training image counts (the engine's)
    img_counts, freq = lvis_v1_classes(n_images, seed)
    n_classes = len(img_counts)
    inst_counts = (img_counts * rng.uniform(1.0, 4.0, n_classes)).astype(np.int64)
    weights = img_counts.astype(np.float64) ** 0.85
    weights /= weights.sum()
    image_ids, wh = images(n_images, rng)
    gt = _ground_truth(rng, n_images, n_classes, weights, wh)
    dets = _detections(rng, gt, n_images, n_classes, weights, wh, dets_per_image)

    root.mkdir(parents=True, exist_ok=True)
    ann_tmp, res_tmp = root / "lvis_v1_val.json.tmp", root / "results.json.tmp"
    gx, gy, gw, gh, g_area, gcoords, goff = gt["polygons"]
    records = [image_record(image_ids[i], wh[i, 0], wh[i, 1], "val2017", gt["neg"][i] + 1,
                                       gt["nex"][i] + 1) for i in range(n_images)]
    anns = [{"id": j + 1, "image_id": int(image_ids[gt["img"][j]]), "category_id": int(gt["cat"][j]) + 1,
             "bbox": [float(gx[j]), float(gy[j]), float(gw[j]), float(gh[j])], "area": round(float(g_area[j]), 2),
             "segmentation": [gcoords[2 * goff[j]:2 * goff[j + 1]]]} for j in range(len(gt["img"]))]
    write_annotations(ann_tmp, "bench_eval", [records], [anns],
                                 categories(img_counts, freq, inst_counts, "bench_eval"))
    del anns
    write_results(res_tmp, _result_chunks(dets, image_ids, wh))
    ann_tmp.rename(root / "lvis_v1_val.json")
    res_tmp.rename(root / "results.json")
    gt_cat = gt["cat"]
    counts = {"images": n_images, "classes": n_classes, "gt_annotations": int(len(gt_cat)),
              "detections": int(len(dets["img"])), "tp_copies": dets["n_tp"], "false_positives": dets["n_fp"],
              "classes_with_gt": {g: int(len(np.unique(gt_cat[freq[gt_cat] == g]))) for g in "rcf"}}
    (root / "counts.json").write_text(json.dumps(counts))
    return counts


def _ground_truth(rng, n_images: int, n_classes: int, weights, wh) -> dict:
    """A long-tailed ground truth: a few classes per image (pairs), several instances each (at most 60 per image),
    each a box and a polygon; per image its negative and not-exhaustive classes."""
    m_i = 1 + rng.poisson(2.5, n_images)
    pair_img = np.repeat(np.arange(n_images), m_i)
    pair_cat = rng.choice(n_classes, size=len(pair_img), p=weights)
    key = np.unique(pair_img * n_classes + pair_cat)  # sorted by image, then class
    pair_img, pair_cat = key // n_classes, key % n_classes
    per_pair = np.minimum(rng.geometric(0.4, len(pair_img)), 20)
    gt_img = np.repeat(pair_img, per_pair)
    gt_cat = np.repeat(pair_cat, per_pair)
    rank_in_img = np.arange(len(gt_img)) - np.searchsorted(gt_img, gt_img)
    keep = rank_in_img < 60  # keeps detections per image within the budget
    gt_img, gt_cat = gt_img[keep], gt_cat[keep]
    poly = polygons(gt_img, wh, rng, (12, 41), 0.8)
    pair_start = np.searchsorted(pair_img, np.arange(n_images))
    pair_count = np.bincount(pair_img, minlength=n_images)
    neg, nex = [], []
    n_neg = rng.integers(0, 16, n_images)
    for i in range(n_images):
        pos = pair_cat[pair_start[i]:pair_start[i] + pair_count[i]]
        cand = rng.choice(n_classes, size=int(n_neg[i]) + len(pos), p=weights)
        neg.append(np.setdiff1d(cand, pos)[: int(n_neg[i])])
        nex.append(pos[rng.random(len(pos)) < 0.08])
    return dict(img=gt_img, cat=gt_cat, polygons=poly, pair_cat=pair_cat, pair_start=pair_start,
                pair_count=pair_count, neg=neg, nex=nex)


def _detections(rng, gt: dict, n_images: int, n_classes: int, weights, wh, dets_per_image: int) -> dict:
    """Jittered copies of the ground truth (some relabelled) and false positives on the image's positive,
    negative and random classes, exactly ``dets_per_image`` per image, sorted by image; each a box, a score and
    a polygon (made a mask when written)."""
    gx, gy, gw, gh = gt["polygons"][:4]
    copies = rng.choice(4, size=len(gt["img"]), p=[0.15, 0.45, 0.25, 0.15])
    tp_src = np.repeat(np.arange(len(gt["img"])), copies)
    n_tp = len(tp_src)
    tp_img = gt["img"][tp_src]
    tw = gw[tp_src] * np.exp(rng.normal(0, 0.15, n_tp))
    th = gh[tp_src] * np.exp(rng.normal(0, 0.15, n_tp))
    tx = gx[tp_src] + (gw[tp_src] - tw) / 2 + rng.normal(0, 0.1, n_tp) * gw[tp_src]
    ty = gy[tp_src] + (gh[tp_src] - th) / 2 + rng.normal(0, 0.1, n_tp) * gh[tp_src]
    tcat = gt["cat"][tp_src].copy()
    relabel = rng.random(n_tp) < 0.15
    tcat[relabel] = rng.choice(n_classes, size=int(relabel.sum()), p=weights)
    tscore = rng.uniform(0.05, 1.0, n_tp) ** 0.5
    tp_per_img = np.bincount(tp_img, minlength=n_images)
    if tp_per_img.max() > dets_per_image:
        raise SystemExit(f"--dets-per-image {dets_per_image} is below the {tp_per_img.max()} copies of the ground "
                         f"truth in one image; use at least 200")
    fp_img = np.repeat(np.arange(n_images), dets_per_image - tp_per_img)
    n_fp = len(fp_img)
    fx, fy, fw, fh = boxes(rng, wh[fp_img, 0].astype(np.float64), wh[fp_img, 1].astype(np.float64))
    src = rng.random(n_fp)
    fcat = rng.choice(n_classes, size=n_fp, p=weights)  # a random (long-tailed) class ...
    on_pos = src < 0.35  # ... or one of the image's positive classes (evaluated: real false positives)
    pick = gt["pair_start"][fp_img[on_pos]] + (rng.random(on_pos.sum())
                                               * gt["pair_count"][fp_img[on_pos]]).astype(np.int64)
    fcat[on_pos] = gt["pair_cat"][pick]
    neg_count = np.array([len(v) for v in gt["neg"]])
    neg_start = np.concatenate([[0], np.cumsum(neg_count)[:-1]])
    neg_flat = np.concatenate(gt["neg"]) if neg_count.sum() else np.zeros(0, np.int64)
    on_neg = (src >= 0.35) & (src < 0.65) & (neg_count[fp_img] > 0)  # ... or a negative class (evaluated too)
    pick = neg_start[fp_img[on_neg]] + (rng.random(on_neg.sum()) * neg_count[fp_img[on_neg]]).astype(np.int64)
    fcat[on_neg] = neg_flat[pick]
    fscore = rng.uniform(0.0, 1.0, n_fp) ** 2

    d_img = np.concatenate([tp_img, fp_img])
    order = np.argsort(d_img, kind="stable")
    d_img = d_img[order]
    dx, dy, dw, dh = (np.concatenate(v)[order] for v in ((tx, fx), (ty, fy), (tw, fw), (th, fh)))
    DW, DH = wh[d_img, 0].astype(np.float64), wh[d_img, 1].astype(np.float64)
    x1, y1 = np.clip(dx, 0, DW - 1), np.clip(dy, 0, DH - 1)
    x2, y2 = np.clip(dx + dw, x1 + 1, DW), np.clip(dy + dh, y1 + 1, DH)
    dx, dy, dw, dh = (np.round(v, 2) for v in (x1, y1, x2 - x1, y2 - y1))
    qx, qy, doff = ellipses(dx, dy, dw, dh, rng.integers(8, 17, len(d_img)), rng, 0.85)
    return dict(img=d_img, cat=np.concatenate([tcat, fcat])[order], score=np.concatenate([tscore, fscore])[order],
                box=(dx, dy, dw, dh), flat=np.stack([qx, qy], 1).reshape(-1), off=doff, n_tp=int(n_tp),
                n_fp=int(n_fp))


def _result_chunks(dets: dict, image_ids, wh):
    """The detections of each image in turn, as results-file entries with compressed RLE masks."""
    img_start = np.searchsorted(dets["img"], np.arange(len(image_ids) + 1))
    dx, dy, dw, dh = dets["box"]
    flat, off, cat, score = dets["flat"], dets["off"], dets["cat"], dets["score"]
    for i in range(len(image_ids)):
        a, b = int(img_start[i]), int(img_start[i + 1])
        rles = mask_utils.frPyObjects([flat[2 * off[j]:2 * off[j + 1]].tolist() for j in range(a, b)],
                                      int(wh[i, 1]), int(wh[i, 0]))
        yield [{"image_id": int(image_ids[i]), "category_id": int(cat[j]) + 1,
                "bbox": [float(dx[j]), float(dy[j]), float(dw[j]), float(dh[j])], "score": float(score[j]),
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}}
               for j, rle in zip(range(a, b), rles)]
