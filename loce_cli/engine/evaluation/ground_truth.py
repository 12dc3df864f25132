"""An LVIS annotation file as compact arrays: what the streaming evaluator needs of the ground truth, nothing more.

The official API keeps every annotation as a Python dict; here the file is parsed once (msgspec, typed) and
reduced to columns. Which annotations count follows ``lvis.LVISEval._prepare``: an annotation enters the
evaluation when its image is in ``images``, its category in ``categories`` and ``0 < area < inf``
(``LVIS.get_ann_ids``'s default area filter); an image's positive categories are those of its counted
annotations; ``ignore`` defaults to 0. A crowd region (``iscrowd`` set: COCO data, none in LVIS) is kept as an
ignored annotation that ``matching`` treats as pycocotools does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

import msgspec
import numpy as np
from pycocotools import mask as mask_utils

from loce_cli.core.annotations import all_exhaustive
from loce_cli.engine.data.stats import load_annotation_json
from loce_cli.errors import DataError


@dataclass
class GroundTruth:
    """Images and categories sorted by id (the official API's ``params.img_ids`` / ``cat_ids``); annotations
    sorted by (image index, category index, file order), which is the order LVISEval sees them in."""

    path: Path
    img_ids: np.ndarray  # [I] int64, sorted
    heights: np.ndarray  # [I] int64
    widths: np.ndarray  # [I] int64
    cat_ids: np.ndarray  # [K] int64, sorted
    categories: List[dict]  # [K] the category records (id, name, frequency, image_count, ...), by id
    ann_img: np.ndarray  # [M] int32 image index
    ann_cat: np.ndarray  # [M] int32 category index
    ann_area: np.ndarray  # [M] float64
    ann_ignore: np.ndarray  # [M] bool (crowd regions included)
    ann_crowd: np.ndarray  # [M] bool: iscrowd
    ann_box: np.ndarray  # [M, 4] float64 xywh
    ann_rle: Optional[List[bytes]]  # [M] compressed RLE counts (with masks only)
    pos_codes: np.ndarray  # sorted unique img_idx * K + cat_idx of the counted annotations
    neg_codes: np.ndarray  # sorted codes of each image's neg_category_ids
    nel_codes: np.ndarray  # sorted codes of each image's not_exhaustive_category_ids
    exhaustive: bool = False  # the file's flag: negatives are every (image, category) without an annotation
    annotated_codes: Optional[np.ndarray] = None  # with ``exhaustive``: sorted codes of every listed annotation

    @property
    def num_images(self) -> int:
        return int(self.img_ids.shape[0])

    @property
    def num_cats(self) -> int:
        return int(self.cat_ids.shape[0])

    def image_index(self, ids: np.ndarray) -> np.ndarray:
        """Indices of image ``ids`` in ``img_ids``; -1 for ids the file does not hold."""
        return _index_of(self.img_ids, ids)

    def cat_index(self, ids: np.ndarray) -> np.ndarray:
        return _index_of(self.cat_ids, ids)

    def verified(self, codes: np.ndarray) -> np.ndarray:
        """[N] bool: the (image, category) ``codes`` the federated rule scores: positive or negative there."""
        if self.exhaustive:
            return sorted_member(codes, self.pos_codes) | ~sorted_member(codes, self.annotated_codes)
        return sorted_member(codes, self.pos_codes) | sorted_member(codes, self.neg_codes)

    def freq_groups(self) -> List[np.ndarray]:
        """Category indices of the rare, common and frequent groups (the ``frequency`` field r / c / f)."""
        freq = np.array([str(c.get("frequency", "")) for c in self.categories])
        return [np.flatnonzero(freq == g) for g in ("r", "c", "f")]


def _index_of(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64)
    if sorted_ids.size == 0:
        return np.full(ids.shape, -1, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, ids).clip(0, sorted_ids.size - 1)
    return np.where(sorted_ids[pos] == ids, pos, -1)


def sorted_member(codes: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """[N] bool: which of the int64 ``codes`` are in the ascending array ``sorted_set``."""
    codes = np.asarray(codes, dtype=np.int64)
    if sorted_set.size == 0:
        return np.zeros(codes.shape, np.bool_)
    at = np.searchsorted(sorted_set, codes).clip(0, sorted_set.size - 1)
    return sorted_set[at] == codes


def _codes(img_idx: np.ndarray, cat_idx: np.ndarray, num_cats: int) -> np.ndarray:
    return img_idx.astype(np.int64) * num_cats + cat_idx.astype(np.int64)


def _image_lists(images: List[dict], key: str, img_index: np.ndarray, cat_ids: np.ndarray) -> np.ndarray:
    """Sorted unique codes (image index x category index) of a per-image category list such as neg_category_ids;
    ids of unknown categories are dropped (they cannot match any detection that passes validation)."""
    lens = np.fromiter((len(im.get(key) or ()) for im in images), np.int64, len(images))
    flat = np.fromiter((c for im in images for c in (im.get(key) or ())), np.int64, int(lens.sum()))
    img = np.repeat(img_index, lens)
    cat = _index_of(cat_ids, flat)
    keep = cat >= 0
    return np.unique(_codes(img[keep], cat[keep], cat_ids.size))


def _decode(path: Path) -> dict:
    try:
        data = msgspec.json.decode(Path(path).read_bytes())
    except (msgspec.DecodeError, OSError, UnicodeDecodeError):
        data = load_annotation_json(path)  # its one-line errors (missing, truncated, not JSON, ...)
    if not isinstance(data, dict) or any(not isinstance(data.get(k), list)
                                         for k in ("images", "annotations", "categories")):
        load_annotation_json(path)  # raises the right message
    return data


def rle_counts(segm: Any, h: int, w: int) -> bytes:
    """Compressed RLE counts of a polygon list, an uncompressed RLE or a compressed RLE (``ann_to_rle``)."""
    if isinstance(segm, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segm, h, w))
    elif isinstance(segm, dict) and isinstance(segm.get("counts"), list):
        rle = mask_utils.frPyObjects(segm, h, w)
    elif isinstance(segm, dict) and isinstance(segm.get("counts"), (str, bytes)):
        rle = segm
    else:
        raise ValueError("segmentation is neither polygons nor an RLE")
    counts = rle["counts"]
    return counts.encode("ascii") if isinstance(counts, str) else bytes(counts)


def load_ground_truth(path: Path, with_masks: bool) -> GroundTruth:
    """Parse ``path`` and keep the columns the evaluation needs (``with_masks``: each counted annotation's mask as
    compressed RLE counts, for segm)."""
    path = Path(path)
    data = _decode(path)
    images, anns, cats = data["images"], data["annotations"], data["categories"]
    try:
        img_ids_raw = np.fromiter((im["id"] for im in images), np.int64, len(images))
        order = np.argsort(img_ids_raw, kind="stable")
        img_ids = img_ids_raw[order]
        heights = np.fromiter((images[i]["height"] for i in order), np.int64, len(images))
        widths = np.fromiter((images[i]["width"] for i in order), np.int64, len(images))
        cats = sorted(cats, key=lambda c: c["id"])
        cat_ids = np.fromiter((c["id"] for c in cats), np.int64, len(cats))
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path}: an image or category record lacks a valid field ({type(e).__name__}: {e})",
                        "expected LVIS format: images with id/height/width, categories with id") from None
    if np.unique(img_ids).size != img_ids.size or np.unique(cat_ids).size != cat_ids.size:
        raise DataError(f"{path} has duplicate image or category ids", "each id must appear once")
    try:
        a_img = _index_of(img_ids, np.fromiter((a["image_id"] for a in anns), np.int64, len(anns)))
        a_cat = _index_of(cat_ids, np.fromiter((a["category_id"] for a in anns), np.int64, len(anns)))
        a_area = np.fromiter((a["area"] for a in anns), np.float64, len(anns))
        a_box = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(len(anns), 4)
        a_ign = np.fromiter((bool(a.get("ignore", 0)) for a in anns), np.bool_, len(anns))
        a_crowd = np.fromiter((bool(a.get("iscrowd", 0)) for a in anns), np.bool_, len(anns))
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path}: an annotation lacks a valid image_id, category_id, area or bbox "
                        f"({type(e).__name__}: {e})", "expected LVIS format annotations") from None
    with np.errstate(invalid="ignore"):
        counted = (a_img >= 0) & (a_cat >= 0) & (a_area > 0) & (a_area < math.inf)
    keep = np.flatnonzero(counted)
    keep = keep[np.lexsort((keep, a_cat[keep], a_img[keep]))]
    rles = None
    if with_masks:
        try:
            rles = [rle_counts(anns[i]["segmentation"], int(heights[a_img[i]]), int(widths[a_img[i]]))
                    for i in keep.tolist()]
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path}: an annotation has no usable segmentation ({type(e).__name__}: {e})",
                            "segm evaluation needs polygons or RLE masks; pass --metric bbox") from None
    num_cats = cat_ids.size
    ann_img, ann_cat = a_img[keep].astype(np.int32), a_cat[keep].astype(np.int32)
    sorted_images = [images[i] for i in order]
    img_index = np.arange(len(images), dtype=np.int64)
    exhaustive = all_exhaustive(data)
    listed = (a_img >= 0) & (a_cat >= 0)
    if exhaustive:
        sorted_images = [{}] * len(images)  # lists, if any, are not read
    return GroundTruth(
        path=path, img_ids=img_ids, heights=heights, widths=widths, cat_ids=cat_ids, categories=cats,
        ann_img=ann_img, ann_cat=ann_cat, ann_area=a_area[keep], ann_ignore=a_ign[keep] | a_crowd[keep],
        ann_crowd=a_crowd[keep], ann_box=a_box[keep],
        ann_rle=rles, pos_codes=np.unique(_codes(ann_img, ann_cat, num_cats)),
        neg_codes=_image_lists(sorted_images, "neg_category_ids", img_index, cat_ids),
        nel_codes=_image_lists(sorted_images, "not_exhaustive_category_ids", img_index, cat_ids),
        exhaustive=exhaustive,
        annotated_codes=np.unique(_codes(a_img[listed], a_cat[listed], num_cats)) if exhaustive else None)
