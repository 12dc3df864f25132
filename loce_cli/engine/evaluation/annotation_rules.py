"""Which annotation rules a ground-truth file follows, checked before any evaluation so that AP is never silently
wrong.

LVIS AP is federated: a detection of a category counts in an image only when the category is among the image's
positives (annotated there) or its ``neg_category_ids`` (verified absent). A plain COCO file has neither
``frequency`` groups nor ``neg_category_ids``, so LVIS AP on it would score only detections of classes annotated
in each image and report a figure far above COCO's: refused, naming ``loce data import coco`` (which writes
``neg_category_ids`` = every category not annotated in the image, COCO's exhaustive rule). An LVIS-format file
whose images carry no ``neg_category_ids`` at all gets a warning saying what that does to AP, unless its ``info``
carries the exhaustive flag (``core.annotations.EXHAUSTIVE_KEY``: the train file of ``loce data import coco``),
which stands for COCO's lists. Crowd regions
(``iscrowd``) are matched as pycocotools does by the streaming evaluator; the official lvis API has no crowd
regions, so it is refused on such a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

import msgspec

from loce_cli.core.annotations import all_exhaustive
from loce_cli.errors import DataError


class _Category(msgspec.Struct):
    frequency: Any = None


class _Image(msgspec.Struct):
    neg_category_ids: Any = None


class _Annotation(msgspec.Struct):
    iscrowd: Any = 0


class _File(msgspec.Struct):
    images: List[_Image]
    annotations: List[_Annotation]
    categories: List[_Category]
    info: Any = None


@dataclass
class AnnotationRules:
    images: int
    with_frequency: int  # categories with a frequency field
    with_neg_lists: int  # images with a neg_category_ids list
    crowd: int  # crowd annotations
    exhaustive: bool = False  # the info's flag: every category exhaustively annotated in every image

    @property
    def plain_coco(self) -> bool:
        return self.with_frequency == 0 and self.with_neg_lists == 0 and not self.exhaustive


def read_rules(ann_file: Path) -> Optional[AnnotationRules]:
    """The rule-bearing fields of ``ann_file``; None when it does not parse as an annotation file (the evaluator's
    own reader then names what is wrong)."""
    try:
        data = msgspec.json.decode(Path(ann_file).read_bytes(), type=_File)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    return AnnotationRules(
        images=len(data.images),
        with_frequency=sum(1 for c in data.categories if c.frequency is not None),
        with_neg_lists=sum(1 for im in data.images if im.neg_category_ids is not None),
        crowd=sum(1 for a in data.annotations if a.iscrowd),
        exhaustive=all_exhaustive({"info": data.info}))


def check_rules(ann_file: Path, evaluator: str) -> List[str]:
    """Refuse (``DataError``) a plain COCO file, and crowd regions under the lvis API; the warnings to show."""
    rules = read_rules(ann_file)
    if rules is None:
        return []
    if rules.plain_coco:
        raise DataError(
            f"{ann_file} is a COCO annotation file (categories without 'frequency', images without "
            "'neg_category_ids'): LVIS AP on it would score only the classes annotated in each image and come out "
            "far above COCO's AP",
            "convert it with `loce data import coco OUT --train TRAIN.json --train-images DIR --val VAL.json "
            "--val-images DIR` and evaluate against OUT's val file")
    if rules.crowd and evaluator == "lvis":
        raise DataError(f"the lvis API has no crowd regions; use --evaluator streaming ({ann_file} has "
                        f"{rules.crowd:,} iscrowd annotations)",
                        "the streaming evaluator matches crowd regions as pycocotools does")
    warnings = []
    if rules.images and rules.with_neg_lists == 0 and not rules.exhaustive:
        warnings.append(
            f"no image of {Path(ann_file).name} lists neg_category_ids: under LVIS's federated rule a detection "
            "of a class not annotated in its image is then never scored, so false positives on absent classes do "
            "not count and AP comes out higher than on exhaustively annotated data (for COCO-format data use "
            "`loce data import coco`)")
    return warnings
