"""Inference of a detector over a config's test set, as LVIS results (boxes and RLE masks)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

import torch
from torch.utils.data import Subset

from loce_cli.errors import DataError


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
                          world: int = 1) -> Iterator[Tuple[int, List[dict], bool]]:
    """``(image id, its LVIS detections, whether the model gave masks)`` per image of this process's share, in
    dataset order: what ``lvis_detections`` returns, one image at a time."""
    from mmcv.parallel import MMDataParallel
    from mmdet.apis import init_detector
    from mmdet.datasets import build_dataloader, build_dataset

    from loce_cli.mmdet_ext.mask_rle import detect

    test = cfg.data.test
    test.test_mode = True
    cfg.model.test_cfg.rcnn.max_per_img = max_dets
    dataset = build_dataset(test)
    indices = list(range(rank, len(dataset), world))
    shard = dataset if world == 1 else Subset(dataset, indices)
    loader = build_dataloader(shard, samples_per_gpu=1, workers_per_gpu=cfg.data.get("workers_per_gpu", 1),
                              dist=False, shuffle=False)
    gpu = f"cuda:{torch.cuda.current_device()}" if device == "cuda" else "cpu"
    # mmcv announces the checkpoint load with print(): keep stdout for the command's own output (--json)
    with contextlib.redirect_stdout(sys.stderr):
        model = init_detector(cfg, str(checkpoint), device=gpu)
    if tuple(model.CLASSES) != tuple(dataset.CLASSES):
        raise DataError(f"{checkpoint} classes differ from the test set's", "evaluate on the dataset it was trained on")
    model = MMDataParallel(model, device_ids=[torch.cuda.current_device()] if device == "cuda" else None)
    model.eval()
    for n, data in enumerate(loader):
        with torch.no_grad():
            result = detect(model, data, rescale=True)  # masks as RLEs, the bytes of encode_mask_results
        for k, res in enumerate(result):
            img_id = dataset.img_ids[indices[n * loader.batch_size + k]]
            bbox_res, segm_res = res if isinstance(res, tuple) else (res, None)
            dets: List[dict] = []
            for label, boxes in enumerate(bbox_res):
                for j in range(boxes.shape[0]):
                    x1, y1, x2, y2, score = (float(v) for v in boxes[j])
                    det = dict(image_id=img_id, category_id=dataset.cat_ids[label],
                               bbox=[x1, y1, x2 - x1, y2 - y1], score=score)
                    if segm_res is not None:
                        rle = dict(segm_res[label][j])
                        counts = rle["counts"]
                        rle["counts"] = counts.decode() if isinstance(counts, bytes) else counts
                        det["segmentation"] = rle
                    dets.append(det)
            yield img_id, dets, segm_res is not None
        if progress is not None:
            progress(min((n + 1) * loader.batch_size, len(indices)), len(indices))
