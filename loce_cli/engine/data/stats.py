"""Class-frequency statistics of an LVIS-format annotation file (``loce data stats``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from loce_cli.core.frequency import GROUP_NAMES, GROUPS, frequency_group
from loce_cli.errors import DataError


@dataclass
class ClassStat:
    id: int
    name: str
    group: str
    images: int
    instances: int


@dataclass
class GroupStat:
    classes: int
    images: int
    instances: int
    classes_without_instances: int


@dataclass
class DatasetStats:
    annotation_file: str
    num_images: int
    num_annotations: int
    num_classes: int
    frequency_source: str  # "categories" (the file's own frequency field) or "derived" (from this file's images)
    groups: Dict[str, GroupStat]
    head_tail_ratio: Optional[float]  # instances of the largest class / of the smallest non-empty class
    classes: List[ClassStat] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["groups"] = {GROUP_NAMES[g]: v for g, v in d["groups"].items()}
        return d


def load_annotation_json(path: Path) -> dict:
    """Read an LVIS-format JSON with clear errors for missing, unreadable or truncated files."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"annotation file {path} does not exist", "check the path")
    if path.is_dir():
        raise DataError(f"{path} is a directory, not an annotation JSON",
                        "pass e.g. DIR/annotations/lvis_v1_train.json")
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})",
                        "the file may be truncated; download or generate it again") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path}: {e}", "check the file's permissions and encoding") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} is not an LVIS annotation file (top level is {type(data).__name__})",
                        "expected an object with images, annotations and categories")
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing:
        raise DataError(f"{path} lacks the list(s) {', '.join(missing)}",
                        "expected LVIS format: images, annotations and categories")
    return data


def dataset_stats(path: Path) -> DatasetStats:
    """Per-class and per-frequency-group counts of classes, images and instances."""
    data = load_annotation_json(path)
    cats = data["categories"]
    try:
        cat_ids = [int(c["id"]) for c in cats]
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{path}: a category lacks an integer 'id'", "fix the categories list") from None
    if not cat_ids:
        raise DataError(f"{path} has no categories", "an LVIS file lists its classes under 'categories'")
    index = {cid: i for i, cid in enumerate(cat_ids)}
    images_per_class: List[set] = [set() for _ in cat_ids]
    instances = [0] * len(cat_ids)
    for n, ann in enumerate(data["annotations"]):
        try:
            i = index[int(ann["category_id"])]
            images_per_class[i].add(ann["image_id"])
        except KeyError:
            raise DataError(f"{path}: annotation #{n} (id {ann.get('id')}) has an unknown or missing category_id "
                            f"{ann.get('category_id')!r}", "every annotation must name a listed category") from None
        instances[i] += 1

    # The official groups come from training-set image counts, stored in each category's 'frequency'. A file
    # without them (user data) gets groups derived from its own image counts: right for a training file.
    has_freq = all(c.get("frequency") in GROUPS for c in cats)
    classes = []
    for i, c in enumerate(cats):
        n_img = len(images_per_class[i])
        group = c["frequency"] if has_freq else frequency_group(n_img)
        classes.append(ClassStat(id=cat_ids[i], name=str(c.get("name", cat_ids[i])), group=group, images=n_img,
                                 instances=instances[i]))

    groups = {}
    for g in GROUPS:
        members = [k for k, cs in enumerate(classes) if cs.group == g]
        imgs = set()
        for k in members:
            imgs |= images_per_class[k]
        groups[g] = GroupStat(classes=len(members), images=len(imgs), instances=sum(instances[k] for k in members),
                              classes_without_instances=sum(1 for k in members if instances[k] == 0))
    nonzero = [n for n in instances if n > 0]
    ratio = (max(nonzero) / min(nonzero)) if nonzero else None
    return DatasetStats(
        annotation_file=str(path),
        num_images=len(data["images"]),
        num_annotations=len(data["annotations"]),
        num_classes=len(cats),
        frequency_source="categories" if has_freq else "derived",
        groups=groups,
        head_tail_ratio=ratio,
        classes=classes,
    )
