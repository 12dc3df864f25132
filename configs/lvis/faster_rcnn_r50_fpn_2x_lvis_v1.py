# Stage 1 | LVIS v1 | R50-FPN | box-only base (Faster R-CNN), multi-scale, 2x
# Stage 1 (base), boxes only: Faster R-CNN R50-FPN, multi-scale, 2x, plain softmax CE, LVIS v1 (or any box-only
# dataset in its layout: `loce train base ... --data DIR`). The paper's base without the mask branch.
_base_ = [
    '../_base_/models/faster_rcnn_r50_fpn.py', '../_base_/datasets/lvis_v1_instance.py',
    '../_base_/schedules/schedule_2x.py', '../_base_/default_runtime.py'
]
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=False),
    dict(type='Resize', img_scale=[(1333, s) for s in range(640, 801, 32)], multiscale_mode='value',
         keep_ratio=True),
    dict(type='RandomFlip', flip_ratio=0.5),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=32),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels']),
]
data = dict(train=dict(pipeline=train_pipeline))
evaluation = dict(interval=24, metric=['bbox'])
