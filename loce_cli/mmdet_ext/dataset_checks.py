"""Checks of the training data for configs whose data did not go through ``loce data prep`` (which refuses
both cases for the whole file up front):

- at dataset build time, over the whole annotation file at once (vectorised): a box that leaves its image by
  more than ``BOX_TOLERANCE`` pixels (the same rule) (mmdet would clip it into a different box, or a full-image one), the
  image named;
- at load time, per image (reading every image header up front would be slow): an image whose real size
  differs from its annotated width x height (it would land in the wrong aspect-ratio group, its masks would be
  pasted at the wrong size), an unreadable or zero-byte file; one :class:`~loce_cli.errors.ImageDataError` line
  naming the file, also from inside DataLoader workers (no worker traceback).
"""

from __future__ import annotations

import os

import numpy as np

from loce_cli.core.annotations import BOX_TOLERANCE, boxes_outside
from loce_cli.errors import DataError, ImageDataError
_HINT_PREP = "fix the annotation, or run `loce data prep --root DATA_ROOT` to list every problem of the file"


def check_boxes_inside(coco, ann_file: str, tolerance: float = BOX_TOLERANCE) -> None:
    """Refuse annotations whose box leaves its image by more than ``tolerance`` pixels (first one named, count)."""
    anns = list(coco.anns.values())
    if not anns:
        return
    boxes = np.asarray([a.get("bbox", (0, 0, 0, 0)) for a in anns], dtype=np.float64).reshape(len(anns), -1)[:, :4]
    size = np.asarray([(coco.imgs.get(a["image_id"], {}).get("width", np.inf),
                        coco.imgs.get(a["image_id"], {}).get("height", np.inf)) for a in anns], dtype=np.float64)
    W, H = size.T
    outside = boxes_outside(boxes, W, H, tolerance)
    if outside.any():
        k = int(np.argmax(outside))
        a = anns[k]
        img = coco.imgs.get(a["image_id"], {})
        name = img.get("file_name") or img.get("coco_url") or a["image_id"]
        raise DataError(f"{ann_file}: {int(outside.sum()):,} annotation box(es) leave their image by more than "
                        f"{tolerance:g} px (the first: annotation {a.get('id')} of image {a['image_id']} ({name}), "
                        f"bbox {[round(float(v), 2) for v in boxes[k]]} in a {W[k]:g} x {H[k]:g} image)", _HINT_PREP)


class CheckImageSize:
    """A pipeline step placed right after the image is loaded: the decoded image must have its annotated size."""

    def __call__(self, results: dict) -> dict:
        info = results.get("img_info") or {}
        img = results.get("img")
        want = (info.get("height"), info.get("width"))
        if img is not None and None not in want and tuple(img.shape[:2]) != (int(want[0]), int(want[1])):
            path = results.get("filename") or info.get("filename")
            raise ImageDataError(f"image {path} is {img.shape[1]} x {img.shape[0]} px but its annotation says "
                                 f"{want[1]} x {want[0]} (image id {info.get('id')})",
                                 "fix the image's width/height in the annotation file (loce data prep "
                                 "--check-images all finds every such image)")
        return results


def insert_size_check(pipeline) -> None:
    """Put :class:`CheckImageSize` after the pipeline's image-loading step (mmdet's ``Compose``)."""
    steps = getattr(pipeline, "transforms", None)
    if steps is None or any(isinstance(t, CheckImageSize) for t in steps):
        return
    at = next((i for i, t in enumerate(steps) if type(t).__name__.startswith("LoadImage")), None)
    if at is not None:
        steps.insert(at + 1, CheckImageSize())


def load_checked(dataset, idx: int, prepare) -> Any:
    """``prepare(idx)`` (mmdet's prepare_train_img / prepare_test_img) with one-line errors naming the image
    (picklable, so they cross from DataLoader workers as they are)."""
    info = dataset.data_infos[idx]
    path = os.path.join(dataset.img_prefix or "", info["filename"])
    try:
        data = prepare(idx)
    except ImageDataError:
        raise
    except Exception as e:
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            raise ImageDataError(f"image {path} is empty (0 bytes)", "restore the file or remove the image from the "
                                 "annotations") from None
        if not os.path.isfile(path):
            raise ImageDataError(f"image {path} does not exist (image id {info.get('id')})",
                                 "check img_prefix, or restore the file") from None
        text = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        raise ImageDataError(f"image {path} could not be loaded ({type(e).__name__}: {text})",
                             "check the file (a valid JPEG/PNG?) or remove it from the annotations") from None
    return data
