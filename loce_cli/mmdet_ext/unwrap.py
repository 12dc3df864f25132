"""Looking through mmcv's and mmdet's wrappers: the detector under a data-parallel wrapper, the annotated dataset
under the dataset wrappers, and that dataset's class labels per image."""

from __future__ import annotations

from typing import List

from mmcv.parallel import is_module_wrapper


def unwrap_model(model):
    """The detector under ``MMDataParallel`` / DDP (the model itself when it is not wrapped)."""
    return model.module if is_module_wrapper(model) else model


def unwrap_dataset(dataset):
    """The dataset holding annotations, under mmdet's wrappers (RepeatDataset, ClassBalancedDataset: these
    forward ``get_ann_info`` but hold no ``data_infos`` and none of the class statistics)."""
    while hasattr(dataset, "dataset") and not hasattr(dataset, "data_infos"):
        dataset = dataset.dataset
    return dataset


def image_labels(dataset) -> List[List[int]]:
    """Class labels (``0..C-1``) present in each image of an mmdet dataset, read from its annotations."""
    labels = []
    cat2label = getattr(dataset, "cat2label", None)
    for i in range(len(dataset)):
        if cat2label is not None:  # COCO/LVIS-style: category ids only, no box parsing
            labels.append(sorted({cat2label[c] for c in dataset.get_cat_ids(i) if c in cat2label}))
        else:
            labels.append(sorted({int(x) for x in dataset.get_ann_info(i)["labels"]}))
    return labels
