"""Config files in the LOCE authors' layout (fcjian/LOCE, configs/loce/, mmdet 2.8), written here from facts about
theirs (type names, keys and values; not copies): base and LOCE, R50 / R101, LVIS v1 and v0.5, plus a small one on
the synthetic data that runs in seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

BASE_V1 = "mask_rcnn_r50_fpn_normed_mask_mstrain_2x_lvis_v1.py"
BASE_V05 = "mask_rcnn_r50_fpn_normed_mask_mstrain_2x_lvis_v0.5.py"
BASE_R101 = "mask_rcnn_r101_fpn_normed_mask_mstrain_2x_lvis_v1.py"
LOCE_V1 = "loce_mask_rcnn_r50_fpn_normed_mask_mstrain_2x_lvis_v1.py"
LOCE_V05 = "loce_mask_rcnn_r50_fpn_normed_mask_mstrain_2x_lvis_v0.5.py"
LOCE_R101 = "loce_mask_rcnn_r101_fpn_normed_mask_mstrain_2x_lvis_v1.py"

_RPN_28 = "nms_across_levels=False, nms_pre={pre}, nms_post={post}, max_num={post}, nms_thr=0.7, min_bbox_size=0"


def base_text(*, classes: int, dataset: str, root: str, train_json: str, val_json: str, train_images: str,
              val_images: str, depth: int = 50, width: Optional[dict] = None, scales: str = "multi") -> str:
    """A base config in their single-file layout (mmdet 2.8 keys: model-level ``pretrained``, ``max_num`` /
    ``nms_thr`` RPN keys, ``total_epochs``, ``NumClassCheckHook``). ``width``: optional sizes for a small model
    (keys base_channels, fpn, fc, convs, rois, size, samples)."""
    w = dict(base_channels=64, fpn=256, fc=1024, convs=4, rois=512, size="1333, 800", pre=2000, post=1000,
             test_pre=1000, mask=28, samples=2, roi=14)
    w.update(width or {})
    chans = [w["base_channels"] * 4 * 2 ** i for i in range(4)] if depth >= 50 else \
        [w["base_channels"] * 2 ** i for i in range(4)]
    pretrained = f"'torchvision://resnet{depth}'" if w["base_channels"] == 64 else "None"
    train_scale = ("[(1333, 640), (1333, 672), (1333, 704), (1333, 736), (1333, 768), (1333, 800)]"
                   if scales == "multi" else f"({w['size']})")
    return f"""
model = dict(type='MaskRCNN', pretrained={pretrained},
    backbone=dict(type='ResNet', depth={depth}, num_stages=4, out_indices=(0, 1, 2, 3), frozen_stages=1,
                  norm_cfg=dict(type='BN', requires_grad=True), norm_eval=True, style='pytorch'
                  {', base_channels=%d' % w['base_channels'] if w['base_channels'] != 64 else ''}),
    neck=dict(type='FPN', in_channels={chans}, out_channels={w['fpn']}, num_outs=5),
    rpn_head=dict(type='RPNHead', in_channels={w['fpn']}, feat_channels={w['fpn']},
        anchor_generator=dict(type='AnchorGenerator', scales=[8], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0, 0.0, 0.0, 0.0], target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    roi_head=dict(type='StandardRoIHead',
        bbox_roi_extractor=dict(type='SingleRoIExtractor', roi_layer=dict(type='RoIAlign', output_size=7,
                                sampling_ratio=0), out_channels={w['fpn']}, featmap_strides=[4, 8, 16, 32]),
        bbox_head=dict(type='Shared2FCBBoxHead', in_channels={w['fpn']}, fc_out_channels={w['fc']}, roi_feat_size=7,
            num_classes={classes},
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0, 0.0, 0.0, 0.0],
                            target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False, loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        mask_roi_extractor=dict(type='SingleRoIExtractor', roi_layer=dict(type='RoIAlign', output_size={w['roi']},
                                sampling_ratio=0), out_channels={w['fpn']}, featmap_strides=[4, 8, 16, 32]),
        mask_head=dict(type='FCNNormMaskHead', num_convs={w['convs']}, in_channels={w['fpn']},
                       conv_out_channels={w['fpn']}, num_classes={classes},
                       loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))),
    train_cfg=dict(
        rpn=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                               match_low_quality=True, ignore_iof_thr=-1),
                 sampler=dict(type='RandomSampler', num=256, pos_fraction=0.5, neg_pos_ub=-1,
                              add_gt_as_proposals=False),
                 allowed_border=-1, pos_weight=-1, debug=False),
        rpn_proposal=dict({_RPN_28.format(pre=w['pre'], post=w['post'])}),
        rcnn=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                                match_low_quality=True, ignore_iof_thr=-1),
                  sampler=dict(type='RandomSampler', num={w['rois']}, pos_fraction=0.25, neg_pos_ub=-1,
                               add_gt_as_proposals=True),
                  mask_size={w['mask']}, pos_weight=-1, debug=False)),
    test_cfg=dict(rpn=dict({_RPN_28.format(pre=w['test_pre'], post=w['post'])}),
                  rcnn=dict(score_thr=0.0001, nms=dict(type='nms', iou_threshold=0.5), max_per_img=300,
                            mask_thr_binary=0.5)))
dataset_type = '{dataset}'
data_root = '{root}'
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', img_scale={train_scale}, multiscale_mode='value', keep_ratio=True),
    dict(type='RandomFlip', flip_ratio=0.5), dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=32), dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels', 'gt_masks'])]
test_pipeline = [dict(type='LoadImageFromFile'),
    dict(type='MultiScaleFlipAug', img_scale=({w['size']}), flip=False, transforms=[
        dict(type='Resize', keep_ratio=True), dict(type='RandomFlip'), dict(type='Normalize', **img_norm_cfg),
        dict(type='Pad', size_divisor=32), dict(type='ImageToTensor', keys=['img']), dict(type='Collect', keys=['img'])])]
data = dict(samples_per_gpu={w['samples']}, workers_per_gpu=2,
    train=dict(type=dataset_type, ann_file=data_root + '{train_json}', img_prefix=data_root + '{train_images}',
               pipeline=train_pipeline),
    val=dict(type=dataset_type, ann_file=data_root + '{val_json}', img_prefix=data_root + '{val_images}',
             pipeline=test_pipeline),
    test=dict(type=dataset_type, ann_file=data_root + '{val_json}', img_prefix=data_root + '{val_images}',
              pipeline=test_pipeline))
evaluation = dict(metric=['bbox', 'segm'], interval=12)
optimizer = dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001)
optimizer_config = dict(grad_clip=None)
lr_config = dict(policy='step', warmup='linear', warmup_iters=500, warmup_ratio=0.001, step=[16, 22])
total_epochs = 24
checkpoint_config = dict(interval=1)
log_config = dict(interval=50, hooks=[dict(type='TextLoggerHook')])
custom_hooks = [dict(type='NumClassCheckHook')]
dist_params = dict(backend='nccl')
log_level = 'INFO'
load_from = None
resume_from = None
workflow = [('train', 1)]
"""


def loce_text(base: str, base_ckpt: str, mfs_extra: str = "", selectp: int = 1) -> str:
    """Their LOCE stage on top of ``base`` (a file name beside it): LoceRoIHead, LoceShared2FCBBoxHead,
    EquilibriumLoss, train_cfg.rcnn alpha / bg_score / mfs, steps 3/5 over 6 epochs, InitializerHook, selectp."""
    return f"""_base_ = './{base}'
model = dict(
    roi_head=dict(type='LoceRoIHead',
                  bbox_head=dict(type='LoceShared2FCBBoxHead',
                                 loss_cls=dict(type='EquilibriumLoss', use_sigmoid=False, loss_weight=1.0))),
    train_cfg=dict(rcnn=dict(alpha=0.9, bg_score=0.01,
                             mfs=dict(queue_size=80, gpu_statictics=False, sampled_num_classes=8,
                                      sampled_num_features=4{mfs_extra}))))
evaluation = dict(interval=6, metric=['bbox', 'segm'])
lr_config = dict(policy='step', warmup='linear', warmup_iters=500, warmup_ratio=0.001, step=[3, 5])
total_epochs = 6
custom_hooks = [dict(type="InitializerHook")]
load_from = '{base_ckpt}'
selectp = {selectp}
"""


def write_lvis_set(folder: Path) -> Dict[str, Path]:
    """The six files of their configs/loce/ at LVIS shape, in ``folder``; ``{name: path}``."""
    folder.mkdir(parents=True, exist_ok=True)
    v1 = dict(classes=1203, dataset="LVISV1Dataset", root="data/lvis_v1/", train_json="annotations/lvis_v1_train.json",
              val_json="annotations/lvis_v1_val.json", train_images="", val_images="")
    v05 = dict(classes=1230, dataset="LVISV05Dataset", root="data/lvis_v0.5/",
               train_json="annotations/lvis_v0.5_train.json", val_json="annotations/lvis_v0.5_val.json",
               train_images="train2017/", val_images="val2017/")
    files = {
        BASE_V1: base_text(**v1),
        BASE_V05: base_text(**v05),
        # theirs points its _base_ at a file configs/loce/ lacks; this one points at the R50 base beside it
        BASE_R101: f"_base_ = './{BASE_V1}'\nmodel = dict(pretrained='torchvision://resnet101', "
                   "backbone=dict(depth=101))\n",
        LOCE_V1: loce_text(BASE_V1, "./work_dirs/mask_rcnn_r50_fpn_normed_mask_mstrain_2x_lvis_v1/epoch_24.pth"),
        LOCE_V05: loce_text(BASE_V05, "./work_dirs/mask_rcnn_r50_fpn_normed_mask_mstrain_2x_lvis_v0.5/epoch_24.pth"),
        LOCE_R101: f"_base_ = './{LOCE_V1}'\nmodel = dict(pretrained='torchvision://resnet101', "
                   "backbone=dict(depth=101))\nload_from = './work_dirs/mask_rcnn_r101_fpn_normed_mask_mstrain_2x_"
                   "lvis_v1/epoch_24.pth'\n",
    }
    out = {}
    for name, text in files.items():
        (folder / name).write_text(text)
        out[name] = folder / name
    return out


TINY_WIDTH = dict(base_channels=16, fpn=64, fc=256, convs=2, rois=128, size="128, 128", pre=1000, post=500,
                  test_pre=500, mask=14, samples=4, roi=7)


def write_tiny_set(folder: Path, data: Path, classes: int) -> Dict[str, Path]:
    """Their base and LOCE files sized like configs/synthetic/mask_rcnn_r18_fpn_normed_synth.py (R18 at 1/4 width,
    128 px) on the synthetic LVIS-format ``data``: a loce synthetic base checkpoint loads into them."""
    folder.mkdir(parents=True, exist_ok=True)
    base = folder / "mask_rcnn_r18_fpn_normed_mask_synth.py"
    base.write_text(base_text(classes=classes, dataset="LVISV1Dataset", root=f"{data}/",
                              train_json="annotations/lvis_v1_train.json", val_json="annotations/lvis_v1_val.json",
                              train_images="", val_images="", depth=18, width=TINY_WIDTH, scales="single"))
    loce = folder / "loce_mask_rcnn_r18_fpn_normed_mask_synth.py"
    loce.write_text(loce_text(base.name, "./work_dirs/mask_rcnn_r18_fpn_normed_mask_synth/epoch_24.pth"))
    return {"base": base, "loce": loce}
