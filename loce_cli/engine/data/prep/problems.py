"""The problems ``loce data prep`` reports: each kind's severity, meaning and fix, counted with a few examples."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

EXAMPLES = 3  # examples kept per problem kind

# kind -> (severity, what it means, how to fix)
KINDS: Dict[str, Tuple[str, str, str]] = {
    "not-json": ("error", "not valid JSON", "the file may be truncated or not JSON; download it again"),
    "wrong-shape": ("error", "not an LVIS annotation file",
                    "expected an object with images, annotations and categories lists (LVIS format)"),
    "wrong-version": ("error", "another LVIS version than asked for", "pass --version auto or the right version"),
    "bad-image": ("error", "image entries with missing or invalid keys",
                  "each image needs an integer id, width, height > 0 and coco_url or file_name"),
    "duplicate-image-id": ("error", "duplicate image ids", "image ids must be unique"),
    "bad-category": ("error", "category entries with missing or invalid keys",
                     "each category needs an integer id and a name"),
    "duplicate-category": ("error", "duplicate category ids or names", "category ids and names must be unique"),
    "bad-frequency": ("error", "categories without a frequency group r/c/f",
                      "LVIS gives each category frequency r (1-10 training images), c (11-100) or f (> 100)"),
    "bad-image-category-list": ("error", "neg_category_ids / not_exhaustive_category_ids invalid",
                                "these lists must hold ids of listed categories (empty lists are fine)"),
    "no-annotations": ("error", "the annotation list is empty", "a detection dataset needs annotations"),
    "bad-annotation": ("error", "annotation entries with missing or invalid keys",
                       "each annotation needs integer id, image_id, category_id, a bbox, an area and a "
                       "segmentation"),
    "duplicate-annotation-id": ("error", "duplicate annotation ids", "annotation ids must be unique"),
    "missing-image": ("error", "annotations of images that are not listed", "every image_id must be a listed image"),
    "unknown-category": ("error", "annotations of unknown categories", "every category_id must be a listed category"),
    "bad-box": ("error", "boxes that are not finite or have no positive width/height",
                "bbox is [x, y, width, height] in pixels with width, height > 0"),
    "box-outside": ("error", "boxes outside their image", "bbox must lie inside the image's width x height"),
    "bad-segmentation": ("error", "missing or malformed segmentations",
                         "segmentation is a list of polygons [x1, y1, x2, y2, ...] with at least 3 points, "
                         "or an RLE dict with counts and size"),
    "categories-differ": ("error", "annotation files with different category lists",
                          "train and val must list the same categories in the same order"),
    "image-dir-missing": ("error", "image folders missing", "see the expected layout below"),
    "image-file-missing": ("error", "image files missing", "download or copy the images (see the layout below)"),
    "image-unreadable": ("error", "image files unreadable or not images", "download them again"),
    "image-size": ("error", "image files whose size differs from the annotation's width x height",
                   "the images do not belong to these annotations"),
    # tolerable oddities
    "non-standard-json": ("warning", "NaN/Infinity literals (not standard JSON)",
                          "many JSON readers reject them; write finite numbers"),
    "file-missing": ("warning", "expected annotation file not found", "see the expected layout below"),
    "images-without-annotations": ("warning", "images without annotations",
                                   "fine for LVIS (they still count for negatives); mmdet skips them in training"),
    "classes-without-instances": ("warning", "categories without instances in this file",
                                  "fine in val; in train such a class cannot be learnt"),
    "frequency-mismatch": ("warning", "frequency fields that differ from this file's training-image counts",
                           "expected for a subset; for a full train file check the categories' frequency"),
    "official-groups": ("warning", "frequency groups differ from the official release",
                        "the file is not the official LVIS annotation file"),
    "area-mismatch": ("warning", "annotations whose area is not positive", "area should be the mask area in pixels"),
}


@dataclass
class Problem:
    kind: str
    severity: str
    message: str
    hint: str
    count: int = 0
    examples: List[str] = field(default_factory=list)


class Problems:
    """Problems grouped by kind: a count and the first few examples of each."""

    def __init__(self) -> None:
        self.by_kind: Dict[str, Problem] = {}

    def add(self, kind: str, example: Optional[str] = None, count: int = 1) -> None:
        p = self.by_kind.get(kind)
        if p is None:
            severity, message, hint = KINDS[kind]
            p = self.by_kind[kind] = Problem(kind, severity, message, hint)
        p.count += count
        if example is not None and len(p.examples) < EXAMPLES:
            p.examples.append(example)

    def errors(self) -> int:
        return sum(p.count for p in self.by_kind.values() if p.severity == "error")

    def list(self) -> List[Problem]:
        return sorted(self.by_kind.values(), key=lambda p: (p.severity != "error", p.kind))
