"""Inference on image files outside any dataset (``loce predict``): the config's own test pipeline, the same
``detect()`` and LVIS conversion as ``loce eval``, so an image gives the detections eval gives for it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmcv.parallel import MMDataParallel, collate
from mmcv.utils import build_from_cfg
from mmdet.datasets import PIPELINES
from mmdet.datasets.pipelines import Compose

from loce_cli.errors import DataError
from loce_cli.mmdet_ext.amp import fp32_head_outputs, inference_autocast
from loce_cli.mmdet_ext.inference import load_detector, result_to_lvis
from loce_cli.mmdet_ext.mask_rle import detect


class ImageDetector:
    """A detector of ``cfg`` with the weights of ``checkpoint`` that reads one image file at a time.

    ``score_thr`` and ``max_dets`` become the config's ``test_cfg.rcnn.score_thr`` / ``max_per_img`` (mmdet
    drops boxes under the threshold before its per-class NMS, which no box under it can change, so this equals
    filtering eval's detections afterwards). ``cat_ids[label]`` is the category id written for a label."""

    def __init__(self, cfg, checkpoint: Path, device: str, score_thr: float, max_dets: int,
                 cat_ids: Sequence[int], amp: Optional[str] = None):
        cfg = copy.deepcopy(cfg)
        rcnn = cfg.model.test_cfg.rcnn
        rcnn.score_thr = float(score_thr)
        rcnn.max_per_img = int(max_dets)
        pipeline = list(cfg.data.test.pipeline)
        if not pipeline or pipeline[0].get("type") != "LoadImageFromFile":
            raise DataError("the config's test pipeline does not start with LoadImageFromFile",
                            "predict with a config whose data.test.pipeline reads image files")
        self._load = build_from_cfg(pipeline[0], PIPELINES)
        self._transforms = Compose(pipeline[1:])
        self.cat_ids = list(cat_ids)
        gpu = f"cuda:{torch.cuda.current_device()}" if device == "cuda" else "cpu"
        model = load_detector(cfg, Path(checkpoint), gpu)
        self.amp, self.device = amp, gpu  # amp: the forward under autocast (bf16 / fp16), heads' outputs in fp32
        if amp is not None:
            fp32_head_outputs(model)
        self.model = MMDataParallel(model, device_ids=[torch.cuda.current_device()] if device == "cuda" else None)
        self.model.eval()

    def load(self, path: Path) -> dict:
        """The pipeline's first step on ``path`` (what the test set's loader does for an image file); the image
        is ``["img"]``, as the model reads it (BGR, grey and RGBA converted to 3 channels)."""
        results = dict(img_info=dict(filename=str(path)), img_prefix=None, seg_prefix=None, proposal_file=None,
                       bbox_fields=[], mask_fields=[], seg_fields=[])
        try:
            results = self._load(results)
        except Exception as e:  # cv2 / mmcv report undecodable bytes in several ways
            raise DataError(f"{path} cannot be decoded by the test pipeline ({type(e).__name__})",
                            "pass a JPEG or PNG image") from None
        img = results.get("img")
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[0] == 0 or img.shape[1] == 0:
            raise DataError(f"{path} cannot be decoded by the test pipeline", "pass a JPEG or PNG image")
        height, width = img.shape[:2]
        try:  # the rest of the pipeline (resize to the test scale, ...) here, so an image it cannot take is refused
            results["transformed"] = self._transforms(dict(results))
        except Exception as e:  # cv2 refuses a resize to 0 px (an extreme aspect ratio at the test scale)
            raise DataError(f"{path} ({width}x{height} px, aspect ratio {max(width, height) / min(width, height):.0f}:1)"
                            f" cannot be resized to the model's test scale ({type(e).__name__})",
                            "crop or pad it to a less extreme aspect ratio") from None
        return results

    def detect(self, loaded: dict, image_id: int) -> Tuple[np.ndarray, List[dict], List[int]]:
        """``(the image as RGB uint8, its LVIS detections, each one's label index)`` for ``load()``'s output."""
        rgb = np.ascontiguousarray(loaded["img"][..., ::-1]).astype(np.uint8, copy=False)
        data = collate([loaded["transformed"]], samples_per_gpu=1)
        with torch.no_grad(), inference_autocast(self.amp, self.device):
            result = detect(self.model, data, rescale=True)
        dets, labels = result_to_lvis(result[0], image_id, self.cat_ids)
        return rgb, dets, labels
