"""LVIS-format dataset whose classes come from the annotation file.

mmdet's ``LVISV1Dataset`` hard-codes LVIS v1's 1203 class names and reads image paths only from
``coco_url``. ``LoceLVISDataset`` takes the classes (and their order) from the file's ``categories``, so the
synthetic data and users' own LVIS-format data work unchanged, and resolves each image from ``coco_url``
(host stripped, as for LVIS v1: ``train2017/000000391895.jpg``) or else from ``file_name``.

When ``loce data prep`` has written ``loce_meta.json`` next to the annotation file, the class names, frequency
groups and training-image / instance counts come from it (checked against the file's categories);
``loce_meta='required'`` (the real-LVIS configs) refuses a file without it, naming ``loce data prep``.
"""

from __future__ import annotations

import json
from pathlib import Path

from lvis import LVIS
from mmdet.datasets.builder import DATASETS
from mmdet.datasets.lvis import LVISV1Dataset

from loce_cli import compat
from loce_cli.core.annotations import image_relpath  # the rule loce data prep checks images with
from loce_cli.mmdet_ext.dataset_checks import check_boxes_inside, insert_size_check, load_checked


@DATASETS.register_module()
class LoceLVISDataset(LVISV1Dataset):
    """``LVISV1Dataset`` with classes read from the annotation file (``classes=None``) or checked against it.

    ``self.class_frequency`` lists each class's LVIS group (``'r'``/``'c'``/``'f'``) in label order, and
    ``self.class_image_count`` / ``self.class_instance_count`` its training image / instance counts, when the
    file carries them.
    """

    CLASSES = None
    META_NAME = "loce_meta.json"

    def __init__(self, *args, classes=None, loce_meta="auto", **kwargs):
        if loce_meta not in ("auto", "required", "ignore"):
            raise ValueError(f"loce_meta must be 'auto', 'required' or 'ignore', got {loce_meta!r}")
        self._requested_classes = classes
        self._loce_meta = loce_meta
        self.meta = None
        super().__init__(*args, classes=classes, **kwargs)
        insert_size_check(self.pipeline)  # an image of another size than annotated: one line naming it

    def load_annotations(self, ann_file):
        compat.apply()
        self.coco = LVIS(ann_file)
        self.cat_ids = self.coco.get_cat_ids()
        self.cat2label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        cats = [self.coco.cats[c] for c in self.cat_ids]
        names = tuple(str(c["name"]) for c in cats)
        requested = self.get_classes(self._requested_classes) if self._requested_classes is not None else None
        if requested is not None and tuple(requested) != names:
            raise ValueError(
                f"classes given in the config ({len(requested)}) differ from the {len(names)} categories of "
                f"{ann_file}; leave `classes` unset to take them from the file")
        self.CLASSES = names
        self.class_frequency = tuple(c.get("frequency") for c in cats)
        self.class_image_count = tuple(c.get("image_count") for c in cats)
        self.class_instance_count = tuple(c.get("instance_count") for c in cats)
        meta = self._read_meta(ann_file) if self._loce_meta != "ignore" else None
        if meta is not None:
            prep = f"loce data prep --root {_dataset_root(ann_file)}"
            if [int(c) for c in meta["category_ids"]] != list(self.cat_ids) or tuple(meta["classes"]) != names:
                raise ValueError(f"{Path(ann_file).parent / self.META_NAME} lists other classes than {ann_file}; "
                                 f"run `{prep}` again")
            self.meta = meta
            self.CLASSES = tuple(meta["classes"])
            self.class_frequency = tuple(meta["frequency"])
            train = (meta.get("files") or {}).get(meta.get("train_file") or "")
            if train:  # training-set counts, also for a val dataset
                self.class_image_count = tuple(train["image_count"])
                self.class_instance_count = tuple(train["instance_count"])
        if meta is None:  # not through `loce data prep` (which refuses such boxes for the whole file)
            check_boxes_inside(self.coco, ann_file)
        self.img_ids = self.coco.get_img_ids()
        data_infos = []
        for i in self.img_ids:
            info = dict(self.coco.load_imgs([i])[0])
            info["filename"] = image_relpath(info)
            data_infos.append(info)
        return data_infos

    def prepare_train_img(self, idx):
        return load_checked(self, idx, super().prepare_train_img)  # one line naming the image, size checked

    def prepare_test_img(self, idx):
        return load_checked(self, idx, super().prepare_test_img)

    def _read_meta(self, ann_file):
        """``loce_meta.json`` next to ``ann_file`` if it describes this file (None when absent and optional)."""
        path = Path(ann_file).parent / self.META_NAME
        prep = f"loce data prep --root {_dataset_root(ann_file)}"
        if not path.is_file():
            if self._loce_meta == "required":
                raise FileNotFoundError(f"{ann_file} has not been prepared (no {self.META_NAME} next to it); "
                                        f"run `{prep}` first")
            return None
        with open(path, "rb") as f:
            meta = json.load(f)
        entry = (meta.get("files") or {}).get(Path(ann_file).name)
        if entry is None or entry.get("size") != Path(ann_file).stat().st_size:
            if self._loce_meta == "required":
                raise ValueError(f"{path} does not describe {ann_file} as it is now; run `{prep}` again")
            return None
        return meta


def _dataset_root(ann_file) -> Path:
    parent = Path(ann_file).parent
    return parent.parent if parent.name == "annotations" else parent
