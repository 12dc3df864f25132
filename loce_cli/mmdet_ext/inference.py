"""Inference of a detector over a config's test set, as LVIS results (boxes and RLE masks)."""

from __future__ import annotations

import contextlib
import copy
import sys
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

import torch
from mmcv.parallel import MMDataParallel
from mmdet.datasets import build_dataloader, build_dataset
from mmdet.models import build_detector
from torch.utils.data import Subset

from loce_cli.core.class_names import compare_names
from loce_cli.core.checkpoint_io import load_checkpoint_file
from loce_cli.errors import DataError
from loce_cli.mmdet_ext.amp import fp32_head_outputs, inference_autocast
from loce_cli.mmdet_ext.mask_rle import detect
from loce_cli.mmdet_ext.per_class_cap import RunningCap, per_class_cap


TRAINING_STATE = ("roi_head.memory.", "roi_head.bbox_head.score_tracker.")  # LOCE state inference never reads


def load_detector(cfg, checkpoint: Path, device: str):
    """The detector of ``cfg`` with the weights of ``checkpoint``, in eval mode on ``device``, for inference.

    Unlike mmdet's ``init_detector`` it leaves out LOCE's feature memory: the memory is training state (4.8 GB
    at LVIS v1 in fp32) that inference never reads, so the model is built with a one-slot memory, the checkpoint
    is memory-mapped and its ``roi_head.memory.*`` tensors are never read. Other weights load as
    ``init_detector`` loads them (missing or unexpected keys are reported on stderr, class names come from the
    checkpoint's meta)."""
    cfg = copy.deepcopy(cfg)
    model_cfg = cfg.model
    if "pretrained" in model_cfg:
        model_cfg.pretrained = None
    elif "init_cfg" in model_cfg.get("backbone", {}):
        model_cfg.backbone.init_cfg = None
    model_cfg.train_cfg = None
    if isinstance(model_cfg.get("roi_head", {}).get("memory"), dict):
        model_cfg.roi_head.memory["queue_size"] = 1
    model = build_detector(model_cfg, test_cfg=cfg.get("test_cfg"))
    ckpt = load_checkpoint_file(checkpoint, map_location="cpu", mmap=True)  # weights only; legacy files read
    state = ckpt.get("state_dict", ckpt)
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()
             if not k.replace("module.", "", 1).startswith(TRAINING_STATE[0])}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(TRAINING_STATE)]
    if missing or unexpected:
        print(f"warning: {checkpoint} does not fit the config's model exactly: missing {missing[:5]}"
              f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
              f"{' ...' if len(unexpected) > 5 else ''}", file=sys.stderr)
    meta = ckpt.get("meta") or {}
    model.CLASSES = tuple(meta["CLASSES"]) if meta.get("CLASSES") else None  # None: the caller's data names them
    model.cfg = cfg
    model.to(device)
    model.eval()
    return model


def check_test_classes(have: tuple, want: tuple, checkpoint, ann_file) -> None:
    """Refuse a checkpoint whose class names differ from the test set's beyond LVIS's known spelling variants,
    naming the first index and both names; an accepted variant is noted once on stderr."""
    comparison = compare_names(have, want)
    if not comparison.same:
        a, b = comparison.names_at(have, want)
        count = f" ({len(have)} vs {len(want)} classes)" if len(have) != len(want) else ""
        raise DataError(f"{checkpoint} classes differ from the test set's ({ann_file}){count}: first difference at "
                        f"index {comparison.first_difference}: {a!r} vs {b!r}",
                        "evaluate on the dataset it was trained on (same LVIS version and category list), or pass "
                        "that dataset's config")
    if comparison.variants:
        print(f"note: {checkpoint}: {comparison.note()}", file=sys.stderr)


def check_class_total(model, num: int, checkpoint, ann_file) -> None:
    """Refuse a model whose box head has another class count than ``num`` (the test set's)."""
    have = int(model.roi_head.bbox_head.num_classes)
    if have != num:
        raise DataError(f"{checkpoint} was loaded into a model of {have} classes but the test set ({ann_file}) has "
                        f"{num}", "evaluate on the dataset it was trained on, with its config")


def result_to_lvis(res, img_id: int, cat_ids) -> Tuple[List[dict], List[int]]:
    """One image's detector result (``detect()``'s ``(bbox_results, rle_results)`` or ``bbox_results``) as LVIS
    results (``image_id, category_id, bbox [x, y, w, h], score[, segmentation RLE]``), and each one's label
    index (``cat_ids[label]`` is its category id)."""
    bbox_res, segm_res = res if isinstance(res, tuple) else (res, None)
    dets: List[dict] = []
    labels: List[int] = []
    for label, boxes in enumerate(bbox_res):
        for j in range(boxes.shape[0]):
            x1, y1, x2, y2, score = (float(v) for v in boxes[j])
            det = dict(image_id=img_id, category_id=cat_ids[label], bbox=[x1, y1, x2 - x1, y2 - y1], score=score)
            if segm_res is not None:
                rle = dict(segm_res[label][j])
                counts = rle["counts"]
                rle["counts"] = counts.decode() if isinstance(counts, bytes) else counts
                det["segmentation"] = rle
            dets.append(det)
            labels.append(label)
    return dets, labels


def lvis_detections(cfg, checkpoint: Path, device: str, max_dets: int,
                    progress: Optional[Callable[[int, int], None]] = None, rank: int = 0,
                    world: int = 1) -> Tuple[List[dict], bool]:
    """Run the model of ``cfg`` with ``checkpoint`` over ``cfg.data.test``; return the LVIS results list
    (``image_id, category_id, bbox [x, y, w, h], score[, segmentation RLE]``) and whether masks came.
    With ``world > 1`` this process takes images ``rank, rank + world, ...`` (no padding, no duplicates);
    ``progress(done, total)`` counts this process's images. Holds every detection: ``iter_image_detections``
    is the streaming form."""
    dets: List[dict] = []
    has_masks = False
    for _img_id, image_dets, masks in iter_image_detections(cfg, checkpoint, device, max_dets, progress, rank,
                                                             world):
        dets.extend(image_dets)
        has_masks = has_masks or masks
    return dets, has_masks


def iter_image_detections(cfg, checkpoint: Path, device: str, max_dets: int,
                          progress: Optional[Callable[[int, int], None]] = None, rank: int = 0,
                          world: int = 1, per_class: Optional[int] = None,
                          amp: Optional[str] = None) -> Iterator[Tuple[int, List[dict], bool]]:
    """``(image id, its LVIS detections, whether the model gave masks)`` per image of this process's share, in
    dataset order: what ``lvis_detections`` returns, one image at a time. With ``per_class`` there is no cap per
    image but at most ``per_class`` detections of each class per image (``per_class_cap``: for AP-fixed).
    ``amp`` (``bf16`` / ``fp16``): the forward under autocast, the heads' outputs in fp32
    (:mod:`loce_cli.mmdet_ext.amp`)."""
    test = cfg.data.test
    test.test_mode = True
    cfg.model.test_cfg.rcnn.max_per_img = max_dets
    dataset = build_dataset(test)
    indices = list(range(rank, len(dataset), world))
    shard = dataset if world == 1 else Subset(dataset, indices)
    loader = build_dataloader(shard, samples_per_gpu=1, workers_per_gpu=cfg.data.get("workers_per_gpu", 1),
                              dist=False, shuffle=False)
    gpu = f"cuda:{torch.cuda.current_device()}" if device == "cuda" else "cpu"
    model = load_detector(cfg, Path(checkpoint), gpu)
    if model.CLASSES is None:  # no names in the checkpoint (its class count was checked): the test set's
        check_class_total(model, len(dataset.CLASSES), checkpoint, test.get("ann_file"))
        model.CLASSES = tuple(dataset.CLASSES)
    check_test_classes(tuple(model.CLASSES), tuple(dataset.CLASSES), checkpoint, test.get("ann_file"))
    if amp is not None:
        fp32_head_outputs(model)
    detector = model
    running = None
    if per_class is not None:
        running = RunningCap(model.roi_head.bbox_head.num_classes, per_class, max_dets)  # one for the whole run

    def cap():
        return per_class_cap(detector, per_class, max_dets, running) if running is not None else contextlib.nullcontext()

    model = MMDataParallel(model, device_ids=[torch.cuda.current_device()] if device == "cuda" else None)
    model.eval()
    for n, data in enumerate(loader):
        with torch.no_grad(), cap(), inference_autocast(amp, gpu):
            result = detect(model, data, rescale=True)  # masks as RLEs, the bytes of encode_mask_results
        for k, res in enumerate(result):
            img_id = dataset.img_ids[indices[n * loader.batch_size + k]]
            dets, _labels = result_to_lvis(res, img_id, dataset.cat_ids)
            yield img_id, dets, isinstance(res, tuple)
        if progress is not None:
            progress(min((n + 1) * loader.batch_size, len(indices)), len(indices))
