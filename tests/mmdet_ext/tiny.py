"""A tiny Mask R-CNN (ResNet-18 at 1/8 width, 32-channel FPN) with LOCE's heads, for CPU tests."""

from __future__ import annotations

import copy

import numpy as np
import torch

FPN = 32


def model_cfg(num_classes: int = 5, loce: bool = True, memory: dict | None = None, trainable=None,
              loss_cls: dict | None = None, normed_mask: bool | None = None) -> dict:
    """``loce=False`` gives stock mmdet heads (StandardRoIHead, Shared2FCBBoxHead, FCNMaskHead unless
    ``normed_mask``)."""
    normed_mask = loce if normed_mask is None else normed_mask
    bbox_head = dict(
        type="LoceBBoxHead" if loce else "Shared2FCBBoxHead",
        in_channels=FPN, fc_out_channels=64, roi_feat_size=7, num_classes=num_classes,
        bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0, 0.0, 0.0, 0.0],
                        target_stds=[0.1, 0.1, 0.2, 0.2]),
        reg_class_agnostic=False,
        loss_cls=loss_cls or (dict(type="EquilibriumLoss", loss_weight=1.0) if loce else
                              dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)),
        loss_bbox=dict(type="L1Loss", loss_weight=1.0))
    roi_head = dict(
        type="LoceRoIHead" if loce else "StandardRoIHead",
        bbox_roi_extractor=dict(type="SingleRoIExtractor", roi_layer=dict(type="RoIAlign", output_size=7,
                                                                          sampling_ratio=0),
                                out_channels=FPN, featmap_strides=[4, 8, 16, 32]),
        bbox_head=bbox_head,
        mask_roi_extractor=dict(type="SingleRoIExtractor", roi_layer=dict(type="RoIAlign", output_size=14,
                                                                          sampling_ratio=0),
                                out_channels=FPN, featmap_strides=[4, 8, 16, 32]),
        mask_head=dict(type="NormedMaskHead" if normed_mask else "FCNMaskHead", num_convs=2, in_channels=FPN,
                       conv_out_channels=FPN, num_classes=num_classes,
                       loss_mask=dict(type="CrossEntropyLoss", use_mask=True, loss_weight=1.0)))
    if loce:
        roi_head["memory"] = dict(queue_size=16, **(memory or {}))
    cfg = dict(
        type="LoceMaskRCNN" if loce else "MaskRCNN",
        backbone=dict(type="ResNet", depth=18, base_channels=8, num_stages=4, out_indices=(0, 1, 2, 3),
                      frozen_stages=-1, norm_cfg=dict(type="BN", requires_grad=True), norm_eval=True,
                      style="pytorch"),
        neck=dict(type="FPN", in_channels=[8, 16, 32, 64], out_channels=FPN, num_outs=5),
        rpn_head=dict(
            type="RPNHead", in_channels=FPN, feat_channels=FPN,
            anchor_generator=dict(type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0],
                                  strides=[4, 8, 16, 32, 64]),
            bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0, 0.0, 0.0, 0.0],
                            target_stds=[1.0, 1.0, 1.0, 1.0]),
            loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
            loss_bbox=dict(type="L1Loss", loss_weight=1.0)),
        roi_head=roi_head,
        train_cfg=dict(
            rpn=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                                   match_low_quality=True, ignore_iof_thr=-1),
                     sampler=dict(type="RandomSampler", num=64, pos_fraction=0.5, neg_pos_ub=-1,
                                  add_gt_as_proposals=False),
                     allowed_border=-1, pos_weight=-1, debug=False),
            rpn_proposal=dict(nms_pre=200, max_per_img=100, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0),
            rcnn=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                                    match_low_quality=True, ignore_iof_thr=-1),
                      sampler=dict(type="RandomSampler", num=64, pos_fraction=0.25, neg_pos_ub=-1,
                                   add_gt_as_proposals=True),
                      mask_size=28, pos_weight=-1, debug=False)),
        test_cfg=dict(
            rpn=dict(nms_pre=200, max_per_img=100, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0),
            rcnn=dict(score_thr=1e-4, nms=dict(type="nms", iou_threshold=0.5), max_per_img=300, mask_thr_binary=0.5)))
    if loce and trainable is not None:
        cfg["trainable"] = trainable
    return copy.deepcopy(cfg)


def build(cfg: dict):
    import loce_cli.mmdet_ext  # noqa: F401
    from mmdet.models import build_detector

    from mmcv import ConfigDict

    model = build_detector(ConfigDict(cfg))
    model.init_weights()
    return model


def batch(num_classes: int = 5, gts=(3, 2), size: int = 64, seed: int = 0):
    """A random training batch: images [B, 3, size, size] with ``gts[i]`` boxes, labels and masks each."""
    from mmdet.core import BitmapMasks

    g = torch.Generator().manual_seed(seed)
    imgs = torch.randn(len(gts), 3, size, size, generator=g)
    metas, boxes, labels, masks = [], [], [], []
    for n in gts:
        xy = torch.rand(n, 2, generator=g) * size * 0.6
        wh = torch.rand(n, 2, generator=g) * size * 0.3 + 6
        b = torch.cat([xy, (xy + wh).clamp(max=size - 1)], 1)
        boxes.append(b)
        labels.append(torch.randint(0, num_classes, (n,), generator=g))
        m = torch.zeros(n, size, size, dtype=torch.uint8)
        for k in range(n):
            x1, y1, x2, y2 = b[k].round().int().tolist()
            m[k, y1:y2, x1:x2] = 1
        masks.append(BitmapMasks(m.numpy(), size, size))
        metas.append(dict(img_shape=(size, size, 3), ori_shape=(size, size, 3), pad_shape=(size, size, 3),
                          scale_factor=np.ones(4, dtype=np.float32), flip=False, batch_input_shape=(size, size)))
    return imgs, metas, boxes, labels, masks
